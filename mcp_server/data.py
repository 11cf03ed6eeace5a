"""Where the MCP tools get their answers: the views (conversations, metrics) and the event log.

Why two implementations of one small interface (:class:`CallData`):

- **In the server** (:class:`ServerCallData`, behind ``/mcp``) the ``ProjectionService`` already
  follows the store into ``views.db``. Before each views query we flush the event writer and wait,
  briefly, for the projections to reach the store's head — the HTTP API's read-your-writes rule, the
  same :class:`projections.freshness.ReadYourWrites` — so a call in progress is visible as soon as
  its events are recorded.
- **In ``callbridge mcp``** (:class:`FollowingCallData`, a separate process over stdio) nobody
  follows the store for us, and the server's views file must have exactly one writer. So this
  process folds the shared store into a views file of its own (``views-mcp.db``): once at start,
  every :data:`POLL_INTERVAL_S` in the background, and again right before each query, so an
  answer always includes every event stored when the question arrived.

Both read the views through a read-only connection (``mode=ro`` plus ``query_only``): nothing an
MCP client sends can change a view, a call or the log. Blocking work runs in worker threads.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.freshness import FRESHNESS_TIMEOUT_S, ReadYourWrites
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.service import ProjectionService
from callbridge.projections.views_db import BUSY_TIMEOUT_S, open_views

logger = logging.getLogger(__name__)

T = TypeVar("T")

POLL_INTERVAL_S = 0.5
"""How often ``callbridge mcp`` folds new events in while idle."""
MCP_VIEWS_FILE = "views-mcp.db"
"""The views file of ``callbridge mcp`` (in the data folder): never the server's ``views.db``."""

ViewsQuery = Callable[[sqlite3.Connection], T]


class CallData(Protocol):
    """What the MCP tools read. Both methods answer with everything stored when they were called."""

    async def views(self, query: ViewsQuery[T]) -> T:
        """Run ``query`` (blocking, in a thread) on a read-only connection to up-to-date views."""
        ...

    async def from_store(self, read: Callable[[EventStore], T]) -> T:
        """Run ``read`` (blocking, in a thread) on the event store, once everything recorded when
        this was called is stored (a page of a call's events, a whole call for its timeline)."""
        ...


def open_views_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to a views file (which must exist): ``mode=ro`` and ``query_only``."""
    uri = Path(path).expanduser().resolve().as_uri() + "?mode=ro"
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        db.execute("PRAGMA query_only=ON")
    except sqlite3.Error:
        db.close()
        raise
    return db


def run_readonly(path: str | Path, query: ViewsQuery[T]) -> T:
    """Open the views read-only, run ``query``, close (blocking)."""
    db = open_views_readonly(path)
    try:
        return query(db)
    finally:
        db.close()


class ServerCallData:
    """The views and log of a running server (its store, writer and projection service)."""

    def __init__(
        self,
        store: EventStore,
        writer: EventWriter,
        projections: ProjectionService,
        views_path: str | Path,
        *,
        limiter: trio.CapacityLimiter | None = None,
        freshness_timeout: float = FRESHNESS_TIMEOUT_S,
        fresh: ReadYourWrites | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.projections = projections
        self.views_path = views_path
        self._limiter = limiter
        self.fresh = fresh or ReadYourWrites(
            store, writer, projections.watermark, timeout=freshness_timeout, limiter=limiter
        )
        """Read-your-writes (pass the server's to share it with the HTTP API)."""

    async def _in_thread(self, fn: Callable[..., T], *args: object) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def views(self, query: ViewsQuery[T]) -> T:
        await self.fresh.views()
        return await self._in_thread(run_readonly, self.views_path, query)

    async def from_store(self, read: Callable[[EventStore], T]) -> T:
        await self.fresh.events()
        return await self._in_thread(read, self.store)


class FollowingCallData:
    """Folds a shared store into views of its own before answering (``callbridge mcp``).

    Start :meth:`run` in a nursery (``await nursery.start(data.run)``): it sets the views up (and
    fails there, before anything is served, when it cannot), then catches up with the log and
    keeps following it. Queries wait for that first catch-up.
    """

    def __init__(self, store: EventStore, views_path: str | Path, *, poll_interval: float = POLL_INTERVAL_S) -> None:
        self.store = store
        self.views_path = Path(views_path)
        self._poll_interval = poll_interval
        self._runner: ProjectionRunner | None = None
        self._lock = trio.Lock()
        self._ready = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Set the views up, report started, catch up, then follow the log until cancelled."""
        db = await trio.to_thread.run_sync(open_views, self.views_path)
        try:
            runner = ProjectionRunner(self.store, db)
            await trio.to_thread.run_sync(runner.setup)
            self._runner = runner
            task_status.started()
            while True:
                try:
                    await self.catch_up()
                except Exception as exc:  # a store hiccup must not end the follower
                    logger.warning("could not fold new events into %s: %s", self.views_path, exc)
                self._ready.set()
                await trio.sleep(self._poll_interval)
        finally:
            # The runner's connection is used in worker threads under the lock: close it under the lock too.
            with trio.CancelScope(shield=True):
                async with self._lock:
                    self._runner = None
                    db.close()

    async def catch_up(self) -> int:
        """Fold every event stored so far into the views; returns the position reached."""
        async with self._lock:
            runner = self._runner
            if runner is None:
                raise RuntimeError("FollowingCallData.run is not running")
            return await trio.to_thread.run_sync(runner.catch_up)

    async def views(self, query: ViewsQuery[T]) -> T:
        await self._ready.wait()
        try:
            await self.catch_up()
        except Exception as exc:
            # A stale answer beats none: say so in the log, answer from the views as they are.
            logger.warning("answering from views not caught up with the store: %s", exc)
        return await trio.to_thread.run_sync(run_readonly, self.views_path, query)

    async def from_store(self, read: Callable[[EventStore], T]) -> T:
        return await trio.to_thread.run_sync(read, self.store)
