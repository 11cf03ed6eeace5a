"""The rerun beside the original, turn by turn: what the caller said, what the agent said then and
now, the tools then and now, and the ending then and now; each difference named. Turns are matched
by position (the N-th thing the caller said), as the caller's side is the same audio both times."""

from __future__ import annotations

from itertools import zip_longest

import msgspec

from callbridge.projections.call_turns import CallTurn, CallTurns, ToolUse


class TurnDiff(msgspec.Struct, kw_only=True):
    index: int
    caller: str
    agent_then: list[str] = []
    agent_now: list[str] = []
    tools_then: list[str] = []
    tools_now: list[str] = []
    tools_now_stubbed: list[bool] = []
    """For each of ``tools_now``: answered by a stub (the recorded answer or the test file's), not run."""
    changed: list[str] = []
    """What differs: ``caller``, ``agent``, ``tools``; empty when the turn is the same."""


class CallDiff(msgspec.Struct, kw_only=True):
    compared: bool
    """False for a scenario (there is no original to compare with: the ``then`` sides are empty)."""
    turns: list[TurnDiff]
    outcome_then: str = ""
    outcome_now: str = ""

    @property
    def outcome_changed(self) -> bool:
        return self.compared and self.outcome_then != self.outcome_now

    @property
    def empty(self) -> bool:
        """No difference at all (a scenario's diff is never compared, so it is empty)."""
        return not self.outcome_changed and not any(turn.changed for turn in self.turns)


def shown_tool(tool: ToolUse) -> str:
    return f"{tool.name}({tool.arguments})"


def diff_calls(then: CallTurns | None, now: CallTurns) -> CallDiff:
    blank = CallTurn(index=-1)
    turns: list[TurnDiff] = []
    old_turns = then.turns if then is not None else []
    for index, (old, new) in enumerate(zip_longest(old_turns, now.turns)):
        old_turn, new_turn = old or blank, new or blank
        row = TurnDiff(
            index=index,
            caller=new_turn.caller or old_turn.caller,
            agent_then=list(old_turn.agent),
            agent_now=list(new_turn.agent),
            tools_then=[shown_tool(t) for t in old_turn.tools],
            tools_now=[shown_tool(t) for t in new_turn.tools],
            tools_now_stubbed=[t.stubbed for t in new_turn.tools],
        )
        if then is not None:
            if old is None or new is None or old_turn.caller != new_turn.caller:
                row.changed.append("caller")
            if row.agent_then != row.agent_now:
                row.changed.append("agent")
            if row.tools_then != row.tools_now:
                row.changed.append("tools")
        turns.append(row)
    return CallDiff(
        compared=then is not None,
        turns=turns,
        outcome_then=then.outcome.describe() if then is not None else "",
        outcome_now=now.outcome.describe(),
    )
