"""One timer for every simulated caller's microphone in the peer process.

A caller sends a frame every 20 ms; on its own deadline (``caller_stream.OWN_DEADLINE``) each frame
costs a cancel scope, a deadline in trio's heap and a wake-up of its own — at 100 calls, 5,000 a
second, a seventh of the peer process's CPU in a profile, in a process whose lateness is part of
every latency it measures. ``Metronome`` keeps the waiting microphones in one heap and wakes every one
whose frame is due, all at once, from one task that ticks every ``TICK_S``: a frame goes out at most a
tick after its time (counted in "caller frames sent late"), and the added latency is timed from when
it went out, as before.
"""

from __future__ import annotations

import heapq
import itertools

import trio

TICK_S = 0.002
"""How often due microphones are woken: the most a frame is held past its time by the timer."""


class _Wait:
    """One microphone's wait: its task, or None once the wait was cancelled."""

    __slots__ = ("task",)

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task: trio.lowlevel.Task | None = task


class Metronome:
    """A ``caller_stream.Pace`` shared by the callers of one process; :meth:`run` in a nursery."""

    def __init__(self, tick_s: float = TICK_S) -> None:
        self._tick_s = tick_s
        self._waiting: list[tuple[float, int, _Wait]] = []
        """A heap by due time (then order of arrival)."""
        self._order = itertools.count()

    async def until(self, due: float, interrupted: trio.Event) -> None:
        """Return at the first tick at or after ``due`` (``interrupted`` is not watched: the frame's
        time is at most 20 ms away and the microphone checks why it woke)."""
        if due <= trio.current_time():
            await trio.lowlevel.checkpoint()
            return
        wait = _Wait(trio.lowlevel.current_task())
        heapq.heappush(self._waiting, (due, next(self._order), wait))

        def abort(_: object) -> trio.lowlevel.Abort:
            wait.task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    async def run(self) -> None:
        """Wake the due microphones every tick, until cancelled."""
        waiting = self._waiting
        while True:
            await trio.sleep(self._tick_s)
            now = trio.current_time()
            while waiting and waiting[0][0] <= now:
                task = heapq.heappop(waiting)[2].task
                if task is not None:
                    trio.lowlevel.reschedule(task)
