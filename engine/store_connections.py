"""The event store's database connections, and who is using them right now.

Why counted: :meth:`EventStore.reopen` replaces every connection after failed writes (a SQLite file
found read-only stays read-only for a connection's life) while other threads read through the old
ones — the projections, the webhook lease, the operator commands' follower. The library's pool closes
the connections in use too when it is closed, and a SQLite connection closed while another thread
executes on it crashes the process (a segfault in ``libsqlite3``: a server with a full disk died this
way, its calls cut off). So every use of the connections is counted (:meth:`Connections.use`), and a
replaced :class:`Opening` is closed by whichever use leaves it last — at once when none is using it.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.application import Application
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.utils import Environment, EnvType

from callbridge.engine.store_rows import RowReader, row_reader

logger = logging.getLogger(__name__)


class StoreClosedError(RuntimeError):
    """The store was used after :meth:`EventStore.close`."""


class _CallLog(Application[uuid.UUID]):
    """The eventsourcing application whose recorder holds the log (PostgreSQL table
    ``callbridge_events``; SQLite always uses ``stored_events``)."""

    name = "CallBridge"

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # The store URL is the whole configuration: unlike the base class, do not merge
        # os.environ, so a stray PERSISTENCE_MODULE or CALLBRIDGE_* variable cannot redirect the log.
        return Environment(name, dict(env or {}))


class Opening:
    """One opening of the store: the library's application, its recorder and our row reader over the
    same pool of connections. Raises what the library raises when the store cannot be opened."""

    def __init__(self, env: dict[str, str]) -> None:
        self._app = _CallLog(env=env)
        self.recorder: ApplicationRecorder = self._app.recorder
        try:
            self.rows: RowReader = row_reader(self.recorder)
        except BaseException:
            self._app.close()
            raise
        self.users = 0
        self.retired = False

    def close(self) -> None:
        self._app.close()


class Connections:
    """The current :class:`Opening`, lent out counted, replaced, and closed once nobody uses it."""

    def __init__(self, opening: Opening, description: str) -> None:
        self._current = opening
        self._description = description
        self._changed = threading.Condition()
        self._unclosed = 1
        self.closed = False
        """:meth:`close` was called: every later :meth:`use` raises :class:`StoreClosedError`."""

    @property
    def current(self) -> Opening:
        """The opening new uses get; not counted (for a look at its kind, or a single-threaded tool)."""
        return self._current

    def check_open(self) -> None:
        """Raise :class:`StoreClosedError` once :meth:`close` was called."""
        if self.closed:
            raise StoreClosedError(f"the event store {self._description} is closed")

    @contextmanager
    def use(self) -> Iterator[Opening]:
        """The current opening, kept open until the block is left even if it is replaced meanwhile."""
        with self._changed:
            self.check_open()
            opening = self._current
            opening.users += 1
        try:
            yield opening
        finally:
            with self._changed:
                opening.users -= 1
                last = opening.retired and opening.users == 0
            if last:
                self._close(opening)

    def replace(self, opening: Opening) -> None:
        """New uses get ``opening``; the one before is closed when its last use ends."""
        with self._changed:
            if self.closed:
                opening.close()
                self.check_open()
            old, self._current = self._current, opening
            self._unclosed += 1
            old.retired = True
            idle = old.users == 0
        if idle:
            self._close(old)

    def close(self, timeout: float) -> bool:
        """Refuse new uses, close what nobody uses, and wait at most ``timeout`` s for the uses in
        progress to end (the last one closes its opening). Idempotent; whether all is closed."""
        with self._changed:
            already = self.closed
            self.closed = True
            current = self._current
            idle = not already and current.users == 0
            current.retired = True
        if idle:
            self._close(current)
        with self._changed:
            return self._changed.wait_for(lambda: self._unclosed == 0, timeout=max(0.0, timeout))

    def _close(self, opening: Opening) -> None:
        try:
            opening.close()
        except Exception as exc:
            logger.warning("closing connections to %s failed: %s", self._description, exc)
        with self._changed:
            self._unclosed -= 1
            self._changed.notify_all()
