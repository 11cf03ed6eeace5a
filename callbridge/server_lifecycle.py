"""What ``/healthz`` says and how ``callbridge serve`` stops: the part of :class:`callbridge.server.Server`
that answers for the whole engine rather than building it.

- **Health**: :meth:`ServerLifecycle.health` (``/healthz``) and :meth:`ServerLifecycle.takes_calls`
  (whether a call would be carried; when the log cannot take one, the media path plays the apology
  instead) ask the writer whether the log can take a call, and the store whether it answers.
- **Shutdown** (SIGINT/SIGTERM) fits in :data:`SHUTDOWN_BUDGET_S`: stop taking calls, end the live ones
  (each records ``CallEnded``), let webhook requests in flight get their answer (and send no new one),
  write every accepted event by a deadline, whatever the store does; :meth:`ServerLifecycle.finish` then
  says truthfully whether events were lost and gives the exit status.
- **Draining** (SIGUSR1, for a deploy): no new calls, the live ones finish, then the engine stops.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from callbridge.engine.engine_id import EngineIdentity
    from callbridge.engine.live_calls import LiveCalls
    from callbridge.engine.store import EventStore
    from callbridge.engine.store_writer import EventWriter
    from callbridge.projections.webhook_service import WebhookService

log = logging.getLogger("callbridge.server")

SHUTDOWN_CALLS_TIMEOUT_S = 5.0
"""How long live calls get to end at shutdown."""
SHUTDOWN_BUDGET_S = 8.5
"""From the stop signal to ``Server.run`` returning, whatever the store does (CONTRACT: the process
exits within 10 s): events are written until ``SHUTDOWN_WRITE_S``, then open HTTP connections get
hypercorn's graceful time (2 s), then what is still unwritten is counted as lost."""
SHUTDOWN_WRITE_S = 6.0
"""Until when, after the stop signal, the events of the ending calls are written before the front
closes its connections."""
HEALTH_STORE_TIMEOUT_S = 2.0
"""``/healthz`` waits at most this for the store to answer before saying it does not."""


class ServerLifecycle:
    """Health, draining and shutdown, over the engine's writer, store and live calls."""

    store: EventStore
    writer: EventWriter
    live: LiveCalls
    webhooks: WebhookService
    identity: EngineIdentity
    accepting: bool
    draining: bool
    shutdown: trio.Event
    _stop_started: float | None
    _stop_started_clock: float

    async def store_answers(self) -> bool:
        """Whether the store answers a trivial query within ``HEALTH_STORE_TIMEOUT_S``."""
        with trio.move_on_after(HEALTH_STORE_TIMEOUT_S):
            try:
                return await trio.to_thread.run_sync(self.store.ping, abandon_on_cancel=True)
            except Exception:
                log.exception("store ping failed")
                return False
        log.warning("event store %s did not answer within %.0f s", self.store.description, HEALTH_STORE_TIMEOUT_S)
        return False

    def takes_calls(self) -> bool:
        """Whether a new call may start now: not shutting down, and the log can take its events."""
        return self.accepting and self.writer.accepting_calls

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """``/healthz``: whether this engine can take calls, and if not, why. Public (no token): the
        problems say what is wrong, never a path, a host or an error text (those are in the log)."""
        problems = (
            []
            if self.accepting
            else ["draining: live calls finish, no new ones" if self.draining else "the server is shutting down"]
        )
        problems += self.writer.health()
        if not await self.store_answers():
            problems.append("the event store does not answer")
        stats = self.writer.statistics()
        body: dict[str, Any] = {
            "status": "unavailable" if problems else "ok",
            "problems": problems,
            "accepting_calls": not problems,
            "live_calls": len(self.live),
            "events_pending": stats.pending,
            "events_dropped": stats.dropped,
        }
        return not problems, body

    async def drain(self) -> None:
        """For a deploy (SIGUSR1): take no new calls (``/healthz`` says so, so a load balancer moves
        new calls to other engines; a ``/call`` upgrade gets 503), let the live ones finish by
        themselves, then stop."""
        self.draining = True
        self.accepting = False
        log.info("draining: no new calls; %d live call(s) finish first, then this engine stops", len(self.live))
        await self.live.wait_empty()
        self.shutdown.set()

    async def _end_calls(self) -> None:
        """Shutdown, before the front closes its connections: stop taking calls, end the live ones,
        write their events — each step by its deadline."""
        self.accepting = False
        started = self._stop_started = trio.current_time()
        self._stop_started_clock = time.monotonic()
        self.writer.stop_by(started + SHUTDOWN_BUDGET_S)
        if len(self.live):
            log.info("ending %d live call(s)", len(self.live))
        self.live.hang_up_all("server_shutdown")

        async def calls_ended() -> None:
            with trio.move_on_after(SHUTDOWN_CALLS_TIMEOUT_S):
                await self.live.wait_empty()

        async def webhooks_answered() -> None:  # no new request; the ones in flight get their answer recorded
            with trio.move_on_after(SHUTDOWN_CALLS_TIMEOUT_S):
                await self.webhooks.drain()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(calls_ended)
            nursery.start_soon(webhooks_answered)
        await self.writer.drain(started + SHUTDOWN_WRITE_S)

    def finish(self) -> int:
        """After ``run``: release the store and the engine's name, log the truth about the events,
        and return the exit status: 0 when every accepted event is stored, 1 when some were lost."""
        pending, dropped = self.writer.pending_count, self.writer.dropped_count
        self.store.close(timeout=0.5)
        self.identity.release()
        took = (
            f" {time.monotonic() - self._stop_started_clock:.1f} s after the stop signal" if self._stop_started else ""
        )
        if not pending and not dropped:
            log.info("stopped%s; every accepted event is in %s", took, self.store.description)
            return 0
        log.error(
            "stopped%s; %d events were NOT written to %s (%d still waiting at exit, %d dropped while it "
            "was not taking writes; last error: %s)",
            took,
            pending + dropped,
            self.store.description,
            pending,
            dropped,
            self.writer.statistics().last_error,
        )
        return 1
