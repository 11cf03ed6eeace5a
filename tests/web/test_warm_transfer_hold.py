"""A call while a warm transfer holds it, over real sockets: what the views say, who may bring it
back (only its own resume token, only once the transfer was given up), that an engine restart does
not end it, that a caller who hangs up on hold ends it, and the operator's way in
(``POST /api/calls/{sid}/transfer``)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx2
import trio
import trio.testing
from bridge_harness import running_bridge
from phone_harness import AUTH_TOKEN, PhoneBridge, of_type, phone_bridge
from test_warm_transfer import AGENT, CALLER, GUARD_S, PERSON, SCRIPT, WORDS, warm_call
from trio_websocket import ConnectionClosed, open_websocket_url

from callbridge.adapters.sim.caller import WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.caller_http import new_sid
from callbridge.adapters.sim.caller_script import Step
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.adapters.twilio import codec, signature
from callbridge.engine.events import CallEnded, CallHeld, Event, TransferNotAnswered, TransferRequested
from callbridge.projections.replay_cli import replay_cli
from callbridge.web.call_admission import resume_token
from callbridge.web.media import CALL_TOKEN_PARAMETER, RESUME_PARAMETER


@asynccontextmanager
async def live_call(phone: PhoneBridge, script: list[Step], on_hold_s: float) -> AsyncIterator[list[FakeCall]]:
    """An inbound call, once the caller heard the agent (live on the server); yields every call the
    fake places meanwhile (the caller's first), and hangs them up when the test is done."""
    calls: list[FakeCall] = []
    phone.twilio.calls.on_call = calls.append
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            partial(phone.twilio.calls.place_inbound, phone.base_url, script=script, on_hold_s=on_hold_s)
        )
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(GUARD_S):
            await calls[0].heard_assistant.wait()
        yield calls
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def held_call(phone: PhoneBridge) -> AsyncIterator[FakeCall]:
    """A caller held in the room while the person's phone keeps ringing (until the test is done)."""
    phone.twilio.calls.script_number(PERSON, Answer(kind="no-answer", ring_s=3600))
    async with live_call(phone, CALLER, on_hold_s=3600) as calls:
        with trio.fail_after(GUARD_S):
            await phone.bridge.wait_call_ended(calls[0].sid)  # its stream ended: held
        yield calls[0]


async def start_stream(phone: PhoneBridge, call_sid: str, extra: dict[str, str]) -> tuple[int | None, str]:
    """Play Twilio by hand: a fresh per-call token from ``/twiml``, then a stream whose ``start``
    carries it and ``extra``; the close code and reason the server answers with."""
    public_url = phone.bridge.server.settings.public_url
    form = {"CallSid": call_sid, "From": "+15005550006", "To": "+15005550001", "Direction": "inbound"}
    url = signature.webhook_url(public_url, "/twiml")
    headers = {signature.SIGNATURE_HEADER: signature.compute_signature(AUTH_TOKEN, url, form)}
    async with httpx2.AsyncClient() as http:
        answer = await http.post(f"{phone.base_url}/twiml", data=form, headers=headers)
    token = answer.text.split(f'name="{CALL_TOKEN_PARAMETER}" value="')[1].split('"')[0]
    stream = signature.stream_url(public_url)
    sent = signature.compute_signature(AUTH_TOKEN, stream, {}).encode()
    sid = new_sid("MZ")
    parameters = {**form, CALL_TOKEN_PARAMETER: token, **extra}
    info = codec.StartInfo(stream_sid=sid, call_sid=call_sid, custom_parameters=parameters)
    async with open_websocket_url(stream, extra_headers=[(b"X-Twilio-Signature", sent)]) as ws:
        await ws.send_message(codec.encode_inbound(codec.Connected()))
        await ws.send_message(codec.encode_inbound(codec.Start(sequence_number="1", stream_sid=sid, start=info)))
        with trio.fail_after(GUARD_S):
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as closed:
                return (closed.reason.code, closed.reason.reason or "") if closed.reason else (None, "")
    raise AssertionError("unreachable")


def timeline_lines(store: str, call_id: str) -> list[str]:
    out = io.StringIO()
    assert replay_cli(store, call_id, wav=None, as_json=False, out=out) == 0
    return out.getvalue().splitlines()


async def test_a_held_call_reads_on_hold_and_only_its_own_token_after_a_missed_transfer_resumes_it(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "callbridge.db")
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        async with held_call(phone) as caller:
            held_events = await phone.events(caller.sid)
            row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()
            lines = timeline_lines(store, caller.sid)
            [version] = [
                r.version for r in phone.bridge.server.store.read_call(caller.sid) if type(r.event) is CallHeld
            ]
            forged = await start_stream(phone, caller.sid, {RESUME_PARAMETER: "0" * 40})
            other_hold = await start_stream(
                phone, caller.sid, {RESUME_PARAMETER: resume_token(AUTH_TOKEN, caller.sid, 1)}
            )
            absent = await start_stream(phone, caller.sid, {})
            too_soon = await start_stream(
                phone, caller.sid, {RESUME_PARAMETER: resume_token(AUTH_TOKEN, caller.sid, version)}
            )
            not_held = await start_stream(phone, "CA" + "1" * 32, {RESUME_PARAMETER: "0" * 40})
            after = await phone.events(caller.sid)

    assert (row["status"], row["outcome"], row["transfer_target"]) == ("in_progress", "on_hold", "support")
    assert lines[-1].endswith("on hold — transferring to support"), lines[-3:]
    assert of_type(held_events, CallEnded) == []
    assert forged == (
        1008,
        f"no valid resume token for call {caller.sid} (it is not held, or the token is not its own)",
    )
    assert other_hold == forged  # a token for another point of the call's log: not this hold's
    assert absent[0] == 1008 and "already" in absent[1]
    assert too_soon == (1008, f"call {caller.sid} is still being transferred to support: not resumed")
    assert not_held[0] == 1008 and "no valid resume token" in not_held[1]
    assert after == held_events  # nothing recorded by any refused stream
    assert len(caller.reports) == 1


async def test_a_restarted_engine_does_not_end_a_call_that_twilio_holds(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        async with held_call(phone) as caller:
            engine = phone.bridge.server.identity.engine_id
    async with running_bridge(tmp_path, agent=AGENT) as bridge:
        assert bridge.server.identity.engine_id == engine  # the same engine, restarted
        ended = await bridge.server.lost_calls.sweep()
        events = await bridge.events(caller.sid)
    assert caller.sid not in ended and of_type(events, CallEnded) == []
    assert of_type(events, CallHeld) != []


async def test_a_caller_who_hangs_up_on_hold_ends_the_call_when_nobody_answered(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        caller, person = await warm_call(phone, Answer(kind="busy", ring_s=1.0), on_hold_s=0.3)
        events = await phone.events(caller.sid)
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()

    assert caller.hung_up_by == "caller" and person.statuses_posted == ["busy"]
    assert caller.updates[-1]["Twiml"].count("callbridge_resume") == 1  # the server tried to bring them back
    [missed] = of_type(events, TransferNotAnswered)
    [ended] = of_type(events, CallEnded)
    assert missed.status == "busy" and (ended.reason, ended.detail) == ("caller_hangup", "while on hold")
    assert events.index(missed) < events.index(ended) == len(events) - 1
    assert (row["status"], row["outcome"], row["transfer_target"]) == ("completed", "caller_hangup", None)


async def test_an_operator_transfers_a_live_call_warm_and_the_person_takes_it(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript=WORDS, reply="Let me look into that.")])
    phone_script = [WaitForAssistant(timeout_s=10), WaitForHangUp(timeout_s=30)]
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        phone.twilio.calls.script_number(PERSON, Answer(kind="human", talk_s=1.0))
        async with live_call(phone, phone_script, on_hold_s=30) as calls:
            moved = await phone.post(f"/api/calls/{calls[0].sid}/transfer", {"target": "support", "reason": "asked"})
            assert moved.status_code == 202, moved.text
            with trio.fail_after(GUARD_S):
                await calls[0].done.wait()  # the room ended: the person was called before the caller moved
                await calls[1].done.wait()
        caller, person = calls
        events: list[Event] = await phone.events(caller.sid)
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()
        agent = (await phone.http.get("/api/agent")).json()

    [requested] = of_type(events, TransferRequested)
    assert (requested.by, requested.mode, requested.reason) == ("operator", "warm", "asked")
    assert person.heard_say and "Reason: asked" in person.heard_say[0] and person.rooms == caller.rooms
    assert of_type(events, CallHeld)[0].label == "support"
    assert of_type(events, CallEnded)[-1].reason == "transferred"
    assert (row["outcome"], row["transfer_target"]) == ("transferred", "support")
    assert agent["transfer_no_answer_message"] == AGENT.transfer_no_answer_message
    assert agent["transfer_targets"][0]["mode"] == "warm"
