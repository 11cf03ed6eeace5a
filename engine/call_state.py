"""The states of one call's core (``engine/call_core.py``)."""

from __future__ import annotations

import enum


class CallState(enum.Enum):
    CONNECTING = "connecting"
    """Waiting for the first model session."""
    ACTIVE = "active"
    """A model session is open."""
    RECONNECTING = "reconnecting"
    """The session was lost; the next one is being opened."""
    APOLOGIZING = "apologizing"
    """The model cannot be reached: the caller hears a short apology, then the call ends."""
    ENDING = "ending"
    """The end is decided; the call's tasks are stopping."""
    ENDED = "ended"
    """``CallEnded`` is recorded: no input is allowed any more."""


OFFLINE = frozenset({CallState.CONNECTING, CallState.RECONNECTING})
"""No session is open, one is wanted: caller audio is kept for the next session."""
LIVE = frozenset(CallState) - {CallState.ENDED}
