"""How a simulated caller's microphone waits for each 20 ms frame's time (``caller_stream``).

By default each microphone keeps its own deadline on trio's clock: exact, at the price of a cancel
scope and a deadline per frame. A process running many callers at once (the benchmark's peer
process) gives them all one shared timer instead (``benchmarks/peer_clock.py``).
"""

from __future__ import annotations

from typing import Protocol

import trio


class Pace(Protocol):
    """How the microphone waits for a frame's time."""

    async def until(self, due: float, interrupted: trio.Event) -> None:
        """Return at ``due`` on trio's clock, or soon after (never before, unless ``interrupted``
        is set: it may return then; the microphone checks why it woke)."""
        ...


class _OwnDeadline:
    """Each microphone its own deadline: exact, at a cancel scope per frame."""

    async def until(self, due: float, interrupted: trio.Event) -> None:
        with trio.move_on_at(due):
            await interrupted.wait()


OWN_DEADLINE: Pace = _OwnDeadline()
