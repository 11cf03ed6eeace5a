"""Sending one endpoint its messages: follow the log, queue per call, retry, record every attempt.

Why this shape:

- **The log is followed like a projection**, one :class:`projections.follower.Follower` per endpoint
  (each endpoint has its own position: a dead endpoint holds back nobody else), reading only the
  event classes its kinds come from (``projections.webhook_messages``).
- **In order per call**: each call has a lane; a lane sends its next message only once the previous
  one is delivered or dead-lettered. Lanes of different calls run side by side (at most
  :data:`MAX_IN_FLIGHT` requests at a time per endpoint).
- **At least once, resumable**: every attempt is recorded in the log (``WebhookAttempted`` in the
  stream ``webhook:<id>``) with the endpoint's **low-water mark** — every delivery queued at or
  before that position is done. The position is therefore committed only after the endpoint
  answered 2xx (or the message was dead-lettered). A sender that starts (after a crash, on another
  engine) reads the views (``projections.webhooks_view.resume``), follows the log again from the
  low-water mark and skips what is done; a message whose 2xx was not yet recorded when the process
  died is sent again, with the same ``webhook-id``, so the endpoint can tell.
- **Retries** with ``engine.backoff.Backoff`` (5 s doubling up to an hour) until the retry window
  (24 h) from the first attempt has passed, then ``WebhookDeadLettered``; the lane moves on.
- **Bounded**: at most :data:`MAX_PENDING` messages queued per endpoint; the follower waits for room.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import httpx2
import trio

from callbridge.adapters.standard_webhooks import signed_headers
from callbridge.adapters.webhook_http import TIMEOUT_S, Answer, post_message
from callbridge.engine.backoff import Backoff
from callbridge.engine.events import (
    WEBHOOK_STREAM_PREFIX,
    Event,
    WebhookAttempted,
    WebhookDeadLettered,
    WebhookRedeliveryRequested,
)
from callbridge.engine.store import EventStore
from callbridge.engine.watermark import Watermark
from callbridge.projections.appends import WaitForAppends
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.source import LogSource
from callbridge.projections.views_db import open_views
from callbridge.projections.webhook_messages import NEEDS_VIEWS, Delivery, delivery, kinds_of, message_body, topics_for
from callbridge.projections.webhooks_view import Resume, redelivery, resume

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_PENDING = 1000
MAX_IN_FLIGHT = 8
PAGE = 200


@dataclass(frozen=True)
class WebhookTimings:
    """How long and how often a message is retried."""

    retry_window_s: float = 24 * 3600.0
    """From the first attempt to dead-lettering (``CALLBRIDGE_WEBHOOK_RETRY_WINDOW_SECONDS``)."""
    first_retry_s: float = 5.0
    """The first wait; each later one doubles (``CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS``)."""
    max_retry_s: float = 3600.0
    request_timeout_s: float = TIMEOUT_S

    @property
    def backoff(self) -> Backoff:
        return Backoff(self.first_retry_s, max(self.first_retry_s, min(self.max_retry_s, self.retry_window_s)))


@dataclass(frozen=True)
class Endpoint:
    webhook_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    registered_position: int


class Drain:
    """Requests in flight, so a stopping server lets them finish (and records their answers) instead
    of cutting them off: a request cut off after the endpoint took it is sent again by the next engine."""

    def __init__(self) -> None:
        self.stopping = False
        self._count = 0
        self._idle = trio.Event()
        self._idle.set()

    def enter(self) -> None:
        self._count += 1
        if self._count == 1:
            self._idle = trio.Event()

    def exit(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def stop(self) -> None:
        """Start no new request; return once none is in flight."""
        self.stopping = True
        await self._idle.wait()


@dataclass
class SenderContext:
    """What every endpoint's sender shares (one per server)."""

    store: EventStore
    record: Callable[[Event], None]
    """Records an event (the server's writer)."""
    views: Watermark
    views_path: str | Path
    client: httpx2.AsyncClient
    waiter: Callable[[], WaitForAppends]
    engine_id: str
    timings: WebhookTimings = field(default_factory=WebhookTimings)
    clock: Callable[[], float] = time.time
    drain: Drain = field(default_factory=Drain)


class EndpointSender:
    """Delivers one endpoint's messages while it runs (cancel it to stop: nothing is lost)."""

    def __init__(self, endpoint: Endpoint, ctx: SenderContext) -> None:
        self.endpoint = endpoint
        self.ctx = ctx
        self.kinds = frozenset(endpoint.events)
        self._source = LogSource(ctx.store, topics_for(endpoint.events) | {WebhookRedeliveryRequested.__name__})
        self._follower = Follower(f"webhooks to {endpoint.webhook_id}", ctx.waiter(), backoff=Backoff(0.5, 30.0))
        self._backoff = ctx.timings.backoff
        self._lanes: dict[str, deque[Delivery]] = {}
        self._outstanding: Counter[int] = Counter()
        self._pending = 0
        self._room = trio.Event()
        self._read_to = 0
        self._in_flight = trio.CapacityLimiter(MAX_IN_FLIGHT)
        self._resume = Resume(0, frozenset(), {})
        self._nursery: trio.Nursery | None = None
        self.settled = Watermark()
        """Deliveries done (delivered or dead-lettered) by this sender."""

    @property
    def stream(self) -> str:
        return f"{WEBHOOK_STREAM_PREFIX}{self.endpoint.webhook_id}"

    def low_water(self) -> int:
        """Every delivery queued at or before this position is done."""
        return min(self._outstanding) - 1 if self._outstanding else self._read_to

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        head = await trio.to_thread.run_sync(self.ctx.store.head)
        await self.ctx.views.wait_for(head)  # every attempt recorded so far is in the views
        found = await self._in_views(lambda db: resume(db, self.endpoint.webhook_id))
        self._resume = found or Resume(self.endpoint.registered_position, frozenset(), {})
        start = max(self._resume.low_water, self.endpoint.registered_position)
        self._read_to = start
        self._follower.start_at(start)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(partial(self._follower.run, self._step))
            task_status.started()

    # --- following the log -------------------------------------------------------------------------

    async def _step(self, position: int) -> Progress:
        while self._pending >= MAX_PENDING:
            await self._room.wait()
        page, head = await trio.to_thread.run_sync(self._source.next_page, position, PAGE)
        for recorded in page.events:
            event = recorded.event
            if isinstance(event, WebhookRedeliveryRequested):
                if event.webhook_id == self.endpoint.webhook_id:
                    await self._redeliver(recorded.position)
                continue
            for kind in kinds_of(event):
                if kind in self.kinds:
                    self._queue(delivery(kind, event.call_id, recorded.position))
        self._read_to = max(self._read_to, page.reached)
        return Progress(page.reached, page.reached >= head)

    async def _redeliver(self, trigger: int) -> None:
        await self.ctx.views.wait_for(trigger)
        found = await self._in_views(lambda db: redelivery(db, self.endpoint.webhook_id, trigger))
        if found is not None:
            kind, subject, source = found
            self._queue(delivery(kind, subject, source, trigger))

    def _queue(self, item: Delivery) -> None:
        if item.delivery_id in self._resume.done:
            return
        assert self._nursery is not None
        self._outstanding[item.trigger] += 1
        self._pending += 1
        lane = self._lanes.get(item.subject)
        if lane is None:
            lane = self._lanes[item.subject] = deque()
            self._nursery.start_soon(self._run_lane, item.subject, lane)
        lane.append(item)

    async def _run_lane(self, subject: str, lane: deque[Delivery]) -> None:
        while lane:
            await self._deliver(lane[0])
            lane.popleft()
        del self._lanes[subject]

    def _settle(self, item: Delivery) -> None:
        self._outstanding[item.trigger] -= 1
        if self._outstanding[item.trigger] <= 0:
            del self._outstanding[item.trigger]
        self._pending -= 1
        self.settled.advance(self.settled.value + 1)
        woken, self._room = self._room, trio.Event()
        woken.set()

    # --- sending -----------------------------------------------------------------------------------

    async def _deliver(self, item: Delivery) -> None:
        attempts, first = self._resume.tried.get(item.delivery_id, (0, None))
        ctx, endpoint = self.ctx, self.endpoint
        unreadable = 0
        while True:
            try:
                body = await self._body(item)
            except Exception as exc:  # the store or the views are down: not the endpoint's fault
                unreadable += 1
                log.warning(
                    "webhook %s: cannot build %s now (%s); trying again", endpoint.webhook_id, item.delivery_id, exc
                )
                await trio.sleep(self._backoff.delay(unreadable))
                continue
            if body is None:  # the event cannot be read any more: nothing to send
                self._settle(item)
                return
            async with self._in_flight:
                if ctx.drain.stopping:
                    await trio.sleep_forever()  # the server stops: the next engine sends it
                ctx.drain.enter()
                try:
                    attempts += 1
                    now = ctx.clock()
                    first = now if first is None else first
                    headers = signed_headers(endpoint.secret, item.message_id, int(now), body)
                    answer = await post_message(
                        ctx.client, endpoint.url, body, headers, timeout_s=ctx.timings.request_timeout_s
                    )
                    self._attempted(item, attempts, now, answer)
                finally:
                    ctx.drain.exit()
            if answer.ok:
                return
            assert first is not None
            left = first + ctx.timings.retry_window_s - ctx.clock()
            if left <= 0:
                self._dead_lettered(item, attempts, answer.error)
                return
            await trio.sleep(min(self._backoff.delay(attempts), left))

    def _attempted(self, item: Delivery, attempts: int, at: float, answer: Answer) -> None:
        ctx, endpoint = self.ctx, self.endpoint
        if answer.ok:
            self._settle(item)
        ctx.record(
            WebhookAttempted(
                call_id=self.stream,
                at=at,
                webhook_id=endpoint.webhook_id,
                delivery_id=item.delivery_id,
                message_id=item.message_id,
                kind=item.kind,
                subject=item.subject,
                source=item.source,
                trigger=item.trigger,
                attempt=attempts,
                ok=answer.ok,
                status=answer.status,
                latency_ms=answer.latency_ms,
                error=answer.error,
                low_water=self.low_water(),
                engine_id=ctx.engine_id,
            )
        )

    def _dead_lettered(self, item: Delivery, attempts: int, error: str) -> None:
        ctx, endpoint = self.ctx, self.endpoint
        self._settle(item)
        ctx.record(
            WebhookDeadLettered(
                call_id=self.stream,
                at=ctx.clock(),
                webhook_id=endpoint.webhook_id,
                delivery_id=item.delivery_id,
                message_id=item.message_id,
                kind=item.kind,
                subject=item.subject,
                source=item.source,
                trigger=item.trigger,
                attempts=attempts,
                error=error,
                low_water=self.low_water(),
            )
        )
        log.warning(
            "webhook %s: %s dead-lettered after %d attempts (%s); redeliver it from the console or the API",
            endpoint.webhook_id,
            item.delivery_id,
            attempts,
            error,
        )

    async def _body(self, item: Delivery) -> bytes | None:
        """The message as it reads now (erased or masked as the log and views say), or None."""
        if item.kind in NEEDS_VIEWS:
            await self.ctx.views.wait_for(item.source)

        def build() -> bytes | None:
            page = self.ctx.store.read_all(after=item.source - 1, limit=1)
            if not page or page[0].position != item.source:
                return None
            event = page[0].event
            if item.kind not in NEEDS_VIEWS:
                return message_body(item.kind, event, None)
            db = open_views(self.ctx.views_path)
            try:
                return message_body(item.kind, event, db)
            finally:
                db.close()

        return await trio.to_thread.run_sync(build)

    async def _in_views(self, query: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            db = open_views(self.ctx.views_path)
            try:
                return query(db)
            finally:
                db.close()

        return await trio.to_thread.run_sync(run)
