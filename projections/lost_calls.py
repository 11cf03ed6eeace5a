"""Engines' heartbeats, and ending the calls of an engine that died (``CallEnded(reason="engine_lost")``).

A call's ``CallEnded`` is recorded by the engine carrying it. When that process dies (``kill -9``, a
crash, the machine gone) nobody would, and the call stayed ``in_progress`` forever in the API, the
console and Prometheus, even after a rebuild. So every engine (``callbridge serve``) runs
:class:`LostCalls`:

- it writes an ``EngineHeartbeat`` to its own stream every ``heartbeat_s`` (one at a time: a
  heartbeat is recorded only once the previous one is written, so a dead store never fills up with
  them; the first one, written at start, proved the store takes writes);
- at start it ends the calls its own engine id was carrying before (its id is locked to one process,
  ``engine.engine_id``, so they cannot be live anywhere) — at once;
- every ``heartbeat_s`` it looks at the ownership view (``projections.ownership``) and ends the open
  calls of any *other* engine whose heartbeat has not moved for ``lost_after_s`` of its own watching,
  and whose calls have been silent as long (a live call writes audio every half second). Time is
  measured on this engine's clock by what it observed, so clock skew between machines cannot make a
  live engine look dead; an engine whose views lag does not judge anyone (it restarts its clocks);
- calls recorded before engines had names (no ``engine_id``) are ended once older than
  ``unowned_after_s`` (4 hours: Twilio's longest call).

A call is ended with the store's optimistic concurrency: ``CallEnded`` is appended only if nothing was
stored for the call since its last event was read, so two engines noticing the same death end it
once, and an engine that turns out to be alive (its call wrote meanwhile) keeps its call. The
``CallEnded`` is dated at the call's last event (when it was last heard of), so durations are right.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import trio
from eventsourcing.persistence import IntegrityError

from callbridge.engine.engine_id import EngineIdentity
from callbridge.engine.events import ENGINE_STREAM_PREFIX, CallEnded, EngineHeartbeat
from callbridge.engine.store import EventStore, StoreNotWritableError
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.watermark import Watermark
from callbridge.projections.ownership import EngineSeen, OpenCall, engines, open_calls
from callbridge.projections.views_db import iso, open_views

log = logging.getLogger(__name__)

HEARTBEAT_ENV = "CALLBRIDGE_HEARTBEAT_SECONDS"
TIMEOUT_ENV = "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS"
UNOWNED_AFTER_S = 4 * 3600.0
"""Twilio ends any call after 4 hours: an unowned call older than that is certainly over."""


@dataclass(frozen=True)
class EngineTimings:
    heartbeat_s: float = 10.0
    """How often this engine writes a heartbeat (and looks for lost engines)."""
    lost_after_s: float = 60.0
    """How long another engine's heartbeat may stay still before its calls are ended."""
    unowned_after_s: float = UNOWNED_AFTER_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.heartbeat_s) and self.heartbeat_s > 0):
            raise ValueError(f"{HEARTBEAT_ENV} must be a positive number of seconds, got {self.heartbeat_s!r}")
        if not (math.isfinite(self.lost_after_s) and self.lost_after_s >= 3 * self.heartbeat_s):
            raise ValueError(
                f"{TIMEOUT_ENV} ({self.lost_after_s:g}) must be at least 3 times {HEARTBEAT_ENV} "
                f"({self.heartbeat_s:g}), so that one late heartbeat does not end a live engine's calls"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EngineTimings:
        """``CALLBRIDGE_HEARTBEAT_SECONDS`` and ``CALLBRIDGE_ENGINE_TIMEOUT_SECONDS``; ValueError naming
        the variable when one is not a number."""
        values: dict[str, float] = {}
        for name, key in ((HEARTBEAT_ENV, "heartbeat_s"), (TIMEOUT_ENV, "lost_after_s")):
            text = env.get(name, "").strip()
            if text:
                try:
                    values[key] = float(text)
                except ValueError:
                    raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
        return cls(**values)


def engine_stream(engine_id: str) -> str:
    return f"{ENGINE_STREAM_PREFIX}{engine_id}"


def heartbeat(identity: EngineIdentity, timings: EngineTimings, at: float) -> EngineHeartbeat:
    return EngineHeartbeat(
        call_id=engine_stream(identity.engine_id),
        at=at,
        engine_id=identity.engine_id,
        instance=identity.instance,
        interval_s=timings.heartbeat_s,
        host=identity.host,
        pid=identity.pid,
    )


def write_first_heartbeat(store: EventStore, identity: EngineIdentity, timings: EngineTimings) -> int:
    """Announce the engine with a real write, before it serves anything: ``serve`` must not start on a
    store that does not take writes (a read-only file opens, and answers reads, just fine). Returns
    the position written; raises :class:`StoreNotWritableError` saying what to check."""
    try:
        return store.append([heartbeat(identity, timings, time.time())])
    except Exception as exc:
        if store.description.startswith("postgresql://"):
            check = "that the user may INSERT there, that the server is not read-only (a standby), and its disk space"
        else:
            check = "the path, that this user can write the file and its folder, and that the disk has room"
        raise StoreNotWritableError(
            f"the event store {store.description} does not take writes ({type(exc).__name__}: {exc}); check {check}"
        ) from exc


class LostCalls:
    """This engine's heartbeats, and the calls of dead engines ended. Run it in the server's nursery."""

    def __init__(
        self,
        identity: EngineIdentity,
        store: EventStore,
        writer: EventWriter,
        views_path: str | Path,
        views: Watermark,
        *,
        started_at_position: int,
        live: Callable[[str], bool],
        timings: EngineTimings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identity = identity
        self.store = store
        self.writer = writer
        self.views_path = views_path
        self.views = views
        self.started_at_position = started_at_position
        """Calls of this engine id started before here belong to a previous process."""
        self.stream = engine_stream(identity.engine_id)
        """This engine's own stream (its heartbeats)."""
        self.live = live
        self.timings = timings or EngineTimings()
        self.clock = clock
        self.ended: list[str] = []
        """Calls this engine ended as lost (newest last)."""
        self._seen: dict[str, tuple[int, float]] = {}
        """engine id -> (heartbeat position, trio time it was first seen there)."""
        self._last_look = -math.inf
        self._heartbeat_ticket = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Heartbeats, and a look for lost calls, every ``heartbeat_s`` until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeats)
            task_status.started()
            while True:
                with trio.move_on_after(self.timings.heartbeat_s):  # views far behind: look next time
                    try:
                        await self.sweep()
                    except Exception as exc:  # a store or views hiccup: look again next time
                        log.warning("cannot look for lost calls now: %s", exc)
                await trio.sleep(self.timings.heartbeat_s)

    async def _heartbeats(self) -> None:
        while True:
            await trio.sleep(self.timings.heartbeat_s)
            self._beat()

    def _beat(self) -> None:
        """Record a heartbeat, unless the previous one is not written yet (the store is down)."""
        if self.writer.written_count < self._heartbeat_ticket:
            return
        self.writer.record(heartbeat(self.identity, self.timings, self.clock()))
        self._heartbeat_ticket = self.writer.recorded_count

    async def sweep(self) -> list[str]:
        """End the calls that are lost now; returns their ids."""
        head = await trio.to_thread.run_sync(self.store.head, abandon_on_cancel=True)
        await self.views.wait_for(head)
        calls, known = await trio.to_thread.run_sync(self._read_views)
        now = trio.current_time()
        if now - self._last_look > 3 * self.timings.heartbeat_s:
            self._seen.clear()  # we were not watching (views lagging, store down): start the clocks again
        self._last_look = now
        lost = [c for c in calls if self._is_lost(c, known, now)]
        ended = []
        for call in lost:
            if await trio.to_thread.run_sync(self._end, call, known.get(call.engine_id)):
                ended.append(call.call_id)
        self.ended.extend(ended)
        return ended

    def _read_views(self) -> tuple[list[OpenCall], dict[str, EngineSeen]]:
        db = open_views(self.views_path)
        try:
            return open_calls(db), engines(db)
        finally:
            db.close()

    def _is_lost(self, call: OpenCall, known: dict[str, EngineSeen], now: float) -> bool:
        if self.live(call.call_id):
            return False
        if call.engine_id == self.identity.engine_id:
            return call.started_position < self.started_at_position
        if not call.engine_id:
            return self.clock() - call.started_at > self.timings.unowned_after_s
        seen = known.get(call.engine_id)
        position = seen.last_position if seen is not None else -1
        before = self._seen.get(call.engine_id)
        if before is None or before[0] != position:
            self._seen[call.engine_id] = (position, now)
            return False
        return now - before[1] >= self.timings.lost_after_s

    def _end(self, call: OpenCall, owner: EngineSeen | None) -> bool:
        """Append ``CallEnded(engine_lost)`` unless the call was written meanwhile (blocking)."""
        last = self.store.last_event(call.call_id)
        if last is None or isinstance(last[1], CallEnded):
            return False
        version, event = last
        mine = call.engine_id == self.identity.engine_id
        if not mine and self.clock() - event.at < self.timings.lost_after_s:
            return False  # the call still speaks: its engine is alive after all
        if mine:
            who = f"this engine ({call.engine_id}) stopped without ending it; ended at its restart"
        elif call.engine_id:
            where = f" on {owner.host} (pid {owner.pid})" if owner is not None else ""
            who = f"engine {call.engine_id}{where} went silent; ended by engine {self.identity.engine_id}"
        else:
            who = f"no engine recorded it and it started over {self.timings.unowned_after_s / 3600:g} h ago"
        detail = f"{who} at {iso(self.clock())}"
        ended = CallEnded(call_id=call.call_id, at=event.at, reason="engine_lost", detail=detail)
        try:
            self.store.append_if_unchanged(call.call_id, version, [ended])
        except IntegrityError:
            return False  # someone wrote to the call meanwhile: it is not ours to end
        log.warning("call %s ended as lost: %s", call.call_id, detail)
        return True
