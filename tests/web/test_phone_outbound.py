"""Outbound calls over real sockets: ``POST /api/calls`` → the fake Twilio places the call → our
``/twiml`` → the media stream, with status and answering-machine callbacks, as Twilio does."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from phone_harness import OUR_NUMBER, of_type, phone_bridge

from callbridge.adapters.sim.caller import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent
from callbridge.engine.events import (
    AssistantAudioSent,
    CallEnded,
    CallStarted,
    CallStatusReported,
    GreetingAudioStarted,
    MachineDetected,
    ModelEventReceived,
    OutboundCallPlaced,
)

PERSON = "+15551230001"
AGENT = Agent(greeting="Hello, this is Acme Plumbing.")
SCRIPT = Script(turns=[Turn(transcript="Yes, speaking.", reply="Great, your plumber comes at nine tomorrow.")])


def transcripts(events: list) -> list[str]:
    """The assistant's spoken transcripts, in order."""
    done = [e for e in of_type(events, ModelEventReceived) if e.type == "response.output_audio_transcript.done"]
    return [json.loads(e.raw)["transcript"] for e in done]


async def test_outbound_call_to_a_person_greets_first_with_the_calls_own_greeting(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        person = [WaitForAssistant(timeout_s=10), Speak(800), WaitForAssistant(timeout_s=10), HangUp()]
        phone.twilio.calls.script_number(PERSON, Answer(script=person))
        greeting = "Hi Ada, this is Acme calling about your boiler."
        body = {"to": PERSON, "greeting": greeting, "metadata": {"ticket": 42}}
        answer = await phone.post("/api/calls", body)
        assert answer.status_code == 201, answer.text
        call_id = answer.json()["call_id"]
        assert answer.json() == {"call_id": call_id, "status": "queued", "to": PERSON, "from": OUR_NUMBER}
        call = phone.twilio.calls.calls[call_id]
        with trio.fail_after(30):
            await call.done.wait()
        await phone.bridge.wait_call_ended(call_id)
        events = await phone.events(call_id)

    assert call.errors == [] and call.report is not None and call.report.errors == []
    placed = of_type(events, OutboundCallPlaced)
    assert [(p.to_number, p.from_number, p.greeting, p.metadata) for p in placed] == [
        (PERSON, OUR_NUMBER, greeting, {"ticket": 42})
    ]
    started = of_type(events, CallStarted)[0]
    assert started.custom_parameters["Direction"] == "outbound-api"
    assert [m.answered_by for m in of_type(events, MachineDetected)] == ["human"]
    # the call's own greeting, first, after the person was detected; then the conversation
    said = transcripts(events)
    assert said[:2] == [greeting, SCRIPT.turns[0].reply]
    greeted = of_type(events, GreetingAudioStarted)
    assert len(greeted) == 1 and greeted[0].latency_ms > 0
    first_audio = of_type(events, AssistantAudioSent)[0]
    assert first_audio.response_id == greeted[0].response_id
    assert events.index(of_type(events, MachineDetected)[0]) < events.index(first_audio)
    # Twilio's progress is recorded, in order
    statuses = [s.status for s in of_type(events, CallStatusReported)]
    assert statuses == ["initiated", "ringing", "in-progress", "completed"]
    assert of_type(events, CallEnded)[0].reason == "caller_hangup"
    assert call.report.heard and call.report.heard[0].byte_count > 0  # the person heard the greeting


VOICEMAIL = Agent(greeting="Hello, this is Acme Plumbing.", voicemail_message="Hi, Acme here: please call us back.")
MACHINE = "+15551230002"


async def test_an_answering_machine_gets_the_voicemail_message_after_its_beep_then_the_call_is_hung_up(
    tmp_path: Path,
) -> None:
    async with phone_bridge(tmp_path, agent=VOICEMAIL, script=SCRIPT) as phone:
        phone.twilio.calls.script_number(MACHINE, Answer(kind="machine"))
        answer = await phone.post("/api/calls", {"to": MACHINE})
        assert answer.status_code == 201, answer.text
        call_id = answer.json()["call_id"]
        call = phone.twilio.calls.calls[call_id]
        with trio.fail_after(40):
            await call.done.wait()
        await phone.bridge.wait_call_ended(call_id)
        events = await phone.events(call_id)

    report = call.report
    assert report is not None and report.errors == [] and call.errors == []
    assert [m.answered_by for m in of_type(events, MachineDetected)] == ["machine_end_beep"]
    assert of_type(events, GreetingAudioStarted) == []  # a machine is not greeted
    # the voicemail message is what the machine recorded after its beep: every byte of it
    message_ids = {e.response_id for e in of_type(events, AssistantAudioSent)} - set()
    said = transcripts(events)
    assert said[-1] == VOICEMAIL.voicemail_message
    last_response = of_type(events, AssistantAudioSent)[-1].response_id
    message = b"".join(e.payload for e in of_type(events, AssistantAudioSent) if e.response_id == last_response)
    assert message and report.heard_after_beep.endswith(message)
    assert len(message_ids) >= 1
    # then the phone was hung up through Twilio's REST API, after the message was heard
    assert call.hung_up_by == "rest" and call.updates[-1] == {"Status": "completed"}
    assert report.ended_by == "remote"
    assert report.hung_up_s is not None and report.heard[-1].end <= report.hung_up_s
    assert of_type(events, CallEnded)[0].reason == "voicemail_left"


async def test_busy_and_unanswered_outbound_calls_are_recorded_and_listed_with_that_status(tmp_path: Path) -> None:
    busy, silent = "+15551230003", "+15551230004"
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        phone.twilio.calls.script_number(busy, Answer(kind="busy"))
        phone.twilio.calls.script_number(silent, Answer(kind="no-answer"))
        placed = {}
        for number in (busy, silent):
            answer = await phone.post("/api/calls", {"to": number})
            assert answer.status_code == 201, answer.text
            placed[number] = answer.json()["call_id"]
        for call_id in placed.values():
            with trio.fail_after(20):
                await phone.twilio.calls.calls[call_id].done.wait()
        shown = {row["call_id"]: row for row in (await phone.http.get("/api/conversations")).json()}
        timeline = (await phone.http.get(f"/api/calls/{placed[busy]}/events")).json()
        events = await phone.events(placed[silent])

    for number, status in ((busy, "busy"), (silent, "no-answer")):
        row = shown[placed[number]]
        assert (row["status"], row["outcome"], row["twilio_status"], row["direction"]) == (
            status,
            status,
            status,
            "outbound",
        )
        assert row["phone_number"] == number and row["started_at"] is not None
    assert "OutboundCallPlaced" in [e["type"] for e in timeline]
    assert [e["data"]["status"] for e in timeline if e["type"] == "CallStatusReported"][-1] == "busy"
    assert [s.status for s in of_type(events, CallStatusReported)] == ["initiated", "ringing", "no-answer"]
    assert of_type(events, CallStarted) == []
