"""Specification of warm transfers in the core (engine/call_transfer.py).

The caller is held in a conference room while the person is called and briefed; the call is held,
not ended; nobody answering brings the caller back to the agent with the conversation intact.
Fed by hand: no sockets, no clock.
"""

from __future__ import annotations

import json

from core_driver import Driver, function_call_done, response_done
from test_call_control import echo, speak

from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.call_io import (
    CallBegan,
    CallerHungUp,
    CallTornDown,
    EndCall,
    HoldForTransfer,
    ModelSessionOpened,
    PhoneCommandDone,
    RedirectPhone,
)
from callbridge.engine.events import (
    AssistantSaid,
    CallEnded,
    CallerSaid,
    CallHeld,
    CallResumed,
    CallStarted,
    TransferDialed,
)

SUPPORT = TransferTarget(label="support", to="+15551112222", caller_id="+15557654321", timeout_s=25, mode="warm")


def transfer_heard(call: Driver) -> None:
    """The caller said why; the model announces the transfer and calls transfer_call; it is heard."""
    call.server(
        {"type": "conversation.item.input_audio_transcription.completed", "item_id": "user_1",
         "content_index": 0, "transcript": "My router keeps dropping the line."}
    )  # fmt: skip
    marks = speak(call, "resp_1", "item_1")  # "Let me get you someone from support."
    done = function_call_done("call_t", name="transfer_call", response_id="resp_1")
    call.server({**done, "arguments": json.dumps({"target": "support", "reason": "router fault"})})
    call.server(response_done("resp_1"))
    echo(call, marks)


def test_a_warm_transfer_holds_the_caller_and_briefs_the_person_with_the_calls_own_words() -> None:
    call = Driver(agent=Agent(transfer_targets=[SUPPORT]), warm_transfers=True)
    call.start()
    transfer_heard(call)
    [hold] = call.of(HoldForTransfer)
    assert (hold.to, hold.caller_id, hold.timeout_s, hold.label) == ("+15551112222", "+15557654321", 25, "support")
    assert hold.room == "callbridge-CAcore"
    assert "Reason: router fault" in hold.summary and "My router keeps dropping the line." in hold.summary
    assert call.of(RedirectPhone) == []
    call.feed(PhoneCommandDone(kind="hold", method="rest"))
    assert call.of(EndCall) == []  # until Twilio stops the stream
    call.feed(CallerHungUp())
    [held] = call.events(CallHeld)
    assert (held.label, held.to, held.room) == ("support", "+15551112222", "callbridge-CAcore")
    assert call.of(EndCall)[-1].reason == "held_for_transfer"
    call.feed(CallTornDown(reason=""))
    assert call.events(CallEnded) == []  # held, not over: the server records how it ends


def test_a_held_caller_whose_hold_twilio_refused_is_transferred_cold_instead() -> None:
    call = Driver(agent=Agent(transfer_targets=[SUPPORT]), warm_transfers=True)
    call.start()
    transfer_heard(call)
    call.feed(PhoneCommandDone(kind="hold", method="rest", ok=False, error="HTTP 400"))
    [redirect] = call.of(RedirectPhone)
    assert "<Number>+15551112222</Number>" in redirect.twiml and call.events(CallHeld) == []
    call.feed(PhoneCommandDone(kind="redirect", method="rest"))
    call.feed(CallerHungUp())
    assert call.events(TransferDialed)[0].ok and call.of(EndCall)[-1].reason == "transferred"


def test_without_twilio_credentials_a_warm_target_is_transferred_cold() -> None:
    call = Driver(agent=Agent(transfer_targets=[SUPPORT]))
    call.start()
    transfer_heard(call)
    assert call.of(HoldForTransfer) == [] and len(call.of(RedirectPhone)) == 1


def test_a_caller_nobody_took_comes_back_to_the_agent_which_remembers_the_conversation() -> None:
    at = 1_700_000_000.0
    history = (
        CallStarted(call_id="CAcore", at=at, stream_sid="MZold"),
        CallerSaid(call_id="CAcore", at=at + 1, item_id="user_1", text="My router keeps dropping the line."),
        AssistantSaid(call_id="CAcore", at=at + 2, item_id="item_1", response_id="resp_1", text="One moment."),
        CallHeld(call_id="CAcore", at=at + 3, label="support", to="+15551112222", room="callbridge-CAcore"),
    )
    agent = Agent(transfer_no_answer_message="Nobody is free right now, sorry.")
    call = Driver(agent=agent, resumed=True, history=history, stream_sid="MZnew")
    call.feed(CallBegan())
    [resumed] = call.events(CallResumed)
    assert (resumed.stream_sid, resumed.reason) == ("MZnew", "no_answer") and call.events(CallStarted) == []
    opened = call.feed(ModelSessionOpened(session=1))
    sent = call.to_model(opened)
    seeded = [e["item"] for e in sent if e["type"] == "conversation.item.create"]
    assert [item["role"] for item in seeded] == ["user", "assistant"]
    assert "My router keeps dropping the line." in json.dumps(seeded[0])
    [greeting] = [e for e in sent if e["type"] == "response.create"]
    assert "Nobody is free right now, sorry." in greeting["response"]["instructions"]
