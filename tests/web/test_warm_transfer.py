"""Warm transfers end to end, over real sockets: the caller is held in a conference room while the
person is called and briefed; the person's final status callback decides — the call ends
``transferred``, or the caller comes back to the agent on a second stream of the same call, which
carries on the conversation from its log. Checked at the fake Twilio (what each leg did and heard),
at the simulated model (what it was told), at the caller's ear and in the API's views."""

from __future__ import annotations

import io
import json
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
import trio.testing
from bridge_harness import Bridge
from phone_harness import AUTH_TOKEN, PhoneBridge, of_type, phone_bridge
from trio_websocket import ConnectionClosed, open_websocket_url

from callbridge.adapters.sim.caller import Speak, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.caller_script import HangUp
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature
from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.events import (
    AssistantAudioSent,
    AssistantSaid,
    CallEnded,
    CallHeld,
    CallResumed,
    CallStarted,
    Event,
    TransferDialed,
    TransferNotAnswered,
)
from callbridge.engine.store import RecordedEvent
from callbridge.projections.recording import SAMPLE_RATE
from callbridge.projections.replay_cli import replay_cli

PERSON = "+15551112222"
SUPPORT = TransferTarget(label="support", to=PERSON, caller_id="+15557654321", timeout_s=20, mode="warm")
NO_ANSWER = "Sorry, nobody from support is free right now. Can I help with anything else?"
AGENT = Agent(
    greeting="Acme Internet, how can I help?", transfer_targets=[SUPPORT], transfer_no_answer_message=NO_ANSWER
)
WORDS = "My router keeps dropping the line."
SCRIPT = Script(
    turns=[
        Turn(
            transcript=WORDS,
            function_call=FunctionCall(name="transfer_call", arguments={"target": "support", "reason": "router fault"}),
        )
    ],
    fallback_reply="Anything else?",
)
CALLER = [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=30)]
"""Hears the greeting, asks, and stays on the line (the hold ends this stream)."""
BACK = [WaitForAssistant(timeout_s=15), Speak(600), WaitForAssistant(timeout_s=15), HangUp()]
"""Back from the hold: hears the agent, answers, hears the reply, hangs up."""
GUARD_S = 60
"""Against a hang only."""


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The event store's URL: each test runs on SQLite and on PostgreSQL (its own schema)."""
    if request.param == "sqlite":
        return str(tmp_path / "callbridge.db")
    url: str = request.getfixturevalue("postgres_store_url")
    return url


async def warm_call(phone: PhoneBridge, answer: Answer, *, on_hold_s: float = 30) -> tuple[FakeCall, FakeCall]:
    """An inbound call whose caller asks for support; the person's phone answers as ``answer``.
    Returns (the caller's call, the person's call) once both are over."""
    phone.twilio.calls.script_number(PERSON, answer)
    people: list[FakeCall] = []
    phone.twilio.calls.on_call = lambda call: people.append(call) if call.to == PERSON else None
    with trio.fail_after(GUARD_S):
        caller = await phone.twilio.calls.place_inbound(
            phone.base_url, script=CALLER, on_hold_s=on_hold_s, resume_script=BACK
        )
        await phone.bridge.wait_call_ended(caller.sid)
        [person] = people
        await person.done.wait()
    assert caller.errors == [] and person.errors == [], (caller.errors, person.errors)
    return caller, person


async def replay_callback(phone: PhoneBridge, person: FakeCall) -> httpx2.Response:
    """Twilio retrying the person's final status callback: the same signed request again."""
    form = person.status_forms[-1]
    headers = {SIGNATURE_HEADER: compute_signature(AUTH_TOKEN, person.status_callback, form)}
    async with httpx2.AsyncClient() as http:
        return await http.post(person.status_callback, data=form, headers=headers)


async def feed_replay(bridge: Bridge, call_id: str) -> list[dict[str, Any]]:
    """The call's live-feed messages, as ``WS /logs?replay=`` plays them back (fast)."""
    url = bridge.base_url.replace("http://", "ws://") + f"/logs?token=test-token&replay={call_id}&speed=100"
    messages: list[dict[str, Any]] = []
    async with open_websocket_url(url) as ws:
        with trio.fail_after(GUARD_S):
            try:
                while True:
                    messages.append(json.loads(await ws.get_message()))
            except ConnectionClosed:
                return messages


def timeline(store: str, call_id: str) -> list[str]:
    """``callbridge replay``'s lines for the call."""
    out = io.StringIO()
    assert replay_cli(store, call_id, wav=None, as_json=False, out=out) == 0
    return out.getvalue().splitlines()


def caller_speech_after(wav_bytes: bytes, seconds: float) -> int:
    """Samples of the caller's channel (left) louder than a murmur from ``seconds`` into the call."""
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        frames = wav.readframes(wav.getnframes())
    samples = memoryview(frames).cast("h")[0::2]
    start = round(seconds * SAMPLE_RATE)
    return sum(1 for sample in samples[start:] if abs(sample) > 2000)


@dataclass
class Outcome:
    """A warm-transfer call once over: both legs, the call's stored log, and Twilio's retry of the
    person's callback with the log after it."""

    caller: FakeCall
    person: FakeCall
    recorded: list[RecordedEvent]
    retried: httpx2.Response
    after_retry: list[Event]

    @property
    def events(self) -> list[Event]:
        return [r.event for r in self.recorded]


async def warm_outcome(phone: PhoneBridge, answer: Answer) -> Outcome:
    caller, person = await warm_call(phone, answer)
    await phone.bridge.server.writer.flush()
    recorded = await trio.to_thread.run_sync(phone.bridge.server.store.read_call, caller.sid)
    retried = await replay_callback(phone, person)
    return Outcome(caller, person, recorded, retried, await phone.events(caller.sid))


def response_bytes(events: list[Any], response_id: str) -> bytes:
    return b"".join(e.payload for e in of_type(events, AssistantAudioSent) if e.response_id == response_id)


async def test_the_person_answers_hears_the_callers_own_words_and_the_call_ends_transferred(
    tmp_path: Path, store: str
) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT, env={"CALLBRIDGE_STORE": store}) as phone:
        outcome = await warm_outcome(phone, Answer(kind="human", talk_s=1.0))
        caller, person, recorded = outcome.caller, outcome.person, outcome.recorded
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()
        metrics = (await phone.http.get(f"/api/calls/{caller.sid}/metrics")).json()

    room = f"callbridge-{caller.sid}"
    # the caller: held in the room (not started: hold music), never hung up on by us
    assert 'startConferenceOnEnter="false"' in caller.updates[0]["Twiml"] and room in caller.updates[0]["Twiml"]
    assert caller.rooms == [room] and caller.hung_up_by == "conference" and len(caller.reports) == 1
    # the person: rang with the target's timeout and caller ID, heard the summary, joined the room
    assert (person.timeout_s, person.from_, person.to) == (20, SUPPORT.caller_id, PERSON)
    [summary] = person.heard_say
    assert WORDS in summary and "Reason: router fault" in summary and "support" in summary
    assert person.rooms == [room] and person.statuses_posted == ["completed"]
    assert int(person.status_forms[-1]["CallDuration"]) > 0
    conference = phone.twilio.calls.conferences.rooms[room]
    assert conference.joined == [caller.sid, person.sid] and conference.most_present == 2
    # the log: one call, held, then ended transferred — numbered without gaps, nothing dialled cold
    events = [r.event for r in recorded]
    assert [r.version for r in recorded] == list(range(1, len(recorded) + 1))
    [held] = of_type(events, CallHeld)
    [ended] = of_type(events, CallEnded)
    assert (held.label, held.to, held.room) == ("support", PERSON, room)
    assert (ended.reason, ended.detail) == ("transferred", "support") and events[-1] == ended
    assert of_type(events, TransferDialed) == [] and len(of_type(events, CallStarted)) == 1
    # Twilio retried the callback: nothing changes
    assert outcome.retried.status_code == 204 and outcome.after_retry == events
    assert (row["status"], row["outcome"], row["transfer_target"]) == ("completed", "transferred", "support")
    control = metrics["call_control"]
    assert (control["transfers"], control["transfer_target"]) == (1, "support")


async def test_nobody_answers_and_the_caller_is_back_with_the_agent_on_a_second_stream_of_the_same_call(
    tmp_path: Path, store: str
) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT, env={"CALLBRIDGE_STORE": store}) as phone:
        outcome = await warm_outcome(phone, Answer(kind="no-answer", ring_s=0.3))
        caller, person, recorded = outcome.caller, outcome.person, outcome.recorded
        sessions = list(phone.bridge.fake.sessions)
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()
        listed = (await phone.http.get("/api/conversations")).json()
        recording = (await phone.http.get(f"/api/calls/{caller.sid}/recording.wav")).content
        feed = await feed_replay(phone.bridge, caller.sid)
        lines = timeline(store, caller.sid)

    # Twilio: the person never answered; the caller was held, then redirected to a new stream
    assert person.statuses_posted == ["no-answer"] and person.heard_say == [] and person.rooms == []
    hold, back = caller.updates
    assert "<Conference" in hold["Twiml"] and "<Connect" in back["Twiml"] and "callbridge_resume" in back["Twiml"]
    first, second = caller.reports
    assert first.call_sid == second.call_sid == caller.sid and first.stream_sid != second.stream_sid
    # the log: one call, two streams, numbered without gaps or collisions
    events = [r.event for r in recorded]
    assert [r.version for r in recorded] == list(range(1, len(recorded) + 1))
    steps = CallHeld | TransferNotAnswered | CallResumed | CallEnded
    kinds = [type(e).__name__ for e in events if isinstance(e, steps)]
    assert kinds == ["CallHeld", "TransferNotAnswered", "CallResumed", "CallEnded"]
    [missed] = of_type(events, TransferNotAnswered)
    [resumed] = of_type(events, CallResumed)
    assert (missed.label, missed.to, missed.status) == ("support", PERSON, "no-answer")
    assert resumed.stream_sid == second.stream_sid and resumed.engine_id == phone.bridge.server.identity.engine_id
    assert len(of_type(events, CallStarted)) == 1 and of_type(events, CallEnded)[0].reason == "caller_hangup"
    # the model of the second stream was told the conversation so far, and asked to say the message
    told = [json.loads(e.raw) for e in sessions[-1].client_events]
    seeded = [e["item"] for e in told if e["type"] == "conversation.item.create"]
    assert any(item["role"] == "user" and WORDS in json.dumps(item) for item in seeded)
    greeting = next(e for e in told if e["type"] == "response.create")
    assert NO_ANSWER in greeting["response"]["instructions"]
    # the caller heard the whole message on the second stream
    after = events[events.index(resumed) :]
    [said] = [e for e in of_type(after, AssistantSaid) if e.text == NO_ANSWER]
    assert second.heard_audio.startswith(response_bytes(events, said.response_id)) and second.errors == []
    # the recording places the second stream's caller audio after the hold, not over the first stream
    started = of_type(events, CallStarted)[0]
    assert caller_speech_after(recording, resumed.at - started.at) > 0
    # the timeline and the live feed tell the hold and the return; the feed follows the new stream
    for line in ("caller on hold: transferring to support", "nobody took the transfer to support", "caller back"):
        assert any(line in text for text in lines), (line, lines)
    kinds = [m["type"] for m in feed]
    assert kinds.index("callbridge.call.held") < kinds.index("callbridge.transfer.not_answered")
    assert kinds.index("callbridge.transfer.not_answered") < kinds.index("callbridge.call.resumed")
    [ended] = [m for m in feed if m["type"] == "call.ended"]
    assert ended["stream_sid"] == second.stream_sid and kinds.index("call.ended") > kinds.index(
        "callbridge.call.resumed"
    )
    # Twilio retried the callback: nothing is recorded and the caller is not redirected again
    assert outcome.retried.status_code == 204 and outcome.after_retry == events and len(caller.updates) == 2
    # the views: one call, with the whole talk
    assert [c["call_id"] for c in listed].count(caller.sid) == 1
    assert (row["status"], row["end_reason"], row["outcome"]) == ("completed", "caller_hangup", "caller_hangup")
    texts = [item.get("text") for item in row["items"] if item["type"] == "message"]
    assert WORDS in texts and NO_ANSWER in texts and texts.index(WORDS) < texts.index(NO_ANSWER)
