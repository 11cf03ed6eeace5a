"""The briefing of a warm transfer, over real sockets: the person who answers hears the summary and
only then asks for the room (``<Redirect>`` to ``/twilio/transfer-join``, ``TransferBriefed``). A
person who hangs up during the summary never reached the caller: that is not a transfer, the caller
comes back to the agent as when nobody answers. Checked at the fake Twilio (what each leg did), in
the log, at the simulated model (what the resumed call was asked to say) and in the views."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from phone_harness import of_type, phone_bridge
from test_warm_transfer import AGENT, BACK, CALLER, GUARD_S, NO_ANSWER, PERSON, SCRIPT, WORDS, timeline, warm_call

from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.adapters.twilio.signature import webhook_url
from callbridge.engine.events import (
    AssistantSaid,
    CallEnded,
    CallHeld,
    CallResumed,
    TransferBriefed,
    TransferNotAnswered,
)


async def test_a_person_who_hangs_up_during_the_summary_is_not_a_transfer_and_the_caller_is_back(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "callbridge.db")
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        answer = Answer(kind="human", ring_s=0.1, briefing_s=30.0, leaves_during_briefing_s=0.7)
        caller, person = await warm_call(phone, answer)
        events = await phone.events(caller.sid)
        told = [json.loads(e.raw) for e in phone.bridge.fake.sessions[-1].client_events]
        row = (await phone.http.get(f"/api/conversations/{caller.sid}")).json()
    lines = timeline(store, caller.sid)

    # the person answered, heard (part of) the summary and hung up: a completed call of > 0 s,
    # what used to be counted as a transfer — but they never asked for the room nor entered it
    assert person.hung_up_by == "person" and person.statuses_posted == ["completed"]
    assert int(person.status_forms[-1]["CallDuration"]) > 0
    [summary] = person.heard_say
    assert WORDS in summary and person.rooms == []
    room = phone.twilio.calls.conferences.rooms[f"callbridge-{caller.sid}"]
    assert room.joined == [caller.sid] and room.most_present == 1
    # the log: held, not answered (with why), back with the agent; never briefed nor transferred
    [held] = of_type(events, CallHeld)
    assert held.person_sid == person.sid
    assert of_type(events, TransferBriefed) == []
    [missed] = of_type(events, TransferNotAnswered)
    assert (missed.label, missed.to, missed.status) == ("support", PERSON, "completed")
    assert missed.reason == "the person hung up during the briefing"
    [resumed] = of_type(events, CallResumed)
    assert events.index(held) < events.index(missed) < events.index(resumed)
    [ended] = of_type(events, CallEnded)
    assert ended.reason == "caller_hangup" and ended.detail != "transferred"
    # the caller came back on a second stream, and the agent said the no-answer message there
    assert len(caller.reports) == 2 and caller.errors == []
    greeting = next(e for e in told if e["type"] == "response.create")
    assert NO_ANSWER in greeting["response"]["instructions"]
    assert any(e.text == NO_ANSWER for e in of_type(events[events.index(resumed) :], AssistantSaid))
    # the views and the timeline say so
    assert (row["outcome"], row["transfer_target"]) == ("caller_hangup", None)
    assert any("the person hung up during the briefing" in line for line in lines), lines


async def test_a_person_who_hears_the_whole_summary_is_briefed_then_put_through(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        caller, person = await warm_call(phone, Answer(kind="human", ring_s=0.1, briefing_s=0.3, talk_s=0.5))
        events = await phone.events(caller.sid)

    [held] = of_type(events, CallHeld)
    [briefed] = of_type(events, TransferBriefed)
    [ended] = of_type(events, CallEnded)
    assert (briefed.label, briefed.to, briefed.person_sid) == ("support", PERSON, person.sid)
    assert held.person_sid == person.sid
    assert events.index(held) < events.index(briefed) < events.index(ended)
    assert (ended.reason, ended.detail) == ("transferred", "support")
    assert person.rooms == caller.rooms == [held.room] and of_type(events, TransferNotAnswered) == []


async def test_the_callers_own_end_and_the_persons_end_both_report_one_transfer(tmp_path: Path) -> None:
    """The room ends when the person leaves: the caller's call and the person's both end, and both
    report it (the number's status callback, the transfer's): the call ends ``transferred`` once."""
    async with phone_bridge(tmp_path, agent=AGENT, script=SCRIPT) as phone:
        phone.twilio.calls.script_number(PERSON, Answer(kind="human", ring_s=0.1, briefing_s=0.2, talk_s=0.5))
        people: list[FakeCall] = []
        phone.twilio.calls.on_call = lambda call: people.append(call) if call.to == PERSON else None
        status_url = webhook_url(phone.bridge.server.settings.public_url, "/twilio/status")
        with trio.fail_after(GUARD_S):
            caller = await phone.twilio.calls.place_inbound(
                phone.base_url, script=CALLER, on_hold_s=30, resume_script=BACK, status_callback=status_url
            )
            [person] = people
            await person.done.wait()
        events = await phone.events(caller.sid)

    assert caller.statuses_posted == ["completed"] and person.statuses_posted == ["completed"]
    assert caller.errors == [] and person.errors == []
    [ended] = of_type(events, CallEnded)
    assert (ended.reason, ended.detail) == ("transferred", "support")
    assert person.updates == []  # nobody hung the person up: they were talking with the caller
