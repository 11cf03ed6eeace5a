"""No dead air while a tool runs — pure.

A weather API that takes four seconds, or a person answering from the console, leaves the caller
in silence — and callers hang up on silence. When tool outputs have been awaited for ``after_s``
and nothing is playing or being said, the bridge asks the model for one short out-of-band response
("one moment, I'm still looking that up"): ``response.create`` with ``conversation: "none"``, so it
is spoken but not added to the conversation, and tagged in its ``metadata`` so the response gate
knows it does not answer the tool call. Once per wait. The call core owns the timer
(``Timer.TOOL_WAIT``); this class says when to arm it and what to do when it fires.
"""

from __future__ import annotations

from typing import Any

TOOL_WAIT_TAG = "tool_wait"
TOOL_WAIT_RESPONSE: dict[str, Any] = {
    "conversation": "none",
    "output_modalities": ["audio"],
    "instructions": (
        "In a few words, tell the caller you are still working on their request. "
        "Do not answer it yet and do not call any function."
    ),
    "metadata": {"callbridge": TOOL_WAIT_TAG},
}
RETRY_S = 0.5
"""When the assistant is still talking at the deadline, look again this much later."""


def is_tool_wait_response(metadata: Any) -> bool:
    return isinstance(metadata, dict) and metadata.get("callbridge") == TOOL_WAIT_TAG


class ToolWait:
    """One wait at a time: from the first tool call without an output to the last output."""

    def __init__(self, after_s: float | None) -> None:
        self.after_s = after_s
        self.waiting = False
        self.announced = False

    def tool_started(self) -> float | None:
        """A tool call began; returns the delay to arm the timer with (None: leave it as it is)."""
        if self.waiting or self.after_s is None:
            return None
        self.waiting, self.announced = True, False
        return self.after_s

    def all_answered(self) -> bool:
        """Every output is in; True when a wait was running (disarm the timer)."""
        was = self.waiting
        self.waiting = False
        return was

    def fired(self, may_speak: bool) -> str:
        """The timer fired: ``announce`` (say "one moment" now), ``retry`` (re-arm ``RETRY_S``), or
        ``idle`` (nothing to do)."""
        if not self.waiting or self.announced:
            return "idle"
        if not may_speak:
            return "retry"
        self.announced = True
        return "announce"
