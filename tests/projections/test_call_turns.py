"""A call told as turns, from hand-made event sequences: turns begin where the model committed what
the caller said (its words may arrive late, as the real model's transcription does) or got keys;
the model's own answers apart from the lines the engine asked for; how the call ended, by whom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from test_projections_support import barge_in_call, normal_call, tool_call

from callbridge.engine.events import (
    AssistantSaid,
    BargeInDecided,
    CallEnded,
    CallEndRequested,
    CallerSaid,
    CallerSpeechDetected,
    CallHeld,
    CallStarted,
    DtmfForwarded,
    Event,
    ModelErrorReported,
    ModelEventReceived,
    ToolCallCompleted,
    ToolCallRequested,
    TransferDialed,
)
from callbridge.engine.synthetic import CallLog
from callbridge.projections.call_turns import CallOutcome, ToolUse, call_outcome, call_turns
from callbridge.projections.legacy_facts import DERIVED

CALL = "CA1"


def at(seconds: float) -> dict[str, Any]:
    return {"call_id": CALL, "at": 1000.0 + seconds}


def test_turns_follow_the_models_commits_and_late_transcriptions() -> None:
    events: list[Event] = [
        CallStarted(**at(0), stream_sid="MZ1", from_number="+15550001111", agent_name="sales"),
        AssistantSaid(**at(1), item_id="a0", response_id="r0", text="Hello, Acme.", purpose="greeting"),
        CallerSpeechDetected(**at(2), item_id="u1", started=True),
        CallerSpeechDetected(**at(3), item_id="u1", started=False),
        ToolCallRequested(**at(3.1), tool_call_id="c1", name="lookup", arguments='{"order":"1"}'),
        CallerSaid(**at(3.2), item_id="u1", text="Where is order one?"),  # the words come after the call
        ToolCallCompleted(**at(3.3), tool_call_id="c1", name="lookup", output="{}", duration_ms=5),
        AssistantSaid(**at(4), item_id="a1", response_id="r1", text="It ships today."),
        DtmfForwarded(**at(5), digits="5", mode="model"),
        AssistantSaid(**at(6), item_id="a2", response_id="r2", text="You pressed five."),
        BargeInDecided(**at(6.5), item_id="a2", played_ms=500, received_ms=900, audio_end_ms=500, action="truncated"),
        BargeInDecided(
            **at(6.6), item_id="a2", played_ms=900, received_ms=900, audio_end_ms=None, action="skipped_fully_played"
        ),
        ModelErrorReported(**at(7), code="rate_limit", message="slow down"),
        CallEnded(**at(8), reason="caller_hangup"),
    ]
    turns = call_turns(events)

    assert [(t.kind, t.caller) for t in turns.turns] == [
        ("start", ""),
        ("speech", "Where is order one?"),
        ("keys", "[pressed 5]"),
    ]
    assert (turns.turns[0].agent, turns.turns[0].reply) == (["Hello, Acme."], None)  # the engine's greeting
    first = turns.turns[1]
    assert first.tools == [ToolUse("lookup", '{"order":"1"}', ok=True)]
    assert (first.reply, first.after_tool) == (None, "It ships today.")
    assert turns.turns[2].reply == "You pressed five."
    assert turns.barge_ins == 1 and turns.model_errors == ["rate_limit: slow down"]
    assert (turns.from_number, turns.agent_name) == ("+15550001111", "sales")
    assert turns.transcript().splitlines() == [
        "agent: Hello, Acme.",
        "caller: Where is order one?",
        "agent: It ships today.",
        "caller: [pressed 5]",
        "agent: You pressed five.",
    ]


def test_how_a_call_ended_and_by_whom() -> None:
    dialed = TransferDialed(**at(5), label="sales", to="+15557654321", method="stream", twiml="<Dial/>")
    assert call_outcome([dialed, CallEnded(**at(6), reason="agent_hangup")]) == CallOutcome(
        ended="agent_hangup", ended_by="transfer", transfer_to="sales"
    )
    held = CallHeld(**at(5), label="billing", to="+15550002222", room="r1")
    warm = call_outcome([held, CallEnded(**at(9), reason="transferred", detail="billing")])
    assert (warm.ended_by, warm.transfer_to, warm.describe()) == ("transfer", "billing", "transferred to billing")
    agent = call_outcome([CallEndRequested(**at(4), by="model"), CallEnded(**at(6), reason="agent_hangup")])
    assert (agent.ended_by, agent.describe()) == ("agent", "the agent hung up")
    caller = call_outcome([CallEndRequested(**at(4), by="model"), CallEnded(**at(5), reason="caller_hangup")])
    assert caller.ended_by == "caller"  # the caller hung up before the agent's goodbye ended the call
    assert call_outcome([CallStarted(**at(0), stream_sid="MZ1")]).ended == "not_ended"


@pytest.mark.parametrize("build", [normal_call, tool_call, barge_in_call])
def test_a_log_recorded_before_the_typed_facts_tells_the_same_turns(build: Callable[[], CallLog]) -> None:
    today = build().events
    old = [
        msgspec.structs.replace(event, facts=0) if isinstance(event, ModelEventReceived) else event
        for event in today
        if type(event).__name__ not in DERIVED  # an engine of ModelEventReceived@1 recorded no facts
    ]
    assert len(old) < len(today)
    assert call_turns(old) == call_turns(today)
    assert call_turns(today).transcript()  # there is something to compare
