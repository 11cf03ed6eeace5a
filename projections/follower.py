"""Following the event log: the one loop behind every reader that keeps up with it.

The views (``projections.service``), the live feed (``web.live_feed``) and anything later that follows
the log all do the same thing: start from a position, read what is new page by page until caught up,
wait until the log may have grown (this process's writer, PostgreSQL's NOTIFY, or a poll — see
``projections.appends``), and keep going through failures, retried with one backoff policy
(``engine.backoff``). :class:`Follower` is that loop; each reader only says how to read one page
(a :data:`ReadStep`). Its position is a :class:`engine.watermark.Watermark`, so any number of tasks
can wait for it to reach a position (read-your-writes, shutdown drains).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.watermark import Watermark
from callbridge.projections.appends import WaitForAppends

log = logging.getLogger(__name__)


class Progress(NamedTuple):
    """What one read step did."""

    reached: int
    """Every event up to this position has been handled."""
    caught_up: bool
    """Nothing was left to read when the step read the log."""


ReadStep = Callable[[int], Awaitable[Progress]]
"""``await step(position)`` handles the next page after ``position`` (may raise: retried)."""
StartPosition = Callable[[], Awaitable[int]]
"""Where to start following, e.g. the log's head (may raise: retried)."""


class Follower:
    """Keeps one reader level with the log: page until caught up, wait for appends, retry failures."""

    def __init__(self, name: str, wait_for_appends: WaitForAppends, *, backoff: Backoff) -> None:
        self.name = name
        """Who follows, for the log: ``projections failed (attempt 2, retrying in 1.0 s): …``."""
        self._wait = wait_for_appends
        self._backoff = backoff
        self.position = Watermark()
        """Every event up to here has been handled."""
        self.known = False
        """The start position is known (set by :meth:`start_at` or the ``start`` of :meth:`run`)."""
        self.failures = 0
        """Consecutive failed attempts (0 while reading works)."""

    def start_at(self, position: int) -> None:
        """Follow from ``position`` (when it is known before :meth:`run`)."""
        self.position.advance(position)
        self.known = True

    async def run(
        self,
        step: ReadStep,
        *,
        start: StartPosition | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Follow the log until cancelled. ``start`` is tried once before reporting started (a failure
        is logged, and retried in the loop); without it the position must be known already."""
        if not self.known:
            if start is None:
                raise RuntimeError(f"{self.name}: no start position (call start_at or pass start)")
            try:
                self.start_at(await start())
            except Exception as exc:
                log.warning("%s cannot read the log yet (will retry): %s", self.name, exc)
        task_status.started()
        while True:
            try:
                if not self.known:
                    assert start is not None
                    self.start_at(await start())
                await self._catch_up(step)
            except Exception as exc:
                self.failures += 1
                delay = self._backoff.delay(self.failures)
                log.error(
                    "%s failed (attempt %d, retrying in %.1f s): %s",
                    self.name,
                    self.failures,
                    delay,
                    exc,
                    exc_info=self.failures == 1,
                )
                await trio.sleep(delay)
                continue
            if self.failures:
                log.warning("%s reads the log again after %d failed attempts", self.name, self.failures)
                self.failures = 0
            await self._wait(self.position.value)

    async def _catch_up(self, step: ReadStep) -> None:
        while True:
            progress = await step(self.position.value)
            self.position.advance(progress.reached)
            if progress.caught_up:
                return
