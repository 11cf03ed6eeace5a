"""Twilio's ``stop`` can come before the answer to our REST hang-up or redirect: the command took
effect, so the call ends as decided (not ``caller_hangup``) and the result is recorded once."""

from __future__ import annotations

from core_driver import Driver

from callbridge.engine.call_io import (
    CallerHungUp,
    CallTornDown,
    EndCall,
    HangUpPhone,
    HangUpRequested,
    LogLine,
    PhoneCommandDone,
)
from callbridge.engine.events import CallEnded, PhoneHangUpSent


def test_stop_before_the_rest_answer_ends_the_call_with_the_decided_reason_and_records_the_hang_up() -> None:
    call = Driver()
    call.start()
    call.feed(HangUpRequested(reason="done", by="operator"))
    assert len(call.of(HangUpPhone)) == 1
    call.feed(CallerHungUp(), dt=0.05)  # Twilio hung up the phone: its stream stops
    assert [(e.method, e.ok) for e in call.events(PhoneHangUpSent)] == [("rest", True)]
    assert [end.reason for end in call.of(EndCall)] == ["operator_hangup"]
    late = call.feed(PhoneCommandDone(kind="hang_up", method="rest"), dt=0.05)  # the REST answer, late
    assert late == [] or not any(isinstance(o, LogLine) for o in late)
    assert len(call.events(PhoneHangUpSent)) == 1
    call.feed(CallTornDown())
    assert [e.reason for e in call.events(CallEnded)] == ["operator_hangup"]


def test_stop_with_no_phone_command_under_way_is_the_caller_hanging_up() -> None:
    call = Driver()
    call.start()
    call.feed(CallerHungUp())
    assert call.events(PhoneHangUpSent) == []
    assert [end.reason for end in call.of(EndCall)] == ["caller_hangup"]
