"""ProjectionService: keeps the views up to date while the server runs.

Why this shape: the runner (:mod:`projections.runner`) blocks, so each page is folded in
``trio.to_thread.run_sync``; between catch-ups the service awaits ``wait_for_appends(position)``:
by default a waiter of :class:`projections.appends.AppendSignal` (woken by the in-process
``EventWriter``, by PostgreSQL's NOTIFY when the server runs the signal, else polling every 0.5 s).
Any ``async def wait(position) -> None`` that returns when more events may exist will do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.appends import AppendSignal, WaitForAppends
from callbridge.projections.runner import Projection, ProjectionRunner
from callbridge.projections.views_db import open_views

logger = logging.getLogger(__name__)


class ProjectionService:
    """Keeps the views up to date while the server runs (a trio task; DB work in threads)."""

    def __init__(
        self,
        store: EventStore,
        views_path: str | Path,
        *,
        projections: Sequence[Projection] | None = None,
        writer: EventWriter | None = None,
        wait_for_appends: WaitForAppends | None = None,
        poll_interval: float = 0.5,
        page_size: int = 1000,
        max_backoff: float = 30.0,
    ) -> None:
        self.store = store
        self.views_path = views_path
        self._projections = projections
        self._wait = wait_for_appends or AppendSignal(store, writer).waiter(poll_interval)
        self._page_size = page_size
        self._backoff = Backoff(min(0.5, max_backoff), max_backoff)
        self._position = 0
        self._moved = trio.Event()
        self.failures = 0
        """Consecutive failed catch-ups (logged; retried with backoff)."""

    @property
    def position(self) -> int:
        """Every event up to here is in the views."""
        return self._position

    async def wait_for_position(self, position: int) -> None:
        """Return once the views include every event up to ``position`` (read-your-writes)."""
        while self._position < position:
            await self._moved.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Set the views up, report started, then follow the log until cancelled."""
        db = await trio.to_thread.run_sync(open_views, self.views_path)
        try:
            runner = ProjectionRunner(self.store, db, self._projections, page_size=self._page_size)
            await trio.to_thread.run_sync(runner.setup)
            self._advance(min(runner.positions().values(), default=0))
            task_status.started()
            while True:
                try:
                    await self._catch_up(runner)
                except Exception as exc:
                    self.failures += 1
                    delay = self._backoff.delay(self.failures)
                    logger.error(
                        "projections failed (attempt %d, retrying in %.1f s): %s",
                        self.failures,
                        delay,
                        exc,
                        exc_info=self.failures == 1,
                    )
                    await trio.sleep(delay)
                    continue
                self.failures = 0
                await self._wait(self._position)
        finally:
            db.close()

    async def _catch_up(self, runner: ProjectionRunner) -> None:
        while True:
            step = await trio.to_thread.run_sync(runner.step)
            self._advance(step.position)
            if step.caught_up:
                return

    def _advance(self, position: int) -> None:
        if position > self._position:
            self._position = position
            moved, self._moved = self._moved, trio.Event()
            moved.set()
