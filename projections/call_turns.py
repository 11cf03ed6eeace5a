"""A call told as turns: what the caller said (or pressed), what the agent said, which tools it
called, and how the call ended. Pure: a list of events in, a ``CallTurns`` out.

Why it exists: regression tests (``callbridge test``) compare a recorded call with its rerun turn by
turn, script the simulated model from the recorded turns, and suggest assertions from what happened;
the console's "Save as test" does the same from the web layer, so the reading lives here, below both.

A turn begins when the model commits a caller utterance (``CallerSpeechDetected`` with
``started=False``; its ``CallerSaid`` fills in the words, whenever the transcription arrives) or when
keys are forwarded to the model (``DtmfForwarded``): exactly the user messages the model answers, in
order. Turn 0 holds what the agent said before the caller said anything (the greeting).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

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
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TransferDialed,
    TransferRefused,
)
from callbridge.projections.legacy_facts import expand_events


class ToolUse(msgspec.Struct, frozen=True):
    name: str
    arguments: str
    """The JSON the model sent."""
    ok: bool | None = None
    """True once it completed, False when it failed, None when no answer was recorded."""
    stubbed: bool = False
    """A ``callbridge test`` stand-in answered it (``source = "stub"``): the tool did not run."""


class CallTurn(msgspec.Struct, kw_only=True):
    index: int
    caller: str = ""
    """What the caller said (the transcription), ``[pressed 5]`` for keys, empty for turn 0."""
    kind: str = "speech"
    """``start`` (turn 0), ``speech`` or ``keys``."""
    agent: list[str] = []
    """Everything the agent said in this turn, in order (greetings and goodbyes included)."""
    tools: list[ToolUse] = []
    reply: str | None = None
    """The model's own answer (no engine-asked line: greeting, goodbye, re-prompt), before any tool."""
    after_tool: str | None = None
    """What the model said once its first tool had answered."""
    item_id: str = ""


class CallOutcome(msgspec.Struct, frozen=True, kw_only=True):
    ended: str
    """``CallEnded``'s reason (``caller_hangup``, ``agent_hangup``, ``transferred``, …), ``not_ended``."""
    ended_by: str
    """``caller``, ``agent`` (the model's end_call), ``transfer``, ``operator``, ``other``."""
    transfer_to: str | None = None

    def describe(self) -> str:
        if self.ended_by == "transfer":
            return f"transferred to {self.transfer_to}"
        return {"caller": "the caller hung up", "agent": "the agent hung up"}.get(self.ended_by, self.ended)


class CallTurns(msgspec.Struct, kw_only=True):
    call_id: str
    turns: list[CallTurn]
    outcome: CallOutcome
    barge_ins: int = 0
    model_errors: list[str] = []
    from_number: str = ""
    to_number: str = ""
    agent_name: str = ""

    def tools(self) -> list[ToolUse]:
        return [tool for turn in self.turns for tool in turn.tools]

    def transcript(self) -> str:
        """Both sides, one line each: ``caller: …`` / ``agent: …`` (what transcript assertions search)."""
        lines: list[str] = []
        for turn in self.turns:
            if turn.caller:
                lines.append(f"caller: {turn.caller}")
            lines += [f"agent: {said}" for said in turn.agent]
        return "\n".join(lines)


def call_turns(events: Sequence[Event]) -> CallTurns:
    """The call's turns and outcome, from its events in log order (an old log's model events are read
    as the facts they state, ``projections/legacy_facts.py``)."""
    events = expand_events(events)
    call_id = events[0].call_id if events else ""
    turns = [CallTurn(index=0, kind="start")]
    by_item: dict[str, CallTurn] = {}
    tool_turn: dict[str, tuple[CallTurn, int]] = {}
    started = next((e for e in events if isinstance(e, CallStarted)), None)
    barge_ins = 0
    errors: list[str] = []

    def new_turn(kind: str, caller: str = "", item_id: str = "") -> CallTurn:
        turn = CallTurn(index=len(turns), kind=kind, caller=caller, item_id=item_id)
        turns.append(turn)
        if item_id:
            by_item[item_id] = turn
        return turn

    for event in events:
        current = turns[-1]
        if isinstance(event, CallerSpeechDetected) and not event.started and event.item_id not in by_item:
            new_turn("speech", item_id=event.item_id)
        elif isinstance(event, CallerSaid):
            turn = by_item.get(event.item_id) or new_turn("speech", item_id=event.item_id)
            turn.caller = event.text
        elif isinstance(event, DtmfForwarded):
            new_turn("keys", caller=f"[pressed {event.digits}]")
        elif isinstance(event, AssistantSaid):
            current.agent.append(event.text)
            if event.purpose or event.out_of_band:
                continue
            if current.tools and current.after_tool is None:
                current.after_tool = event.text
            elif not current.tools and current.reply is None:
                current.reply = event.text
        elif isinstance(event, ToolCallRequested):
            tool_turn[event.tool_call_id] = (current, len(current.tools))
            current.tools.append(ToolUse(event.name, event.arguments))
        elif isinstance(event, ToolCallCompleted | ToolCallFailed) and event.tool_call_id in tool_turn:
            turn, index = tool_turn[event.tool_call_id]
            turn.tools[index] = msgspec.structs.replace(
                turn.tools[index], ok=isinstance(event, ToolCallCompleted), stubbed=event.source == "stub"
            )
        elif isinstance(event, BargeInDecided) and not event.action.startswith("skipped"):
            barge_ins += 1
        elif isinstance(event, ModelErrorReported):
            errors.append(f"{event.code or event.error_type}: {event.message}")
    return CallTurns(
        call_id=call_id,
        turns=turns,
        outcome=call_outcome(events),
        barge_ins=barge_ins,
        model_errors=errors,
        from_number=started.from_number if started else "",
        to_number=started.to_number if started else "",
        agent_name=started.agent_name if started else "",
    )


def call_outcome(events: Sequence[Event]) -> CallOutcome:
    """How the call ended, and by whose decision."""
    ended = next((e for e in events if isinstance(e, CallEnded)), None)
    reason = ended.reason if ended is not None else "not_ended"
    dialed = [e for e in events if isinstance(e, TransferDialed) and e.ok]
    held = [e.label for e in events if isinstance(e, CallHeld)]
    if reason == "transferred":  # a warm transfer the person took (its detail is the label), or a cold one
        label = (ended.detail if ended is not None else "") or (held or [d.label for d in dialed] or [""])[-1]
        return CallOutcome(ended=reason, ended_by="transfer", transfer_to=label or None)
    if dialed and reason in ("agent_hangup", "twilio_disconnected", "caller_hangup"):
        return CallOutcome(ended=reason, ended_by="transfer", transfer_to=dialed[-1].label)
    requested = next((e for e in events if isinstance(e, CallEndRequested)), None)
    if requested is not None and reason != "caller_hangup":
        by = "agent" if requested.by == "model" else requested.by
        return CallOutcome(ended=reason, ended_by=by if by in ("agent", "operator") else "other")
    if reason == "caller_hangup":
        return CallOutcome(ended=reason, ended_by="caller")
    return CallOutcome(ended=reason, ended_by="other")


def refused_transfers(events: Sequence[Event]) -> list[str]:
    """Labels of transfers the engine refused (a target the agent does not have)."""
    return [e.label for e in events if isinstance(e, TransferRefused)]
