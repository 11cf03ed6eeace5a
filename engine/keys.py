"""The key store: one random 256-bit key per call (and per webhook secret), kept outside the log.

Why: a call's audio, transcripts and tool payloads are stored encrypted with the call's own key
(``engine.sealing``), so erasing the call is deleting one key (crypto-shredding) instead of rewriting
an append-only log. The keys therefore live apart from the event tables:

- **SQLite store** → a separate SQLite file beside it (``callbridge-keys.db`` for ``callbridge.db``),
  created 0600, in rollback-journal mode with ``secure_delete`` on, so a deleted key is overwritten
  with zeros in the file and no write-ahead log keeps a copy of it.
- **PostgreSQL store** → a table ``keys`` in its own schema (``<schema>_keys``, or ``callbridge_keys``
  beside the default schema), so the event tables' grants and backups can exclude it. A deleted key
  leaves a dead row version until VACUUM (run after each erasure); database backups taken before an
  erasure still hold the key: keep backups of the keys schema as short as your erasure promises.

Erasing writes a **tombstone** (``key`` NULL, ``erased_at`` set) rather than removing the row: a key
is never created again for an erased call, so events recorded for it afterwards (a late status
callback) are stored without their sensitive fields at all.

Keys are cached in memory (:class:`KeyRing`: :data:`CACHE_TTL_S` for sealing a live call's events,
:data:`READ_TTL_S` for reading), so neither asks the database per event; :meth:`KeyRing.evict` drops a
copy at once (the erasure, and every engine that sees ``CallErased``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

log = logging.getLogger(__name__)

KEY_BYTES = 32
"""AES-256-GCM keys."""
CACHE_TTL_S = 60.0
"""How long a key is kept in memory for sealing a live call's events (a key erased meanwhile elsewhere
only seals events nobody can read)."""
READ_TTL_S = 5.0
"""How long a key is trusted from memory for reading: the longest another engine may still read a call
erased elsewhere should it not see ``CallErased`` (it evicts at once when it does)."""
CACHE_MAX = 10_000
BUSY_TIMEOUT_S = 30.0


class KeyStoreError(RuntimeError):
    """The key store cannot be opened or used; the message says where and what to check."""


@dataclass(frozen=True)
class KeyState:
    """What the key store knows about one key id."""

    key: bytes | None
    """The key, or None when it was erased or never made."""
    erased_at: float | None = None
    """When it was erased (a tombstone), else None."""
    cipher: AESGCM | None = field(default=None, compare=False, repr=False)
    """The key set up for AES-GCM (made once per cached key: half the cost of sealing a small event)."""

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


MISSING = KeyState(None)


class KeyBackend(Protocol):
    """Where keys are kept. Blocking; thread-safe."""

    description: str

    def get(self, key_id: str) -> KeyState: ...

    def get_or_create(self, key_id: str) -> KeyState:
        """The key, made now if there is none; a tombstone stays a tombstone (``key`` None)."""
        ...

    def erase(self, key_id: str, at: float) -> KeyState:
        """Delete the key (leaving a tombstone, even when there was no key); returns the state before."""
        ...

    def ensure(self) -> None:
        """Create the key store now if it is not there (``serve`` checks it at start)."""
        ...

    def close(self) -> None: ...


# --- SQLite: a file of its own --------------------------------------------------------------------


def sqlite_keys_path(store_path: Path) -> Path:
    """The key file of a SQLite store: ``callbridge.db`` → ``callbridge-keys.db`` in the same folder."""
    return store_path.with_name(f"{store_path.stem}-keys.db")


_SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, key BLOB, created_at REAL NOT NULL, erased_at REAL)"
)


class SQLiteKeys:
    """Keys in a SQLite file (or in memory, for an in-memory store)."""

    def __init__(self, path: Path | None, *, create: bool = True) -> None:
        self.path = path
        self.description = f"sqlite:{path}" if path is not None else "sqlite::memory: (keys)"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is None:
            self._db = self._connect(":memory:")
        elif path.is_file() or create:
            self._open_file(path, create=create)

    def _open_file(self, path: Path, *, create: bool) -> None:
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._db = self._connect(str(path))

    def _connect(self, target: str) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(target, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
            db.execute("PRAGMA secure_delete=ON")
            if target != ":memory:":
                db.execute("PRAGMA journal_mode=DELETE")
            db.execute(_SQLITE_SCHEMA)
        except sqlite3.Error as exc:
            raise KeyStoreError(
                f"cannot open the key store {target}: {exc}; check that this user can write the file and its folder"
            ) from exc
        return db

    def ensure(self) -> None:
        with self._lock:
            if self._db is None:
                raise KeyStoreError(f"the key store {self.description} is not there (read-only command)")
            self._db.execute("BEGIN IMMEDIATE")  # proves the file takes writes
            self._db.execute("COMMIT")

    def get(self, key_id: str) -> KeyState:
        with self._lock:
            if self._db is None:
                return MISSING
            row = self._db.execute("SELECT key, erased_at FROM keys WHERE key_id=?", (key_id,)).fetchone()
        return MISSING if row is None else KeyState(None if row[0] is None else bytes(row[0]), row[1])

    def get_or_create(self, key_id: str) -> KeyState:
        with self._lock:
            if self._db is None:
                raise KeyStoreError(f"the key store {self.description} is not there (read-only command)")
            self._db.execute(
                "INSERT OR IGNORE INTO keys(key_id, key, created_at) VALUES (?, ?, ?)",
                (key_id, secrets.token_bytes(KEY_BYTES), time.time()),
            )
            row = self._db.execute("SELECT key, erased_at FROM keys WHERE key_id=?", (key_id,)).fetchone()
        return KeyState(None if row[0] is None else bytes(row[0]), row[1])

    def erase(self, key_id: str, at: float) -> KeyState:
        with self._lock:
            if self._db is None:
                raise KeyStoreError(f"the key store {self.description} is not there")
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT key, erased_at FROM keys WHERE key_id=?", (key_id,)).fetchone()
                db.execute(
                    "INSERT INTO keys(key_id, key, created_at, erased_at) VALUES (?, NULL, ?, ?) "
                    "ON CONFLICT(key_id) DO UPDATE SET key=NULL, erased_at=coalesce(erased_at, excluded.erased_at)",
                    (key_id, at, at),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return MISSING if row is None else KeyState(None if row[0] is None else bytes(row[0]), row[1])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


# --- PostgreSQL: a table in a schema of its own ---------------------------------------------------


def postgres_keys_schema(events_schema: str) -> str:
    """``<schema>_keys`` for a store in a named schema, ``callbridge_keys`` beside ``public``."""
    return "callbridge_keys" if events_schema in ("", "public") else f"{events_schema}_keys"


DatastoreInUse = Callable[[], AbstractContextManager[Any]]
"""``with lend() as datastore:`` the event store's current datastore, kept open meanwhile (the store
replaces its connections after failed writes: ``engine.store_connections``)."""


class PostgresKeys:
    """Keys in ``<schema>_keys.keys``, through the store's own connection pool (whichever is current)."""

    def __init__(self, lend: DatastoreInUse, *, create: bool = True) -> None:
        from psycopg.sql import SQL, Identifier

        self._lend = lend
        with lend() as datastore:
            self.schema = postgres_keys_schema(getattr(datastore, "schema", "") or "")
        table = SQL("{}.keys").format(Identifier(self.schema))
        self.description = f"postgresql schema {self.schema}"
        self._create = [
            SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.schema)),
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (key_id text PRIMARY KEY, key bytea, "
                "created_at double precision NOT NULL, erased_at double precision)"
            ).format(table),
        ]
        self._select = SQL("SELECT key, erased_at FROM {} WHERE key_id = %s").format(table)
        self._select_for_update = SQL("SELECT key, erased_at FROM {} WHERE key_id = %s FOR UPDATE").format(table)
        self._insert = SQL(
            "INSERT INTO {} (key_id, key, created_at) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING"
        ).format(table)
        self._erase = SQL(
            "INSERT INTO {} (key_id, key, created_at, erased_at) VALUES (%s, NULL, %s, %s) ON CONFLICT (key_id) "
            "DO UPDATE SET key = NULL, erased_at = coalesce({}.erased_at, excluded.erased_at)"
        ).format(table, table)
        self._vacuum = SQL("VACUUM {}").format(table)
        self._exists = SQL("SELECT to_regclass(%s) IS NOT NULL AS present")
        self._ready = False
        self._lock = threading.Lock()
        self._create_allowed = create

    def ensure(self) -> None:
        """Create the schema and table (lazily: a store that never seals anything creates nothing)."""
        if self._ready:
            return
        if not self._create_allowed:
            raise KeyStoreError(f"the key store {self.description} is not there (read-only command)")
        with self._lock, self._lend() as datastore, datastore.get_connection() as conn, conn.transaction():
            for statement in self._create:
                conn.execute(statement)
        self._ready = True

    def _present(self) -> bool:
        if self._ready:
            return True
        with self._lend() as datastore, datastore.get_connection() as conn:
            row = conn.execute(self._exists, (f'"{self.schema}".keys',)).fetchone()
        self._ready = bool(row and row["present"])
        return self._ready

    @staticmethod
    def _state(row: Any) -> KeyState:
        if row is None:
            return MISSING
        return KeyState(None if row["key"] is None else bytes(row["key"]), row["erased_at"])

    def get(self, key_id: str) -> KeyState:
        if not self._present():
            return MISSING
        with self._lend() as datastore, datastore.get_connection() as conn:
            return self._state(conn.execute(self._select, (key_id,)).fetchone())

    def get_or_create(self, key_id: str) -> KeyState:
        self.ensure()
        with self._lend() as datastore, datastore.get_connection() as conn:
            conn.execute(self._insert, (key_id, secrets.token_bytes(KEY_BYTES), time.time()))
            return self._state(conn.execute(self._select, (key_id,)).fetchone())

    def erase(self, key_id: str, at: float) -> KeyState:
        self.ensure()
        with self._lend() as datastore, datastore.get_connection() as conn:
            with conn.transaction():
                before = self._state(conn.execute(self._select_for_update, (key_id,)).fetchone())
                conn.execute(self._erase, (key_id, at, at))
            with contextlib.suppress(Exception):  # reclaiming the dead row is best effort
                conn.execute(self._vacuum)
        return before

    def close(self) -> None:
        """The pool belongs to the store, which closes it."""


def key_backend(sqlite_store: Path | None, datastore: DatastoreInUse | None, *, create: bool) -> KeyBackend:
    """The key store of an event store: a file beside a SQLite store (``sqlite_store``), a schema of its
    own beside a PostgreSQL one (its ``datastore``, lent), else (an in-memory store) in memory."""
    if sqlite_store is not None:
        return SQLiteKeys(sqlite_keys_path(sqlite_store), create=create)
    if datastore is not None:
        return PostgresKeys(datastore, create=create)
    return SQLiteKeys(None)


# --- the cache in front of either ----------------------------------------------------------------


class KeyRing:
    """A key backend with an in-memory cache (bounded, :data:`CACHE_TTL_S`). Thread-safe."""

    def __init__(
        self,
        backend: KeyBackend,
        *,
        ttl_s: float = CACHE_TTL_S,
        read_ttl_s: float = READ_TTL_S,
        max_entries: int = CACHE_MAX,
    ) -> None:
        self.backend = backend
        self._ttl = ttl_s
        self._read_ttl = read_ttl_s
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[KeyState, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def description(self) -> str:
        return self.backend.description

    def _cached(self, key_id: str, ttl_s: float) -> KeyState | None:
        with self._lock:
            found = self._cache.get(key_id)
            if found is None:
                return None
            state, fetched = found
            if state.erased:  # a tombstone is forever
                return state
            if time.monotonic() - fetched > ttl_s:
                return None
            return state

    def _remember(self, key_id: str, state: KeyState) -> KeyState:
        if state.key is not None and state.cipher is None:
            state = KeyState(state.key, state.erased_at, AESGCM(state.key))
        with self._lock:
            self._cache[key_id] = (state, time.monotonic())
            self._cache.move_to_end(key_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return state

    def for_reading(self, key_id: str) -> KeyState:
        """The key to open an event with (``key`` None: erased, or lost)."""
        cached = self._cached(key_id, self._read_ttl)
        if cached is not None:
            return cached
        return self._remember(key_id, self.backend.get(key_id))

    def for_writing(self, key_id: str) -> KeyState:
        """The key to seal a new event with, made on first use (``key`` None: the call was erased)."""
        cached = self._cached(key_id, self._ttl)
        if cached is not None and (cached.key is not None or cached.erased):
            return cached
        return self._remember(key_id, self.backend.get_or_create(key_id))

    def erase(self, key_id: str, at: float | None = None) -> KeyState:
        """Delete the key everywhere it is kept: the store (a tombstone) and this cache. Returns the
        state before (``erased`` already: it was erased earlier)."""
        self.evict(key_id)
        before = self.backend.erase(key_id, time.time() if at is None else at)
        self.evict(key_id)
        return before

    def ensure(self) -> None:
        """Create the key store now if needed; raises when it cannot be (``serve`` refuses to start)."""
        self.backend.ensure()

    def evict(self, key_id: str) -> None:
        """Forget the cached copy (another engine erased it)."""
        with self._lock:
            self._cache.pop(key_id, None)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
        self.backend.close()
