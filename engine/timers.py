"""The call core's timers, kept by one task: a deadline per timer, fired in deadline order.

The core asks for ``StartTimer(timer, delay_s)`` and ``CancelTimer(timer)``; the shell keeps the
deadlines here and runs ``Timers.run``, which sleeps until the earliest one (the sleep's cancel
scope deadline is moved whenever the earliest changes, so no wake-up events are needed) and hands
each due timer to ``fire``. Under a MockClock the timers run on virtual time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")


class Timers(Generic[T]):
    def __init__(self) -> None:
        self._deadlines: dict[T, float] = {}
        self._scope: trio.CancelScope | None = None

    def start(self, timer: T, delay_s: float) -> None:
        self._deadlines[timer] = trio.current_time() + delay_s
        self._reschedule()

    def cancel(self, timer: T) -> None:
        if self._deadlines.pop(timer, None) is not None:
            self._reschedule()

    def pending(self) -> dict[T, float]:
        return dict(self._deadlines)

    def _earliest(self) -> float:
        return min(self._deadlines.values(), default=math.inf)

    def _reschedule(self) -> None:
        if self._scope is not None:
            self._scope.deadline = self._earliest()

    async def run(self, fire: Callable[[T], None]) -> None:
        """Fire timers as they come due, until cancelled."""
        while True:
            with trio.CancelScope(deadline=self._earliest()) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            due = sorted(
                (deadline, str(timer), timer) for timer, deadline in self._deadlines.items() if deadline <= now
            )
            for _, _, timer in due:
                if self._deadlines.get(timer, math.inf) <= now:
                    del self._deadlines[timer]
                    fire(timer)
