"""Read-your-writes: an answer from the views includes every event recorded before the question.

The HTTP API (``web/api.py``) and the MCP server inside ``callbridge serve`` (``mcp_server/data.py``)
ask the same thing before each query: flush this process's event writer, read the store's head, and
wait for the views to reach it. Every step is bounded by one deadline, so a slow or failing store
makes an answer a little stale, never late; a writer whose writes are failing or hanging is not
waited for at all (its flush could only time out), and a store whose head cannot be read is answered from the views
as they are. Reads straight from the store (a call's events, its recording) only need the flush.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import trio

from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.watermark import Watermark

log = logging.getLogger(__name__)

FRESHNESS_TIMEOUT_S = 2.0
"""Longest a question waits for the views to reach the store head before it is answered anyway."""


class Freshness(NamedTuple):
    """How up to date an answer is."""

    head: int
    """The store position the answer was meant to include."""
    views: int
    """The views' position when the answer was read."""

    @property
    def fresh(self) -> bool:
        return self.views >= self.head


class ReadYourWrites:
    """Flush our writer, wait for the views to reach the store head — bounded. One per server."""

    def __init__(
        self,
        store: EventStore,
        writer: EventWriter,
        views: Watermark,
        *,
        timeout: float = FRESHNESS_TIMEOUT_S,
        limiter: trio.CapacityLimiter | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.views_position = views
        """The views' position (``ProjectionService.watermark``)."""
        self.timeout = timeout
        self._limiter = limiter

    async def views(self) -> Freshness:
        """Wait (at most ``timeout``) until the views hold everything recorded before this call."""
        head = self.writer.head
        with trio.move_on_after(self.timeout):
            await self._flush()
            try:
                stored = await trio.to_thread.run_sync(self.store.head, limiter=self._limiter, abandon_on_cancel=True)
            except Exception as exc:
                log.warning("answering from the views as they are: cannot read the head of %s: %s", self.store, exc)
            else:
                head = max(head, stored)
                await self.views_position.wait_for(head)
        return Freshness(head, self.views_position.value)

    async def events(self) -> None:
        """Wait (at most ``timeout``) until everything recorded before this call is in the store."""
        with trio.move_on_after(self.timeout):
            await self._flush()

    async def _flush(self) -> None:
        if not self.writer.stuck:
            await self.writer.flush()
