"""Erasing one call: its audio, transcripts, tool payloads and caller details unreadable everywhere.

The log is never rewritten. A call's personal fields were stored sealed with the call's own key
(``engine.crypto``), so erasing is:

1. **delete the key** (a tombstone in the key store, every cached copy evicted): from now on the
   call's events read with placeholders, in every process and every engine sharing the store;
2. scrub, in place, the call's events recorded *before* encryption existed (they have no key: the
   one exception to append-only, ``EventStore.scrub_legacy``);
3. **record ``CallErased``**: every view folds it (``projections.conversations``, ``.metrics``) by
   replacing what it held of the call with ``[erased]`` and rewriting the search index, so the
   API, MCP and the console say "erased" — and a rebuild folds the placeholders into the same rows;
4. truncate the views file's write-ahead log (:func:`checkpoint_views`), so no page written before the
   erasure survives in it. ``secure_delete`` (``projections.views_db``) zeroes replaced text in the file.

Keys first, then the fact: a crash in between leaves the call unreadable but not yet marked; running
the erasure again completes it (it is idempotent). A call that has not ended is refused unless forced:
its engine would go on recording it (with no key: its new events are stored without their values).

Every engine follows ``CallErased`` (:class:`ErasureWatcher`): it evicts the key from its caches and
truncates its own views' write-ahead log once its views have folded the erasure.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.crypto import is_sealed
from callbridge.engine.events import CallEnded, CallErased
from callbridge.engine.privacy import call_key_id
from callbridge.engine.store import EventStore, StoreOpenError, call_originator_id, open_existing_store
from callbridge.engine.watermark import Watermark
from callbridge.projections.appends import Waiters
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.source import LogSource
from callbridge.projections.test_runs import forget_call
from callbridge.projections.views_db import data_dir_for_store, iso, open_views
from callbridge.projections.views_db import views_path as default_views_path

log = logging.getLogger(__name__)

ERASURE_EVENTS = (CallErased.__name__,)
"""What the watcher reads (and the only batches of this process that wake it: ``AppendSignal.waiter``)."""
CHECKPOINT_TRIES = 20
"""A reader in the middle of a query keeps the write-ahead log busy: try again a little later."""
MCP_VIEWS_FILE = "views-mcp.db"


class CallNotFound(LookupError):
    """No event of that call is stored."""


class CallNotEnded(RuntimeError):
    """The call has no ``CallEnded``: it may still be live."""


@dataclass(frozen=True)
class Erasure:
    call_id: str
    erased_at: float
    position: int
    """Where ``CallErased`` is in the log (0 when it was there already)."""
    already: bool
    """The call had been erased before (nothing new was done but what was missing)."""
    legacy_events: int
    """Events recorded before encryption existed, scrubbed in place now."""

    def as_json(self) -> dict[str, object]:
        return {
            "call_id": self.call_id,
            "erased": True,
            "erased_at": iso(self.erased_at),
            "already_erased": self.already,
            "legacy_events_scrubbed": self.legacy_events,
        }


def erase_call(store: EventStore, call_id: str, *, by: str, force: bool = False) -> Erasure:
    """Erase one call in the store (blocking). Raises :class:`CallNotFound`, or :class:`CallNotEnded`
    unless ``force``. Idempotent."""
    with store.connections() as opening:
        topics = opening.rows.call_topics(call_originator_id(call_id))
    if not topics:
        raise CallNotFound(call_id)
    names = {topic.partition("@")[0] for topic in topics}
    if CallEnded.__name__ not in names and not force:
        raise CallNotEnded(call_id)
    now = time.time()
    before = store.keys.erase(call_key_id(call_id), now)
    legacy = scrub_legacy(store, call_id)
    if CallErased.__name__ in names:
        erased_at = before.erased_at if before.erased_at is not None else now
        return Erasure(call_id, erased_at, 0, True, legacy)
    position = store.append([CallErased(call_id=call_id, at=now, by=by, legacy_events=legacy)])
    log.info("call %s erased (%s): its key is deleted, %d legacy events scrubbed", call_id, by, legacy)
    return Erasure(call_id, now, position, before.erased, legacy)


def scrub_legacy(store: EventStore, call_id: str) -> int:
    """After the call's key was erased: overwrite the call's events recorded in clear (before encryption
    existed) with their erased form — what sealing them now gives, the key being gone; returns how
    many. Sealed events are left alone: deleting the key erased them."""
    with store.connections() as opening:
        scrubbed: list[tuple[int, bytes]] = []
        for row in opening.rows.call_rows(call_originator_id(call_id)):
            if not is_sealed(row.state):
                state = store.sealer.seal(row.topic, row.state)
                if state != row.state:
                    scrubbed.append((row.position, state))
        if scrubbed:
            opening.rows.replace_states(scrubbed)
    return len(scrubbed)


def checkpoint_views(path: str | Path) -> bool:
    """Copy the views file's write-ahead log into it and truncate the log to nothing, so pages written
    before an erasure survive nowhere. Returns False when readers kept it busy every time."""
    db = open_views(path)
    try:
        for _ in range(CHECKPOINT_TRIES):
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return True
            time.sleep(0.05)
        log.warning("the views' write-ahead log in %s is busy: it will be truncated at a later erasure", path)
        return False
    finally:
        db.close()


class ErasureWatcher:
    """One engine's part in every erasure, wherever it was made: evict the key from this process's
    caches, and truncate this engine's views log once the views folded ``CallErased``."""

    def __init__(
        self,
        store: EventStore,
        views_path: str | Path,
        views: Watermark,
        waiter: Waiters,
        data_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.views_path = views_path
        self.data_dir = data_dir
        """Where regression tests and their runs are kept (``projections/test_runs.py``): scrubbed too."""
        self.views = views
        self._source = LogSource(store, ERASURE_EVENTS)
        self._follower = Follower("erasures", waiter(names=ERASURE_EVENTS), backoff=Backoff(0.5, 30.0))
        self.seen = Watermark()
        """Erasures handled (their count)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # views built while this engine was stopped may have folded erasures: truncate at start
        try:
            await trio.to_thread.run_sync(checkpoint_views, self.views_path)
        except Exception as exc:  # the views are busy or broken: the next erasure truncates
            log.warning("cannot truncate the views' write-ahead log in %s now: %s", self.views_path, exc)

        async def head() -> int:
            return await trio.to_thread.run_sync(self.store.head)

        await self._follower.run(self._step, start=head, task_status=task_status)

    async def _step(self, position: int) -> Progress:
        page, head = await trio.to_thread.run_sync(self._source.next_page, position, 100)
        for recorded in page.events:
            call_id = recorded.event.call_id
            self.store.keys.evict(call_key_id(call_id))
            await self.views.wait_for(recorded.position)
            await trio.to_thread.run_sync(checkpoint_views, self.views_path)
            if self.data_dir is not None:
                await trio.to_thread.run_sync(forget_call, self.data_dir, call_id)
            self.seen.advance(self.seen.value + 1)
            log.info("call %s was erased: no copy of its key here, its views replaced", call_id)
        return Progress(page.reached, page.reached >= head)


# --- the command line ------------------------------------------------------------------------------


def erase_cli(store_url: str, call_id: str, *, views: str | None, force: bool) -> int:
    """``callbridge erase CALL_ID``: erase the call, fold the erasure into this data folder's views
    files (the server's, MCP's) and truncate their logs; the exit status."""
    try:
        store = open_existing_store(store_url, writable_keys=True)
    except (StoreOpenError, ValueError) as exc:
        print(f"callbridge erase: {exc}", file=sys.stderr)
        return 2
    try:
        try:
            erasure = erase_call(store, call_id, by="cli", force=force)
        except CallNotFound:
            print(
                f"callbridge erase: no events for call {call_id} in {store.description}; "
                "list calls with `GET /api/conversations` (or the web console)",
                file=sys.stderr,
            )
            return 1
        except CallNotEnded:
            print(
                f"callbridge erase: call {call_id} has not ended (no CallEnded in the log): hang it up first, "
                "or pass --force if the engine carrying it is gone",
                file=sys.stderr,
            )
            return 1
        folded = _fold_into_views(store, store_url, views)
        forget_call(data_dir_for_store(store_url), call_id)
    finally:
        store.close()
    what = "was already erased" if erasure.already else "is erased"
    legacy = erasure.legacy_events
    print(
        f"call {call_id} {what} ({iso(erasure.erased_at)}): its key is deleted, so its audio, transcripts, "
        f"tool payloads and numbers read as [erased] everywhere"
        + (f"; {legacy} events recorded before encryption were scrubbed" if legacy else "")
    )
    for line in folded:
        print(line)
    return 0


def _fold_into_views(store: EventStore, store_url: str, views: str | None) -> list[str]:
    """Bring each views file of the data folder up to the erasure (unless it was built from another
    store or under other redaction rules: its own server rebuilds it)."""
    data_dir = data_dir_for_store(store_url)
    paths = [Path(views)] if views else [default_views_path(data_dir), data_dir / MCP_VIEWS_FILE]
    lines = []
    for path in paths:
        if not path.is_file():
            continue
        db = open_views(path)
        try:
            built_from = _built_from(db)
            if built_from is not None and built_from != store.views_identity:
                lines.append(f"views {path}: built from {built_from}; its server folds the erasure when it runs")
                continue
            runner = ProjectionRunner(store, db)
            runner.setup()
            runner.catch_up()
        except sqlite3.Error as exc:
            lines.append(f"views {path}: not updated now ({exc}); the server folds the erasure when it runs")
            continue
        finally:
            db.close()
        checkpoint_views(path)
        lines.append(f"views {path}: updated")
    return lines


def _built_from(db: sqlite3.Connection) -> str | None:
    try:
        row = db.execute("SELECT store FROM views_source WHERE id = 1").fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row[0])
