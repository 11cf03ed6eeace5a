"""What a view is: its tables, the event classes it folds, and the fold (its own module, so the views
depend on it and the runner on them, without a circle)."""

from __future__ import annotations

import abc
import sqlite3
from typing import ClassVar

from callbridge.engine.store import RecordedEvent


class Projection(abc.ABC):
    """One view: its tables, the event classes it folds, and the fold."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    """Bump when the tables or the fold change: the view is then rebuilt at start-up."""
    topics: ClassVar[frozenset[str]]
    """Names of the event classes (``engine.events``) this projection folds."""
    schema: ClassVar[tuple[str, ...]]
    """``CREATE ... IF NOT EXISTS`` statements, one each (``executescript`` would commit)."""
    tables: ClassVar[tuple[str, ...]]
    """Tables dropped by :meth:`drop`, children first."""
    clear_only: ClassVar[frozenset[str]] = frozenset()
    """Names of the event classes of ``topics`` this projection folds by their clear fields alone,
    never reading their personal ones (``engine.privacy.SENSITIVE``): when every view folding one
    says so, the runner leaves those fields sealed (they read as placeholders), so an audio chunk's
    payload is neither decrypted nor decoded for a view that only wants its time."""

    def create(self, db: sqlite3.Connection) -> None:
        for statement in self.schema:
            db.execute(statement)

    def drop(self, db: sqlite3.Connection) -> None:
        for table in self.tables:
            db.execute(f'DROP TABLE IF EXISTS "{table}"')

    @abc.abstractmethod
    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        """Fold one event into the tables (inside the runner's transaction)."""

    def page_started(self) -> None:  # noqa: B027 - an optional hook: most views gather nothing per page
        """Before the runner folds a page of events (or folds it again, event by event, after the first
        attempt failed and was rolled back): forget what :meth:`page_done` would have written."""

    def page_done(self, db: sqlite3.Connection) -> None:  # noqa: B027 - an optional hook, as above
        """After the page is folded, in its transaction: write what the fold gathered over the page
        rather than per event (the conversations' ``last_event_at``)."""
