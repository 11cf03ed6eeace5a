"""The projection framework: fold the event log into SQLite views, exactly once, resumably.

Why this shape:

- A projection is a fold: ``apply(db, recorded)`` for each event of the topics it declares, in log
  order. It keeps no state in memory: everything it needs to fold the next event is in its tables,
  so any process can continue where another stopped, and a rebuild gives the same rows.
- Exactly once: :meth:`ProjectionRunner.step` reads one page of the log and applies it inside one
  ``BEGIN IMMEDIATE`` transaction that also advances ``projection_positions``. A crash rolls back
  both; the next step (in this or another process) starts from the recorded position. Positions
  are read inside the transaction, so two runners on one view file never apply an event twice.
- A bad event must not stop the views forever: when a page fails, it is applied again event by
  event under savepoints; an event whose fold raises is skipped, logged, and noted in
  ``projection_errors`` (deterministically, so a rebuild skips it too). Database errors
  (``sqlite3.OperationalError``: locked, disk full) are not the event's fault and are re-raised.
- Following the log live is :class:`projections.service.ProjectionService` (trio); this module is
  blocking and runs in worker threads.
- A projection whose ``version`` changed is dropped and rebuilt from position 0 at start-up.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TextIO

from callbridge.engine.store import EventStore, RecordedEvent, StoreOpenError, open_existing_store
from callbridge.projections.catalog import default_projections
from callbridge.projections.projection import Projection
from callbridge.projections.source import LogSource
from callbridge.projections.views_db import data_dir_for_store, open_views
from callbridge.projections.views_db import views_path as default_views_path

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
"""``progress(position_reached, head)`` after each page."""

POSITIONS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS projection_positions ("
    " name TEXT PRIMARY KEY, position INTEGER NOT NULL, version INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS projection_errors ("
    " name TEXT NOT NULL, position INTEGER NOT NULL, error TEXT NOT NULL, PRIMARY KEY (name, position))",
    "CREATE TABLE IF NOT EXISTS views_source (id INTEGER PRIMARY KEY CHECK (id = 1), store TEXT NOT NULL)",
)


class Step(NamedTuple):
    position: int
    """The lowest position of all projections after this step."""
    head: int
    """The log's head when the step read it."""
    events: int
    """Events applied in this step."""

    @property
    def caught_up(self) -> bool:
        return self.position >= self.head


class ProjectionRunner:
    """Applies pages of the log to a set of projections sharing one view database. Blocking: run it
    in a thread. Not thread-safe: one thread at a time per runner (and per connection)."""

    def __init__(
        self,
        store: EventStore,
        db: sqlite3.Connection,
        projections: Sequence[Projection] | None = None,
        *,
        page_size: int = 1000,
    ) -> None:
        self.db = db
        self.projections = list(default_projections() if projections is None else projections)
        names = [p.name for p in self.projections]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names must be unique, got {names}")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.page_size = page_size
        topics: set[str] = set().union(*(p.topics for p in self.projections))
        self._store_identity = store.views_identity  # where, and under which redaction rules
        self._by_topic: dict[str, list[Projection]] = {
            name: [p for p in self.projections if name in p.topics] for name in topics
        }
        clear_only = {name for name, folding in self._by_topic.items() if all(name in p.clear_only for p in folding)}
        self._source = LogSource(store, topics, clear_only=clear_only)

    # --- set-up ----------------------------------------------------------------------------------

    def setup(self) -> None:
        """Create missing tables; drop and restart a projection whose version changed."""
        with self._transaction():
            for statement in POSITIONS_SCHEMA:
                self.db.execute(statement)
            self._forget_another_store()
            stored = dict(self.db.execute("SELECT name, version FROM projection_positions").fetchall())
            for projection in self.projections:
                version = stored.get(projection.name)
                if version is not None and version != projection.version:
                    logger.warning(
                        "projection %s changed (version %s -> %s): rebuilding it",
                        projection.name,
                        version,
                        projection.version,
                    )
                    projection.drop(self.db)
                    self.db.execute("DELETE FROM projection_errors WHERE name=?", (projection.name,))
                if version != projection.version:
                    self.db.execute(
                        "INSERT OR REPLACE INTO projection_positions(name, position, version) VALUES (?, 0, ?)",
                        (projection.name, projection.version),
                    )
                projection.create(self.db)

    def _forget_another_store(self) -> None:
        """Positions are positions in one log: views built from another store are dropped (and
        rebuilt from this one), e.g. after ``CALLBRIDGE_STORE`` pointed at a new database."""
        row = self.db.execute("SELECT store FROM views_source WHERE id = 1").fetchone()
        if row is not None and row[0] != self._store_identity:
            logger.warning("views were built from %s, not %s: rebuilding them", row[0], self._store_identity)
            for projection in self.projections:
                projection.drop(self.db)
            self.db.execute("DELETE FROM projection_positions")
            self.db.execute("DELETE FROM projection_errors")
        self.db.execute("INSERT OR REPLACE INTO views_source(id, store) VALUES (1, ?)", (self._store_identity,))

    def reset(self) -> None:
        """Drop every view and forget every position (one transaction), then recreate empty views."""
        with self._transaction():
            for statement in POSITIONS_SCHEMA:
                self.db.execute(statement)
            for projection in self.projections:
                projection.drop(self.db)
            self.db.execute("DELETE FROM projection_positions")
            self.db.execute("DELETE FROM projection_errors")
            self.db.execute("INSERT OR REPLACE INTO views_source(id, store) VALUES (1, ?)", (self._store_identity,))
            for projection in self.projections:
                self.db.execute(
                    "INSERT INTO projection_positions(name, position, version) VALUES (?, 0, ?)",
                    (projection.name, projection.version),
                )
                projection.create(self.db)

    def positions(self) -> dict[str, int]:
        rows = self.db.execute("SELECT name, position FROM projection_positions").fetchall()
        recorded = dict(rows)
        return {p.name: int(recorded.get(p.name, 0)) for p in self.projections}

    # --- folding ---------------------------------------------------------------------------------

    def step(self) -> Step:
        """Apply the next page of the log to every projection behind, in one transaction."""
        with self._transaction():
            positions = self.positions()
            start = min(positions.values(), default=0)
            head = self._source.head()
            if start >= head:
                return Step(start, head, 0)
            page = self._source.page(start, head, self.page_size)
            self.db.execute("SAVEPOINT page")
            try:
                applied = self._fold_page(page.events, positions, guarded=False)
            except sqlite3.OperationalError:
                raise
            except Exception:
                self.db.execute("ROLLBACK TO page")
                applied = self._fold_page(page.events, positions, guarded=True)
            self.db.execute("RELEASE page")
            new_positions = {name: max(position, page.reached) for name, position in positions.items()}
            self.db.executemany(
                "UPDATE projection_positions SET position=? WHERE name=?",
                [(position, name) for name, position in new_positions.items()],
            )
        return Step(min(new_positions.values(), default=page.reached), head, applied)

    def catch_up(self, progress: ProgressCallback | None = None) -> int:
        """Step until the head seen at the last step is reached; returns the position."""
        while True:
            step = self.step()
            if progress is not None:
                progress(step.position, step.head)
            if step.caught_up:
                return step.position

    def _fold_page(self, events: list[RecordedEvent], positions: dict[str, int], *, guarded: bool) -> int:
        for projection in self.projections:
            projection.page_started()
        applied = self._apply(events, positions, guarded=guarded)
        for projection in self.projections:
            projection.page_done(self.db)
        return applied

    def _apply(self, events: list[RecordedEvent], positions: dict[str, int], *, guarded: bool) -> int:
        applied = 0
        by_topic = self._by_topic
        for recorded in events:
            for projection in by_topic.get(type(recorded.event).__name__, ()):
                if recorded.position <= positions[projection.name]:
                    continue
                if guarded:
                    self._apply_guarded(projection, recorded)
                else:
                    projection.apply(self.db, recorded)
                applied += 1
        return applied

    def _apply_guarded(self, projection: Projection, recorded: RecordedEvent) -> None:
        self.db.execute("SAVEPOINT event")
        try:
            projection.apply(self.db, recorded)
        except sqlite3.OperationalError:
            raise
        except Exception as exc:
            self.db.execute("ROLLBACK TO event")
            error = f"{type(exc).__name__}: {exc}"
            logger.error(
                "projection %s skipped event %d (%s of call %s): %s",
                projection.name,
                recorded.position,
                type(recorded.event).__name__,
                recorded.event.call_id,
                error,
                exc_info=True,
            )
            self.db.execute(
                "INSERT OR REPLACE INTO projection_errors(name, position, error) VALUES (?, ?, ?)",
                (projection.name, recorded.position, error[:2000]),
            )
        self.db.execute("RELEASE event")

    def _transaction(self) -> _Transaction:
        return _Transaction(self.db)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any exception (crashes included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:
            self.db.execute("ROLLBACK")


# --- rebuilding ----------------------------------------------------------------------------------


def rebuild(
    store: EventStore,
    views_path: str | Path,
    progress: ProgressCallback | None = None,
    *,
    projections: Sequence[Projection] | None = None,
    page_size: int = 2000,
) -> int:
    """Drop every view in ``views_path`` and fold the whole log again; returns the position reached.

    Readers see the views fill up as the rebuild goes; a rebuild interrupted part-way resumes like
    any projection (from its recorded position) the next time a runner steps.
    """
    db = open_views(views_path)
    try:
        runner = ProjectionRunner(store, db, projections, page_size=page_size)
        runner.reset()
        return runner.catch_up(progress)
    finally:
        db.close()


# --- command line --------------------------------------------------------------------------------


class ProgressBar:
    """``[#####-----]  52,000/100,000 events  41,234 events/s`` on one terminal line, redrawn at most
    ten times a second (and always at the end)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.started = time.perf_counter()
        self._last_draw = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        total = max(total, done, 1)
        filled = int(self.width * done / total)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {done:,}/{total:,} events  {rate:,.0f} events/s")
        self.stream.flush()


def rebuild_cli(store_url: str, views_path: str | Path | None = None) -> int:
    """``callbridge projections rebuild``: rebuild with a progress bar on stderr; the exit status.

    ``views_path`` None means ``CALLBRIDGE_VIEWS`` or ``<data dir>/views.db``.
    """
    path = Path(views_path) if views_path is not None else default_views_path(data_dir_for_store(store_url))
    try:
        store = open_existing_store(store_url)  # a typo in --store must not create an empty store
    except (StoreOpenError, ValueError) as exc:
        print(f"callbridge projections rebuild: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar(sys.stderr)
    try:
        position = rebuild(store, path, bar)
    except sqlite3.Error as exc:
        print(f"\ncallbridge: cannot rebuild the views in {path}: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    seconds = time.perf_counter() - bar.started
    print(
        f"\nrebuilt the views in {path} from {store.description}: {position:,} events in {seconds:.2f} s "
        f"({position / max(seconds, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    return 0
