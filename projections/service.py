"""ProjectionService: keeps the views up to date while the server runs.

Why this shape: the runner (:mod:`projections.runner`) blocks, so each page is folded in
``trio.to_thread.run_sync``; following the log — catching up page by page, waiting for appends,
retrying failures with backoff — is the shared :class:`projections.follower.Follower`. Between
catch-ups it awaits ``wait_for_appends(position)``: by default a waiter of
:class:`projections.appends.AppendSignal` (woken by the in-process ``EventWriter``, by PostgreSQL's
NOTIFY when the server runs the signal, else polling every 0.5 s). Any ``async def wait(position)
-> None`` that returns when more events may exist will do.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.watermark import Watermark
from callbridge.projections.appends import AppendSignal, WaitForAppends
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.projection import Projection
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.views_db import open_views

logger = logging.getLogger(__name__)


POSITIONS_POLL_S = 0.1
"""How often a process that does not fold the views reads how far they are while someone waits."""


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
        fold: bool = True,
    ) -> None:
        """``fold`` False: another process folds the views (``serve --workers``: worker 0 does); this
        service then only follows how far they have got, from the views' own position table."""
        self.store = store
        self.views_path = views_path
        self._projections = projections
        wait = wait_for_appends or AppendSignal(store, writer).waiter(poll_interval)
        self._follower = Follower("projections", wait, backoff=Backoff(min(0.5, max_backoff), max_backoff))
        self._page_size = page_size
        self.fold = fold
        self._poll_interval = poll_interval

    @property
    def position(self) -> int:
        """Every event up to here is in the views."""
        return self._follower.position.value

    @property
    def watermark(self) -> Watermark:
        """The views' position, for waiting on (``await service.watermark.wait_for(head)``)."""
        return self._follower.position

    @property
    def failures(self) -> int:
        """Consecutive failed catch-ups (logged; retried with backoff)."""
        return self._follower.failures

    async def wait_for_position(self, position: int) -> None:
        """Return once the views include every event up to ``position`` (read-your-writes)."""
        await self._follower.position.wait_for(position)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Set the views up, report started, then follow the log until cancelled (or, not folding,
        follow the position the folding process reached)."""
        if not self.fold:
            await self._follow_positions(task_status)
            return
        db = await trio.to_thread.run_sync(open_views, self.views_path)
        try:
            runner = ProjectionRunner(self.store, db, self._projections, page_size=self._page_size)
            await trio.to_thread.run_sync(runner.setup)
            self._follower.start_at(min(runner.positions().values(), default=0))

            async def step(_position: int) -> Progress:
                done = await trio.to_thread.run_sync(runner.step)  # the runner keeps its positions in the views
                return Progress(done.position, done.caught_up)

            await self._follower.run(step, task_status=task_status)
        finally:
            db.close()

    async def _follow_positions(self, task_status: trio.TaskStatus[None]) -> None:
        """The views are folded by another process: read their lowest position (the
        ``projection_positions`` table, committed with every page) and move the watermark — every
        ``POSITIONS_POLL_S`` while someone waits for it (read-your-writes), else every poll interval:
        a worker nobody asks stays asleep instead of reading ten times a second."""
        db = await trio.to_thread.run_sync(open_views, self.views_path)
        try:

            def lowest() -> int:
                row = db.execute("SELECT min(position) FROM projection_positions").fetchone()
                return int(row[0] or 0) if row else 0

            started = False
            while True:
                try:
                    self._follower.position.advance(await trio.to_thread.run_sync(lowest))
                except Exception as exc:  # the table appears once the folding process set the views up
                    logger.debug("views positions not readable yet: %s", exc)
                if not started:
                    started = True
                    task_status.started()
                watermark = self._follower.position
                if watermark.waiting:
                    await trio.sleep(POSITIONS_POLL_S)
                    continue
                with trio.move_on_after(self._poll_interval):
                    await watermark.wait_awaited()
        finally:
            db.close()
