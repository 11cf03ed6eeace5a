"""A "position reached" primitive for trio: a number that only goes up, and any number of waiters.

Why: several places wait for a position — read-your-writes waits for the views to reach the store's
head, the live feed for its hub to pass a position, callers of the writer for their events to be
written — and each kept one ``trio.Event`` swapped on every change. That is easy to get subtly wrong:
``LiveCalls.wait_empty`` made a new event inside ``wait``, so a second waiter replaced the first's
event and the first was never woken. :class:`Watermark` wakes *every* waiter whose target is reached,
and only those (waiters are kept by target in a heap, so an advance costs O(log n) per woken target,
not a wake-up of everyone).

Any "has X happened N times" condition fits: e.g. "no live calls" is ``ended.wait_for(started)``
re-checked in a loop, with ``started`` and ``ended`` counting calls. Trio-only: call
:meth:`Watermark.advance` from the trio thread (from a worker thread, via
``trio.from_thread.run_sync``).
"""

from __future__ import annotations

import heapq

import trio


class Watermark:
    """A non-decreasing integer; ``await wait_for(n)`` returns once it is at least ``n``."""

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._targets: list[int] = []
        """Heap of targets someone waits for (each once, even when many wait for it)."""
        self._events: dict[int, trio.Event] = {}
        self._waiters: dict[int, int] = {}
        """How many tasks wait for each target (a target nobody waits for any more is forgotten)."""
        self._awaited: trio.Event | None = None
        """Set when a task starts waiting (:meth:`wait_awaited`)."""

    @property
    def value(self) -> int:
        return self._value

    @property
    def waiting(self) -> int:
        """Tasks waiting right now."""
        return sum(self._waiters.values())

    def advance(self, value: int) -> bool:
        """Raise the mark to ``value`` (a lower value is ignored) and wake every waiter it satisfies.
        Returns whether the mark moved."""
        if value <= self._value:
            return False
        self._value = value
        while self._targets and self._targets[0] <= value:
            target = heapq.heappop(self._targets)
            event = self._events.pop(target, None)
            self._waiters.pop(target, None)
            if event is not None:
                event.set()
        return True

    async def wait_for(self, target: int) -> int:
        """Return the mark once it is at least ``target`` (at once, with a checkpoint, if it is)."""
        if self._value >= target:
            await trio.lowlevel.checkpoint()
            return self._value
        event = self._events.get(target)
        if event is None:
            event = self._events[target] = trio.Event()
            heapq.heappush(self._targets, target)
        self._waiters[target] = self._waiters.get(target, 0) + 1
        if self._awaited is not None:
            self._awaited.set()
            self._awaited = None
        try:
            await event.wait()
        finally:
            self._forget(target, event)
        return self._value

    async def wait_awaited(self) -> None:
        """Return once some task waits for a value the mark has not reached (at once, with a
        checkpoint, while one does): for whoever moves the mark by polling, so it polls often only
        while someone is waiting."""
        if self._waiters:
            await trio.lowlevel.checkpoint()
            return
        if self._awaited is None:
            self._awaited = trio.Event()
        await self._awaited.wait()

    async def wait_beyond(self, value: int) -> int:
        """Return the mark once it is greater than ``value``."""
        return await self.wait_for(value + 1)

    def _forget(self, target: int, event: trio.Event) -> None:
        """A waiter left (woken or cancelled): drop the target once nobody waits for it, so cancelled
        waits for positions never reached cannot pile up (O(n) in the few targets waited for)."""
        if event.is_set() or self._events.get(target) is not event:
            return
        left = self._waiters[target] - 1
        if left:
            self._waiters[target] = left
            return
        del self._waiters[target]
        del self._events[target]
        self._targets.remove(target)
        heapq.heapify(self._targets)

    def __repr__(self) -> str:
        return f"Watermark({self._value}, waiting={self.waiting})"
