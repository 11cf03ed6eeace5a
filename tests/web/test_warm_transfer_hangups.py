"""Ending a call a warm transfer holds, over real sockets: the caller hangs up while the person's
phone rings or while the person hears the summary (Twilio reports the caller's call ``completed``
to the number's status callback), or an operator hangs the held call up through
``POST /api/calls/{id}/hangup`` (the console's button). Either way the person's call is ended
through Twilio's REST API (the fake records the update and what the person's phone did), nobody
is put through to an empty room, and the call ends once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio
import trio.testing
from phone_harness import PhoneBridge, of_type, phone_bridge
from test_warm_transfer import AGENT, BACK, CALLER, GUARD_S, PERSON, SCRIPT

from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.adapters.twilio.signature import webhook_url
from callbridge.engine.events import (
    CallEnded,
    CallEndRequested,
    CallHeld,
    CallStatusReported,
    TransferBriefed,
    TransferNotAnswered,
)


def status_url(phone: PhoneBridge) -> str:
    """The number's status callback, as the console's setup sets it."""
    return webhook_url(phone.bridge.server.settings.public_url, "/twilio/status")


async def caller_gives_up(phone: PhoneBridge, answer: Answer, on_hold_s: float) -> tuple[FakeCall, FakeCall]:
    """A warm transfer whose caller hangs up after ``on_hold_s`` on hold; (caller, person) once over."""
    phone.twilio.calls.script_number(PERSON, answer)
    people: list[FakeCall] = []
    phone.twilio.calls.on_call = lambda call: people.append(call) if call.to == PERSON else None
    with trio.fail_after(GUARD_S):
        caller = await phone.twilio.calls.place_inbound(
            phone.base_url, script=CALLER, on_hold_s=on_hold_s, resume_script=BACK, status_callback=status_url(phone)
        )
        [person] = people
        await person.done.wait()
    assert caller.errors == [] and person.errors == [], (caller.errors, person.errors)
    return caller, person


def assert_ended_once_on_hold(events: list[object], reason: str) -> CallEnded:
    [ended] = of_type(events, CallEnded)  # type: ignore[arg-type]
    assert (ended.reason, ended.detail) == (reason, "while on hold")
    assert of_type(events, TransferNotAnswered) == [] and of_type(events, TransferBriefed) == []  # type: ignore[arg-type]
    after = events[events.index(ended) + 1 :]  # Twilio's status callback may come before or after the end
    assert all(isinstance(event, CallStatusReported) for event in after), after
    return ended


async def test_a_caller_who_hangs_up_while_the_person_rings_cancels_the_persons_call(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        caller, person = await caller_gives_up(phone, Answer(kind="human", ring_s=30.0), on_hold_s=0.3)
        events = await phone.events(caller.sid)
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()

    assert caller.hung_up_by == "caller" and caller.statuses_posted == ["completed"]
    # the person's phone stopped ringing: cancelled through REST, never answered, never in a room
    assert person.updates == [{"Status": "completed"}] and person.hung_up_by == "rest"
    assert person.statuses_posted == ["canceled"] and person.heard_say == [] and person.rooms == []
    [held] = of_type(events, CallHeld)
    assert held.person_sid == person.sid
    assert_ended_once_on_hold(events, "caller_hangup")
    assert [e.status for e in of_type(events, CallStatusReported)] == ["completed"]
    assert (row["status"], row["outcome"], row["transfer_target"]) == ("completed", "caller_hangup", None)


async def test_a_caller_who_hangs_up_during_the_briefing_ends_the_persons_call(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        answer = Answer(kind="human", ring_s=0.1, briefing_s=60.0)
        caller, person = await caller_gives_up(phone, answer, on_hold_s=1.5)
        events = await phone.events(caller.sid)

    # the person answered and was hearing the summary: hung up through REST before joining anyone
    assert person.heard_say and person.rooms == [] and person.hung_up_by == "rest"
    assert person.updates == [{"Status": "completed"}] and person.statuses_posted == ["completed"]
    assert_ended_once_on_hold(events, "caller_hangup")


@asynccontextmanager
async def held(phone: PhoneBridge, answer: Answer) -> AsyncIterator[tuple[FakeCall, FakeCall]]:
    """A caller held while the person's phone does ``answer`` (the caller waits an hour)."""
    phone.twilio.calls.script_number(PERSON, answer)
    calls: list[FakeCall] = []
    phone.twilio.calls.on_call = calls.append
    async with trio.open_nursery() as nursery:
        place = partial(
            phone.twilio.calls.place_inbound,
            phone.base_url,
            script=CALLER,
            on_hold_s=3600,
            status_callback=status_url(phone),
        )
        nursery.start_soon(place)
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(GUARD_S):
            await calls[0].heard_assistant.wait()
            await phone.bridge.wait_call_ended(calls[0].sid)  # its stream ended: held
            while len(calls) < 2:
                await phone.twilio.calls.placed.wait()
        yield calls[0], calls[1]
        nursery.cancel_scope.cancel()


async def test_an_operator_hangs_up_a_held_call_through_the_api(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        async with held(phone, Answer(kind="human", ring_s=3600)) as (caller, person):
            hung = await phone.post(f"/api/calls/{caller.sid}/hangup", {"reason": "caller waited too long"})
            with trio.fail_after(GUARD_S):
                await caller.done.wait()
                await person.done.wait()
            again = await phone.post(f"/api/calls/{caller.sid}/hangup", {})
        events = await phone.events(caller.sid)
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()

    assert hung.status_code == 202, hung.text
    assert hung.json() == {"call_id": caller.sid, "accepted": "hangup", "held": True}
    # Twilio: the caller's leg was hung up over REST, the person's ringing call cancelled
    assert caller.updates[-1] == {"Status": "completed"} and caller.hung_up_by == "rest"
    assert person.updates == [{"Status": "completed"}] and person.statuses_posted == ["canceled"]
    assert person.rooms == []
    # the log: the operator's decision, then one end; the caller's own status callback changed nothing
    [asked] = of_type(events, CallEndRequested)
    assert (asked.by, asked.reason) == ("operator", "caller waited too long")
    ended = assert_ended_once_on_hold(events[: events.index(asked)] + events[events.index(asked) + 1 :],
                                      "operator_hangup")  # fmt: skip
    assert events.index(asked) < events.index(ended)
    assert [e.status for e in of_type(events, CallStatusReported)] == ["completed"]
    assert again.status_code == 404
    assert (row["status"], row["outcome"], row["transfer_target"]) == ("completed", "hung_up_by_operator", None)


async def test_hanging_up_a_held_call_when_twilio_refuses_says_so_and_records_no_end(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        async with held(phone, Answer(kind="human", ring_s=3600)) as (caller, _person):
            phone.twilio.calls.fail_next.append((503, {"code": 20503, "message": "Service unavailable"}))
            refused = await phone.post(f"/api/calls/{caller.sid}/hangup", {})
            events = await phone.events(caller.sid)
            retried = await phone.post(f"/api/calls/{caller.sid}/hangup", {})
            with trio.fail_after(GUARD_S):
                await caller.done.wait()
        after = await phone.events(caller.sid)

    assert refused.status_code == 502
    assert "Twilio did not hang up the held call" in refused.json()["error"] and "try again" in refused.json()["error"]
    assert of_type(events, CallEnded) == [] and len(of_type(events, CallEndRequested)) == 1
    assert retried.status_code == 202
    assert len(of_type(after, CallEndRequested)) == 1  # the retry did not ask twice
    [ended] = of_type(after, CallEnded)
    assert ended.reason == "operator_hangup"
