"""Hang-ups and transfers over real sockets: decided by the model or an operator, carried out through
Twilio's REST API (with credentials) or the stream's ``<Connect action>`` (without), and checked at
the fake Twilio and at the simulated caller's ear."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing
from phone_harness import PhoneBridge, of_type, phone_bridge

from callbridge.adapters.sim.caller import Speak, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import DialLeg, FakeCall
from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.events import (
    AssistantAudioSent,
    CallEnded,
    CallEndRequested,
    GoodbyeHeard,
    PhoneHangUpSent,
    ToolCallRequested,
    TransferDialed,
    TransferRefused,
    TransferRequested,
)

SALES = TransferTarget(label="sales", to="+15557654321", caller_id="+15550001111", timeout_s=25)
AGENT = Agent(greeting="Acme Plumbing, how can I help?", transfer_targets=[SALES])


def wants(name: str, **arguments: str) -> Script:
    return Script(
        turns=[Turn(transcript="Please.", function_call=FunctionCall(name=name, arguments=arguments))],
        fallback_reply="Anything else?",
    )


async def inbound(phone: PhoneBridge, script: list, *, timeout_s: float = 30) -> FakeCall:  # type: ignore[type-arg]
    with trio.fail_after(timeout_s):
        call = await phone.twilio.calls.place_inbound(phone.base_url, script=script)
        await phone.bridge.wait_call_ended(call.sid)
    assert call.errors == [] and call.report is not None, call.errors
    return call


def response_bytes(events: list, response_id: str) -> bytes:  # type: ignore[type-arg]
    return b"".join(e.payload for e in of_type(events, AssistantAudioSent) if e.response_id == response_id)


async def test_the_goodbye_is_heard_in_full_before_the_phone_is_hung_up_through_rest(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=wants("end_call", reason="done")) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)])
        events = await phone.events(call.sid)
        row = (await phone.http.get(f"/api/conversations/{call.sid}")).json()

    report = call.report
    assert report is not None and report.errors == []
    assert [e.by for e in of_type(events, CallEndRequested)] == ["model"]
    goodbye = response_bytes(events, of_type(events, AssistantAudioSent)[-1].response_id)
    assert goodbye and report.heard_audio.endswith(goodbye)  # every byte of the goodbye was played
    assert report.hung_up_s is not None and report.heard[-1].end <= report.hung_up_s
    heard = of_type(events, GoodbyeHeard)[0]
    hung_up = of_type(events, PhoneHangUpSent)[0]
    assert not heard.capped and events.index(heard) < events.index(hung_up)
    assert (hung_up.method, hung_up.ok) == ("rest", True)
    assert call.hung_up_by == "rest" and call.updates == [{"Status": "completed"}] and report.ended_by == "remote"
    assert of_type(events, CallEnded)[0].reason == "agent_hangup"
    assert (row["outcome"], row["status"]) == ("hung_up_by_agent", "completed")


async def test_a_transfer_to_a_target_the_agent_does_not_have_is_refused_and_nothing_is_dialled(
    tmp_path: Path,
) -> None:
    script = wants("transfer_call", target="billing", reason="invoice")
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForAssistant(timeout_s=10)])
        events = await phone.events(call.sid)

    refused = of_type(events, TransferRefused)
    assert [(r.label, r.by) for r in refused] == [("billing", "model")] and "sales" in refused[0].reason
    assert of_type(events, TransferDialed) == [] and call.updates == [] and call.dial is None
    assert call.hung_up_by == "caller"


async def test_a_cold_transfer_dials_the_target_through_rest(tmp_path: Path) -> None:
    script = wants("transfer_call", target="sales", reason="new boiler")
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)])
        events = await phone.events(call.sid)
        row = (await phone.http.get(f"/api/conversations/{call.sid}")).json()

    assert call.dial == DialLeg(
        to="+15557654321", kind="number", caller_id="+15550001111", timeout_s=25, rang=True, answered=True
    )
    assert "<Dial" in call.updates[-1]["Twiml"] and call.action_twiml is None
    dialed = of_type(events, TransferDialed)
    assert [(d.label, d.to, d.method, d.ok) for d in dialed] == [("sales", "+15557654321", "rest", True)]
    assert of_type(events, CallEnded)[0].reason == "transferred"
    assert (row["outcome"], row["transfer_target"]) == ("transferred", "sales")


async def test_without_credentials_a_transfer_goes_through_the_connect_action(tmp_path: Path) -> None:
    script = wants("transfer_call", target="sales", reason="new boiler")
    async with phone_bridge(tmp_path, agent=AGENT, script=script, credentials=False) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)])
        events = await phone.events(call.sid)

    assert call.report is not None and call.report.ended_by == "server"  # our side ended the stream
    assert call.updates == []  # no REST at all
    dialed = of_type(events, TransferDialed)[0]
    assert dialed.method == "stream" and call.action_twiml == dialed.twiml
    assert call.dial == DialLeg(
        to="+15557654321", kind="number", caller_id="+15550001111", timeout_s=25, rang=True, answered=True
    )


async def test_without_credentials_a_hang_up_is_answered_hangup_by_the_connect_action(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=wants("end_call", reason="done"), credentials=False) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)])
        events = await phone.events(call.sid)

    assert [(e.method, e.ok) for e in of_type(events, PhoneHangUpSent)] == [("stream", True)]
    assert call.action_twiml is not None and "<Hangup" in call.action_twiml and call.hung_up_by == "twiml"


async def test_an_operator_hangs_up_and_transfers_live_calls_through_the_api(tmp_path: Path) -> None:
    waiting = [WaitForHangUp(timeout_s=20)]
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        calls: list[FakeCall] = []
        phone.twilio.calls.on_call = calls.append
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbound, phone, waiting)
            nursery.start_soon(inbound, phone, waiting)
            await trio.testing.wait_all_tasks_blocked()
            assert len(calls) == 2
            with trio.fail_after(20):
                for call in calls:
                    await call.heard_assistant.wait()  # greeted: live on the server
            first, second = calls
            assert (await phone.post("/api/calls/CAnope/hangup")).status_code == 404
            wrong = await phone.post(f"/api/calls/{second.sid}/transfer", {"target": "accounts"})
            assert wrong.status_code == 400 and "sales" in wrong.json()["error"]
            assert (await phone.post(f"/api/calls/{first.sid}/hangup", {"reason": "spam"})).status_code == 202
            moved = await phone.post(f"/api/calls/{second.sid}/transfer", {"target": "Sales", "reason": "asked"})
            assert moved.status_code == 202, moved.text
        hung_events = await phone.events(first.sid)
        moved_events = await phone.events(second.sid)
        rows = {row["call_id"]: row for row in (await phone.http.get("/api/conversations")).json()}
        agent = (await phone.http.get("/api/agent")).json()

    assert [(e.by, e.reason) for e in of_type(hung_events, CallEndRequested)] == [("operator", "spam")]
    assert of_type(hung_events, GoodbyeHeard) == []  # an operator's hang-up is at once
    assert first.hung_up_by == "rest" and rows[first.sid]["outcome"] == "hung_up_by_operator"
    assert second.dial is not None and second.dial.to == SALES.to
    requested = of_type(moved_events, TransferRequested)
    assert [(r.label, r.by, r.reason) for r in requested] == [("sales", "operator", "asked")]
    assert rows[second.sid]["outcome"] == "transferred"
    assert [t["label"] for t in agent["transfer_targets"]] == ["sales"]
    assert agent["greeting"] == AGENT.greeting


async def test_a_transfer_to_a_sip_address_dials_it_as_sip(tmp_path: Path) -> None:
    desk = TransferTarget(label="front desk", to="sip:desk@pbx.acme.example", timeout_s=20)
    agent = Agent(greeting="Acme Plumbing, how can I help?", transfer_targets=[desk])
    script = wants("transfer_call", target="front desk", reason="wants a person")
    async with phone_bridge(tmp_path, agent=agent, script=script) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)])
        events = await phone.events(call.sid)

    assert call.dial == DialLeg(to="sip:desk@pbx.acme.example", kind="sip", timeout_s=20, rang=True, answered=True)
    twiml = call.updates[-1]["Twiml"]
    assert "<Sip>sip:desk@pbx.acme.example</Sip>" in twiml and "<Number>" not in twiml
    dialed = of_type(events, TransferDialed)
    assert [(d.label, d.to, d.method, d.ok) for d in dialed] == [
        ("front desk", "sip:desk@pbx.acme.example", "rest", True)
    ]
    assert of_type(events, CallEnded)[0].reason == "transferred"


async def test_with_end_call_off_the_model_is_not_offered_the_tool_and_cannot_hang_up(tmp_path: Path) -> None:
    agent = Agent(greeting="Acme Plumbing, how can I help?", end_call=False)
    async with phone_bridge(tmp_path, agent=agent, script=wants("end_call", reason="done")) as phone:
        call = await inbound(phone, [WaitForAssistant(timeout_s=10), Speak(800), WaitForAssistant(timeout_s=10)])
        events = await phone.events(call.sid)
        (session,) = phone.bridge.fake.sessions

    offered = [
        {tool["name"] for tool in json.loads(e.raw)["session"].get("tools", [])}
        for e in session.client_events
        if e.type == "session.update"
    ]
    assert offered and all("end_call" not in names for names in offered)
    assert all("send_dtmf" in names for names in offered)  # the other built-in tools are still there
    assert of_type(events, CallEndRequested) == [] and of_type(events, PhoneHangUpSent) == []
    assert call.hung_up_by == "caller" and call.updates == []  # the caller hung up; we never did
    assert not [e for e in of_type(events, ToolCallRequested) if e.name == "end_call"]
