"""Webhooks out, in ``callbridge serve``: one engine sends, every engine can take over.

- **Which engine sends**: the holder of the delivery lease, a stream of its own in the log
  (``webhooks:lease``). An engine takes it with ``WebhookLeaseTaken``, appended only if the stream did
  not change since it was read (the store's optimistic concurrency), so two engines cannot both take
  it. The holder keeps it for as long as its heartbeats (``EngineHeartbeat``, ``projections.lost_calls``)
  keep moving; another engine takes it over once the holder's heartbeat has stood still for
  ``CALLBRIDGE_ENGINE_TIMEOUT_SECONDS`` of its own watching (as ending a dead engine's calls does).
  A restarted engine keeps its own lease at once (its name is locked to one process). A holder that
  finds the lease taken from it stops sending within a heartbeat; until then both may send, which
  the at-least-once contract allows (the same ``webhook-id``). With one engine: it always sends.
- **What it sends**: the endpoints registered in the log (``WebhookRegistered``/``Removed``, stream
  ``webhooks``: every engine sees them), one :class:`projections.webhook_sender.EndpointSender` each,
  started and stopped as registrations come and go.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx2
import trio
from eventsourcing.persistence import IntegrityError

from callbridge.adapters.webhook_http import new_client
from callbridge.engine.backoff import Backoff
from callbridge.engine.engine_id import EngineIdentity
from callbridge.engine.events import (
    WEBHOOK_LEASE_STREAM,
    WEBHOOKS_STREAM,
    Event,
    WebhookLeaseTaken,
    WebhookRegistered,
    WebhookRemoved,
)
from callbridge.engine.store import EventStore
from callbridge.engine.watermark import Watermark
from callbridge.projections.appends import Waiters
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.lost_calls import EngineTimings
from callbridge.projections.ownership import engines
from callbridge.projections.source import LogSource
from callbridge.projections.views_db import open_views
from callbridge.projections.webhook_sender import Drain, Endpoint, EndpointSender, SenderContext, WebhookTimings

log = logging.getLogger(__name__)

REGISTRATION_EVENTS = (WebhookRegistered.__name__, WebhookRemoved.__name__)
"""What the registrations' follower reads (and the only batches of this process that wake it)."""
RETRY_WINDOW_ENV = "CALLBRIDGE_WEBHOOK_RETRY_WINDOW_SECONDS"
FIRST_RETRY_ENV = "CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS"


def webhook_timings(env: Mapping[str, str]) -> WebhookTimings:
    """The retry settings from the environment; ValueError naming the variable when one is wrong."""
    values: dict[str, float] = {}
    for name, key in ((RETRY_WINDOW_ENV, "retry_window_s"), (FIRST_RETRY_ENV, "first_retry_s")):
        text = env.get(name, "").strip()
        if text:
            try:
                values[key] = float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
            if not (math.isfinite(values[key]) and values[key] > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return WebhookTimings(**values)


def registered_endpoints(store: EventStore) -> dict[str, Endpoint]:
    """The endpoints registered and not removed, with their secrets (blocking)."""
    found: dict[str, Endpoint] = {}
    for recorded in store.read_call(WEBHOOKS_STREAM):
        event = recorded.event
        if isinstance(event, WebhookRegistered) and not recorded.erased:
            found[event.webhook_id] = Endpoint(
                event.webhook_id, event.url, tuple(event.events), event.secret, recorded.position
            )
        elif isinstance(event, WebhookRemoved):
            found.pop(event.webhook_id, None)
    return found


class WebhookService:
    """The lease, and a sender per endpoint while this engine holds it. Run it in the server's nursery."""

    def __init__(
        self,
        store: EventStore,
        record: Callable[[Event], None],
        views: Watermark,
        views_path: str | Path,
        identity: EngineIdentity,
        waiter: Waiters,
        *,
        timings: WebhookTimings | None = None,
        engine_timings: EngineTimings | None = None,
    ) -> None:
        self.store = store
        self.record = record
        self.views = views
        self.views_path = views_path
        self.identity = identity
        self.waiter = waiter
        self.timings = timings or WebhookTimings()
        self.engine_timings = engine_timings or EngineTimings()
        self.holding = False
        """This engine holds the lease (and sends)."""
        self.senders: dict[str, EndpointSender] = {}
        self.lease_changed = Watermark()
        """Counts lease changes seen here (taken or lost)."""
        self._scopes: dict[str, trio.CancelScope] = {}
        self._senders_changed = trio.Event()
        self._drain = Drain()
        self._seen: tuple[str, int, float] | None = None
        self._last_look = -math.inf
        self._sending: trio.CancelScope | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        client = new_client()
        try:
            async with trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        holding = await self.check_lease()
                    except Exception as exc:  # the store or the views are down: keep what we had
                        log.warning("cannot check the webhook lease now: %s", exc)
                        holding = self.holding
                    if holding and self._sending is None:
                        self._sending = trio.CancelScope()
                        nursery.start_soon(self._send, client, self._sending)
                    elif not holding and self._sending is not None:
                        log.warning(
                            "engine %s no longer sends webhooks: the lease was taken over", self.identity.engine_id
                        )
                        self._sending.cancel()
                        self._sending = None
                    if holding != self.holding:
                        self.holding = holding
                        self.lease_changed.advance(self.lease_changed.value + 1)
                    await trio.sleep(self.engine_timings.heartbeat_s)
        finally:
            with trio.CancelScope(shield=True):
                await client.aclose()

    # --- the lease ---------------------------------------------------------------------------------

    async def check_lease(self) -> bool:
        """Whether this engine sends now: it holds the lease, or has just taken it."""
        last = await trio.to_thread.run_sync(self.store.last_event, WEBHOOK_LEASE_STREAM)
        me = self.identity.engine_id
        if last is None:
            return await self._take(0, "")
        version, event = last
        holder = event.engine_id if isinstance(event, WebhookLeaseTaken) else ""
        if holder == me:
            return True
        now = trio.current_time()
        if now - self._last_look > 3 * self.engine_timings.heartbeat_s:
            self._seen = None  # we were not watching: start the clock again
        self._last_look = now
        head = await trio.to_thread.run_sync(self.store.head)
        with trio.move_on_after(self.engine_timings.heartbeat_s):
            await self.views.wait_for(head)
        if self.views.value < head:
            return False  # our views lag: judge nobody
        seen = await trio.to_thread.run_sync(self._heartbeat_of, holder)
        if self._seen is None or self._seen[:2] != (holder, seen):
            self._seen = (holder, seen, now)
            return False
        if now - self._seen[2] < self.engine_timings.lost_after_s:
            return False
        log.warning(
            "engine %s takes over sending webhooks from %s (silent for %.0f s)", me, holder, now - self._seen[2]
        )
        return await self._take(version, holder)

    async def _take(self, version: int, previous: str) -> bool:
        taken = WebhookLeaseTaken(
            call_id=WEBHOOK_LEASE_STREAM,
            at=time.time(),
            engine_id=self.identity.engine_id,
            instance=self.identity.instance,
            previous=previous,
        )
        try:
            await trio.to_thread.run_sync(self.store.append_if_unchanged, WEBHOOK_LEASE_STREAM, version, [taken])
        except IntegrityError:
            return False  # another engine took it first
        self._seen = None
        log.info("engine %s sends the webhooks", self.identity.engine_id)
        return True

    def _heartbeat_of(self, engine_id: str) -> int:
        db = open_views(self.views_path)
        try:
            seen = engines(db).get(engine_id)
        finally:
            db.close()
        return -1 if seen is None else seen.last_position

    # --- the endpoints -----------------------------------------------------------------------------

    async def _send(self, client: httpx2.AsyncClient, scope: trio.CancelScope) -> None:
        ctx = SenderContext(
            store=self.store,
            record=self.record,
            views=self.views,
            views_path=self.views_path,
            client=client,
            waiter=self.waiter,
            engine_id=self.identity.engine_id,
            timings=self.timings,
            drain=self._drain,
        )
        backoff = Backoff(1.0, 30.0)
        failures = 0
        with scope:
            while True:  # the store may be down when sending starts: try again, never crash the server
                try:
                    await self._follow_registrations(ctx)
                except Exception as exc:
                    failures += 1
                    log.warning("cannot read the webhook registrations (attempt %d): %s", failures, exc)
                    await trio.sleep(backoff.delay(failures))
                finally:
                    self.senders.clear()
                    self._scopes.clear()

    async def _follow_registrations(self, ctx: SenderContext) -> None:
        """A sender per registered endpoint, started and stopped as registrations come and go."""
        async with trio.open_nursery() as nursery:
            head = await trio.to_thread.run_sync(self.store.head)
            self._reconcile(nursery, ctx, await trio.to_thread.run_sync(registered_endpoints, self.store))
            source = LogSource(self.store, REGISTRATION_EVENTS)
            follower = Follower(
                "webhook registrations", self.waiter(names=REGISTRATION_EVENTS), backoff=Backoff(0.5, 30.0)
            )
            follower.start_at(head)

            async def step(position: int) -> Progress:
                page, now = await trio.to_thread.run_sync(source.next_page, position, 100)
                if page.events:
                    endpoints = await trio.to_thread.run_sync(registered_endpoints, self.store)
                    self._reconcile(nursery, ctx, endpoints)
                return Progress(page.reached, page.reached >= now)

            await follower.run(step)

    async def drain(self) -> None:
        """At shutdown: send no new request, and return once the ones in flight were answered (their
        attempts recorded), so the next engine does not send them again."""
        await self._drain.stop()

    async def sender(self, webhook_id: str) -> EndpointSender:
        """The sender of ``webhook_id`` on this engine, once it has one (for tests and the console)."""
        while webhook_id not in self.senders:
            await self._senders_changed.wait()
        return self.senders[webhook_id]

    def _reconcile(self, nursery: trio.Nursery, ctx: SenderContext, endpoints: dict[str, Endpoint]) -> None:
        for webhook_id in list(self.senders):
            if webhook_id not in endpoints:
                self._scopes.pop(webhook_id).cancel()
                del self.senders[webhook_id]
                log.info("webhook %s removed: nothing more is sent to it", webhook_id)
        for webhook_id, endpoint in endpoints.items():
            if webhook_id not in self.senders:
                sender = EndpointSender(endpoint, ctx)
                scope = trio.CancelScope()
                self.senders[webhook_id] = sender
                self._scopes[webhook_id] = scope
                nursery.start_soon(self._run_sender, sender, scope)
        woken, self._senders_changed = self._senders_changed, trio.Event()
        woken.set()

    @staticmethod
    async def _run_sender(sender: EndpointSender, scope: trio.CancelScope) -> None:
        """Run one endpoint's sender until it is removed or the lease is lost; a sender that fails is
        started again (from what the log says is done) after a backoff."""
        backoff = Backoff(1.0, 60.0)
        failures = 0
        with scope:
            while True:
                try:
                    await sender.run()
                except Exception:
                    failures += 1
                    log.exception("webhook %s: its sender failed (attempt %d)", sender.endpoint.webhook_id, failures)
                    await trio.sleep(backoff.delay(failures))
                    sender = EndpointSender(sender.endpoint, sender.ctx)
