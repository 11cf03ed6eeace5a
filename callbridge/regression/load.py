"""Is this process keeping up? A rerun's timings (dead air, reply latency) are only as true as the
process playing the caller, the engine and the model is punctual: with more calls than its core can
carry, every one of them runs late, and timing checks fail that would pass on a quiet machine. A
tick every 50 ms measures how late the trio loop wakes; a test with timing checks during which it
fell far behind gets a note saying so (``suite.py``). Only the call counts: engines starting (a
burst of work as a suite begins) are not a test's timing."""

from __future__ import annotations

from collections import deque

import trio

TICK_S = 0.05
OVERLOADED_LAG_S = 0.15
"""Later than this, the loop was not keeping up (a few ms is usual; a busy 20 ms frame clock slips)."""


class LoopLag:
    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=200_000)

    async def run(self) -> None:
        while True:
            due = trio.current_time() + TICK_S
            await trio.sleep_until(due)
            now = trio.current_time()
            self._samples.append((now, now - due))

    def worst_between(self, start: float, end: float) -> float:
        """The latest the loop woke (seconds) between ``start`` and ``end`` (trio's clock)."""
        return max((lag for at, lag in self._samples if start <= at <= end), default=0.0)


def overload_note(worst_s: float) -> str | None:
    if worst_s <= OVERLOADED_LAG_S:
        return None
    return (
        f"this process was overloaded during the test (its event loop fell {worst_s * 1000:.0f} ms behind): "
        "timings (dead air, latency) may be off; run fewer at once (--concurrency) or over more processes"
    )
