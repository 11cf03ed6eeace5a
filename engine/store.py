"""The event store: every call's log, kept by the ``eventsourcing`` library.

Why this shape:

- Persistence is chosen by configuration only. ``CALLBRIDGE_STORE`` (a SQLite path or a
  ``postgresql://`` URL) becomes an ``eventsourcing`` environment (:func:`store_env`) and an
  :class:`eventsourcing.application.Application` builds the recorder from it: SQLite in WAL mode for
  one process, PostgreSQL when several engines share one log.
- Events are msgspec Structs, which the library's mapper cannot serialise, so we use its lowest
  level: ``recorder.insert_events`` with ``StoredEvent(uuid5(call_id), version, topic, bytes)``. Each
  call is one stream (its events numbered 1, 2, ...); the recorder's notification ids are the global
  ``position`` readers page through.
- The library cannot give a stream's events *with* their notification ids, so :class:`EventStore`
  asks the recorder's own datastore (one small SQL statement per backend, ``engine.store_rows``).
- Readers never crash on a stored event this code cannot decode: it is skipped with a warning. The
  read side lives in ``engine/store_reads.py`` (``EventStore`` is a ``StoreReads``), an event's plain
  stored form, made as it is recorded, in ``engine/store_encoding.py``.
- **Personal data is sealed at this boundary** (``engine.crypto``): each event's sensitive fields
  (``engine.privacy``) are encrypted with its call's key from the key store (``engine.keys``: a file
  beside a SQLite store, a schema of its own on PostgreSQL) as the event is written, and opened as it
  is read; once the key is erased, the event reads back with placeholders (``RecordedEvent.erased``).
  Redaction rules (``engine.redaction``) mask what readers are shown.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, StoredEvent

from callbridge.engine.crypto import Sealer
from callbridge.engine.events import Event
from callbridge.engine.keys import KeyRing, key_backend
from callbridge.engine.redaction import Redaction
from callbridge.engine.store_connections import Connections, Opening
from callbridge.engine.store_connections import StoreClosedError as StoreClosedError  # re-exported
from callbridge.engine.store_encoding import EncodedEvent as EncodedEvent  # re-exported: part of the store API
from callbridge.engine.store_encoding import EventEncodingError as EventEncodingError  # re-exported
from callbridge.engine.store_encoding import encode_for_store as encode_for_store  # re-exported
from callbridge.engine.store_postgres import one_creator_at_a_time
from callbridge.engine.store_reads import RecordedEvent as RecordedEvent  # re-exported: part of the store API
from callbridge.engine.store_reads import StoreReads
from callbridge.engine.store_rows import CALL_NAMESPACE as CALL_NAMESPACE  # re-exported
from callbridge.engine.store_rows import PostgresRows, RowReader, StoreBackendError
from callbridge.engine.store_rows import call_originator_id as call_originator_id  # re-exported
from callbridge.engine.store_url import StoreMissingError as StoreMissingError  # re-exported: part of the store API
from callbridge.engine.store_url import StoreNotWritableError as StoreNotWritableError  # re-exported
from callbridge.engine.store_url import StoreOpenError as StoreOpenError  # re-exported
from callbridge.engine.store_url import parse_store_url
from callbridge.engine.store_url import store_env as store_env  # re-exported: part of the store API

logger = logging.getLogger(__name__)


def open_existing_store(url: str, *, writable_keys: bool = False) -> EventStore:
    """The store at ``url`` for a command that only reads (``replay``, ``projections rebuild``,
    ``mcp``): raises :class:`StoreMissingError`, one line naming the place and the fix, when there is
    no store there, instead of creating an empty one. ``writable_keys``: the command will erase a key
    (``callbridge erase``), so the key store is created if it is missing."""
    return EventStore(url, create=False, create_keys=writable_keys)


def open_store_with_keys(url: str, *, redaction: Redaction | None = None) -> EventStore:
    """The store at ``url`` (created if missing) with its key store created too, for a server that will
    seal what it writes (``serve``, and the parent of its workers). Raises :class:`StoreOpenError`
    naming what could not be opened or created."""
    store = EventStore(url, redaction=redaction)
    try:
        store.keys.ensure()
    except Exception as error:
        store.close()
        raise StoreOpenError(
            f"cannot create the key store ({store.keys.description}) of {store.description}: {error}"
        ) from error
    return store


class EventStore(StoreReads):
    """Append-only log of call events. Thread-safe; every method blocks (call it from a thread,
    e.g. ``trio.to_thread.run_sync``, or through ``engine.store_writer.EventWriter``)."""

    def __init__(
        self, url: str, *, create: bool = True, redaction: Redaction | None = None, create_keys: bool | None = None
    ) -> None:
        """Open the store at ``url``, creating it unless ``create`` is false (then a missing store
        raises :class:`StoreMissingError`; see :func:`open_existing_store`). ``redaction`` defaults to
        ``CALLBRIDGE_REDACT``/``CALLBRIDGE_REDACT_LOG`` (``RedactionError``, a ``ValueError``, when
        they are wrong). ``create_keys`` (default: ``create``) lets a command that only appends a fact to
        an existing store (``callbridge erase``) create its key store."""
        self.redaction = Redaction.from_env(os.environ) if redaction is None else redaction
        target = parse_store_url(url)
        self._description = target.description
        self._env = dict(target.env)
        if not create:
            target.require_existing()
            self._env["CREATE_TABLE"] = "no"
        with ExitStack() as creating:  # on PostgreSQL, processes opening the store together take turns
            try:
                if target.sqlite_path is not None:
                    target.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                creating.enter_context(one_creator_at_a_time(self._env))
                opening = Opening(self._env)
            except StoreBackendError as exc:
                raise StoreOpenError(str(exc)) from exc
            except Exception as exc:
                message = f"cannot open the event store {target.description}: {exc}; {target.hint}"
                raise StoreOpenError(message) from exc
            self._connections = Connections(opening, target.description)
            lend = self._datastore_in_use if isinstance(opening.rows, PostgresRows) else None
            try:
                backend = key_backend(target.sqlite_path, lend, create=create if create_keys is None else create_keys)
            except Exception as exc:
                opening.close()
                message = f"cannot open the key store of {target.description}: {exc}; {target.hint}"
                raise StoreOpenError(message) from exc
        self.keys = KeyRing(backend)
        """The calls' keys (crypto-shredding: ``keys.erase("call:<id>")`` makes a call unreadable)."""
        self.sealer = Sealer(self.keys, self.redaction)
        self._lock = threading.Lock()
        self._versions: dict[str, int] = {}
        self._warned: set[int] = set()
        if not create:
            self._check_table()

    @contextmanager
    def _datastore_in_use(self) -> Iterator[Any]:
        """The current PostgreSQL datastore, for the key store beside the log (its own schema)."""
        with self._connections.use() as opening:
            recorder: Any = opening.recorder  # a PostgreSQL recorder: it has a datastore
            yield recorder.datastore

    def _check_table(self) -> None:
        rows = self._connections.current.rows
        try:
            exists = rows.table_exists()
        except Exception as exc:
            self.close()
            raise StoreOpenError(f"cannot open the event store {self._description}: {exc}") from exc
        if not exists:
            self.close()
            table = rows.table
            what = "it is not a callbridge event store" if rows.is_file else "there is no event store there"
            raise StoreMissingError(
                f"cannot open the event store {self._description}: {what} (no {table} table; only "
                f"`callbridge serve` creates a store); check --store or CALLBRIDGE_STORE"
            )

    def reopen(self) -> None:
        """Replace every database connection with a fresh one, e.g. once a store that failed is fixed:
        SQLite keeps a file it found read-only read-only for the connection's life, so a pooled
        connection never notices that permissions were repaired. Raises (keeping the old connections)
        when the store cannot be opened now. The old connections are closed once no thread is using
        them (``engine.store_connections``)."""
        self._connections.check_open()
        opening = Opening(self._env)
        with self._lock:
            self._connections.replace(opening)
            self._versions.clear()

    # --- other processes' appends --------------------------------------------------------------

    @property
    def notifies_appends(self) -> bool:
        """True when other processes' appends can be listened for (PostgreSQL's NOTIFY)."""
        return isinstance(self._connections.current.rows, PostgresRows)

    # --- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> int:
        """Write all ``events`` in one transaction, numbering each call's events after the ones
        already stored. Returns the position of the last event written (the head if none).

        Raises :class:`EventEncodingError` before writing anything if an event cannot be stored;
        any other failure leaves the store unchanged and may be retried with the same events.
        """
        return self.append_encoded([encode_for_store(event) for event in events])

    def append_encoded(self, batch: Sequence[EncodedEvent]) -> int:
        """:meth:`append` for events already encoded (the writer encodes when recording)."""
        if not batch:
            return self.head()
        with self._lock, self._connections.use() as opening:
            next_versions: dict[str, int] = {}
            stored: list[StoredEvent] = []
            for item in batch:
                version = next_versions.get(item.call_id)
                if version is None:
                    version = self._last_version(item.call_id)
                version += 1
                next_versions[item.call_id] = version
                oid = call_originator_id(item.call_id)
                stored.append(StoredEvent(oid, version, item.topic, item.sealed(self.sealer)))
            try:
                ids = opening.recorder.insert_events(stored)
            except IntegrityError:
                position = self._position_if_already_stored(opening.rows, stored)
                if position is None:
                    # Someone else wrote to these calls: forget the cached versions so a retry
                    # numbers after what is really stored.
                    for call_id in next_versions:
                        self._versions.pop(call_id, None)
                    raise
            else:
                position = max(ids) if ids else self._head(opening.recorder)
            self._versions.update(next_versions)
            return position

    def append_if_unchanged(self, call_id: str, last_version: int, events: Sequence[Event]) -> int:
        """Append ``events`` to one call only if its last stored version is still ``last_version``
        (optimistic concurrency, for deciding about a call that another process may still be writing:
        ending a lost call). Raises ``IntegrityError`` when anything was stored for the call since.
        Returns the position of the last event written."""
        encoded = [encode_for_store(event) for event in events]
        if any(item.call_id != call_id for item in encoded):
            raise EventEncodingError(f"append_if_unchanged takes events of call {call_id!r} only")
        oid = call_originator_id(call_id)
        with self._lock, self._connections.use() as opening:
            stored = [
                StoredEvent(oid, last_version + i, item.topic, item.sealed(self.sealer))
                for i, item in enumerate(encoded, 1)
            ]
            try:
                ids = opening.recorder.insert_events(stored)
            except IntegrityError:
                self._versions.pop(call_id, None)
                raise
            self._versions[call_id] = last_version + len(stored)
            return max(ids) if ids else self._head(opening.recorder)

    def forget_version(self, call_id: str) -> None:
        """Another process may have appended to ``call_id`` since this one last did (a call back from
        a hold, on another engine than the one that recorded its outcome): the next append reads the
        call's last version from the store instead of counting on from this process's memory, so it
        does not collide."""
        with self._lock:
            self._versions.pop(call_id, None)

    def last_event(self, call_id: str) -> tuple[int, Event] | None:
        """The version and event last stored for a call (None when it has none), read from the store
        now (never from this process's cache)."""
        last = self._last_stored(call_id)
        if last is None:
            return None
        return last.originator_version, self.sealer.open(last.topic, last.state).event

    def last_version(self, call_id: str) -> int:
        """The highest version stored for a call (0: none), read now."""
        last = self._last_stored(call_id)
        return last.originator_version if last is not None else 0

    def _last_stored(self, call_id: str) -> StoredEvent | None:
        with self._connections.use() as opening:
            last = opening.recorder.select_events(call_originator_id(call_id), desc=True, limit=1)
        return last[0] if last else None

    def _last_version(self, call_id: str) -> int:
        """The highest version stored for a call (0 if none); read once per call, then counted."""
        version = self._versions.get(call_id)
        if version is None:
            version = self._versions[call_id] = self.last_version(call_id)
        return version

    def _position_if_already_stored(self, rows: RowReader, stored: Sequence[StoredEvent]) -> int | None:
        """After a conflict: was this very batch committed already (a write reported as failed,
        then retried)? If so, its last position; else None. Sealed events are compared by what they
        hold (each sealing draws a new nonce)."""
        expected: dict[uuid.UUID, list[tuple[int, str, Event]]] = {}
        for s in stored:
            assert isinstance(s.originator_id, uuid.UUID)
            opened = self.sealer.open(s.topic, s.state, shown=False).event
            expected.setdefault(s.originator_id, []).append((s.originator_version, s.topic, opened))
        position = 0
        for oid, wanted in expected.items():
            found = rows.call_rows(oid, gt=wanted[0][0] - 1, lte=wanted[-1][0])
            try:
                held = [(r.version, r.topic, self.sealer.open(r.topic, r.state, shown=False).event) for r in found]
            except Exception:
                return None
            if held != wanted:
                return None
            position = max(position, *(r.position for r in found))
        return position

    # --- reading ---------------------------------------------------------------------------------

    def show_at_least(self, rules: Sequence[str]) -> None:
        """Mask ``rules`` too in every event read from now on (``callbridge mcp`` honouring the rules the
        server recorded, ``engine/redaction_record.py``)."""
        self.redaction = self.redaction.with_rules(tuple(rules))
        self.sealer = Sealer(self.keys, self.redaction)

    def head(self) -> int:
        """The highest position stored (0 when empty)."""
        with self._connections.use() as opening:
            return self._head(opening.recorder)

    @staticmethod
    def _head(recorder: ApplicationRecorder) -> int:
        return recorder.max_notification_id() or 0

    def ping(self) -> bool:
        """True when the database answers a trivial query (for health checks)."""
        if self._connections.closed:
            return False
        try:
            with self._connections.use() as opening:
                opening.rows.ping()
        except Exception as exc:
            logger.warning("event store %s does not answer: %s", self._description, exc)
            return False
        return True

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        """Where the log lives, safe to print (never contains a password)."""
        return self._description

    @property
    def views_identity(self) -> str:
        """What views folded from this store depend on: where it is, and the redaction rules in force
        (views built under other rules are rebuilt)."""
        fingerprint = self.redaction.fingerprint
        return f"{self._description} ({fingerprint})" if fingerprint else self._description

    @property
    def recorder(self) -> ApplicationRecorder:
        """The underlying eventsourcing recorder, not counted as a use (a reopen may close it under
        the caller): for tests and single-threaded tools; the engine reads and writes through the
        store's methods, or :meth:`connections`."""
        return self._connections.current.recorder

    def connections(self) -> AbstractContextManager[Opening]:
        """The store's connections (``.recorder``, ``.rows``), kept open until the block is left: for
        a reader that needs the rows themselves (``projections.erasure``) or holds a connection
        (``projections.appends``)."""
        return self._connections.use()

    def close(self, timeout: float = 5.0) -> bool:
        """Release the database connections. Idempotent. Waits at most ``timeout`` seconds for a read
        or write in progress (e.g. one abandoned by a writer's final flush); if one is still running
        then, the last to end closes the connections, rather than shutdown hanging on it. Returns
        whether the store is closed."""
        if not self._connections.close(timeout):  # the key store too is left to that read or write
            logger.warning("a read or write of %s is still in progress: not waiting for it to close", self._description)
            return False
        with self._lock:
            self.keys.close()
        return True

    def __repr__(self) -> str:
        return f"EventStore({self._description!r})"
