"""Reading a call's stored rows *with* their positions, and small checks, per backend.

Why here: the eventsourcing library cannot give a stream's events together with their notification
ids (our global ``position``), so :class:`engine.store.EventStore` asks the recorder's own datastore,
with one small SQL statement per backend. The same readers answer ``ping`` (health) and
``table_exists`` (commands that only read must not create a store).

One statement writes: :meth:`SQLiteRows.replace_states` / :meth:`PostgresRows.replace_states`, used
only by an erasure, to scrub events recorded in clear before encryption existed (their sensitive
fields replaced by placeholders, nothing else changed) — the one exception to an append-only log,
because those events have no key to delete.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any, NamedTuple

from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder

CALL_NAMESPACE = uuid.UUID("4f0d6f1e-8c1b-5d8e-9a57-63a1c2b0ca11")
"""Namespace of the uuid5 stream ids: ``originator_id = uuid5(CALL_NAMESPACE, call_id)``. Never change
it: stored logs are found through it."""


@functools.lru_cache(maxsize=4096)
def call_originator_id(call_id: str) -> uuid.UUID:
    """The stream id under which a call's events are stored (cached: the writer asks for it for every
    event it writes, and a uuid5 is a SHA-1 and a UUID object each time)."""
    return uuid.uuid5(CALL_NAMESPACE, call_id)


class StoreBackendError(RuntimeError):
    """The recorder is neither SQLite nor PostgreSQL."""


class Row(NamedTuple):
    position: int
    version: int
    topic: str
    state: bytes


RowTuple = tuple[int, int, str, bytes]
"""A :class:`Row` as a plain tuple ``(position, version, topic, state)``: what the database driver
gives, for a reader of a whole call (an hour's call: ~15 ms of ``Row`` objects not made)."""


def _tuples(cursor: Any, select: str, params: tuple[Any, ...]) -> list[RowTuple]:
    """The rows of ``select`` as the driver's own tuples (states that are not ``bytes`` made so): the
    library's connections make ``sqlite3.Row`` objects, read field by field — a fifth of the time an
    hour's call takes to read. ``sqlite_cursor`` is the library's wrapped cursor (eventsourcing is
    pinned below 9.6)."""
    rows: list[RowTuple] = _fetch(cursor, select, params)
    if all(type(row[3]) is bytes for row in rows):
        return rows
    return [(p, v, t, s if type(s) is bytes else bytes(s)) for p, v, t, s in rows]


def _fetch(cursor: Any, select: str, params: tuple[Any, ...]) -> list[Any]:
    """The rows of ``select`` as the driver's own tuples, as they come."""
    raw = cursor.sqlite_cursor
    raw.row_factory = None
    raw.execute(select, params)
    rows: list[Any] = raw.fetchall()
    return rows


def _rows(cursor: Any, select: str, params: tuple[Any, ...]) -> list[Row]:
    """:func:`_tuples`, each made a :class:`Row`."""
    return list(map(Row._make, _tuples(cursor, select, params)))


class SQLiteRows:
    """SQLite: the notification id is the table's ``rowid``; ids are stored as hex text."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self._datastore = recorder.datastore
        self.table: str = recorder.events_table_name
        self._select = (
            f"SELECT rowid, originator_version, topic, state FROM {recorder.events_table_name} "
            "WHERE originator_id=? AND originator_version>? AND originator_version<=? "
            "ORDER BY originator_version"
        )
        table = recorder.events_table_name
        self._select_version_at = (
            f"SELECT COALESCE((SELECT originator_version FROM {table} WHERE rowid=?1 AND originator_id=?2), "
            f"(SELECT MAX(originator_version) FROM {table} WHERE originator_id=?2 AND rowid<=?1), 0)"
        )
        self._select_from = (  # the state as a BLOB whatever was stored: bytes, with no pass to check each row
            f"SELECT rowid, originator_version, topic, CAST(state AS BLOB) FROM {recorder.events_table_name} "
            "WHERE originator_id=? AND originator_version>? ORDER BY originator_version LIMIT ?"
        )
        self._select_topics = (
            f"SELECT topic FROM {recorder.events_table_name} WHERE originator_id=? ORDER BY originator_version"
        )
        self._update = f"UPDATE {recorder.events_table_name} SET state=? WHERE rowid=?"

    def call_rows(self, oid: uuid.UUID, gt: int | None = None, lte: int | None = None) -> list[Row]:
        params = (oid.hex, -1 if gt is None else gt, 2**62 if lte is None else lte)
        with self._datastore.transaction(commit=False) as c:
            return _rows(c, self._select, params)

    def call_version_at(self, oid: uuid.UUID, position: int) -> int:
        """The version of one call's row at ``position``; for a position that is not one of the call's,
        the last version stored at or before it (0: none)."""
        with self._datastore.transaction(commit=False) as c:
            c.execute(self._select_version_at, (position, oid.hex))
            return int(c.fetchone()[0])

    def call_rows_from(self, oid: uuid.UUID, after_version: int, limit: int) -> list[RowTuple]:
        """Up to ``limit`` rows of one call after version ``after_version``, as tuples (a page of a
        call read from start to end)."""
        with self._datastore.transaction(commit=False) as c:
            return _fetch(c, self._select_from, (oid.hex, after_version, limit))

    def log_rows(self, after: int, stop: int, topics: tuple[str, ...], limit: int) -> list[Row]:
        """Up to ``limit`` rows of the whole log with ``after < position <= stop`` and one of
        ``topics`` (all when empty), in position order: the recorder's ``select_notifications``
        without a ``uuid.UUID`` and a ``Notification`` made per row (a rebuild reads a million)."""
        where = f" AND topic IN ({','.join('?' * len(topics))})" if topics else ""
        select = (
            f"SELECT rowid, originator_version, topic, state FROM {self.table} "
            f"WHERE rowid>? AND rowid<=?{where} ORDER BY rowid LIMIT ?"
        )
        with self._datastore.transaction(commit=False) as c:
            return _rows(c, select, (after, stop, *topics, limit))

    def call_topics(self, oid: uuid.UUID) -> list[str]:
        """The topics of one call's events, in order (no payload is read)."""
        with self._datastore.transaction(commit=False) as c:
            c.execute(self._select_topics, (oid.hex,))
            return [r[0] for r in c.fetchall()]

    def replace_states(self, states: list[tuple[int, bytes]]) -> None:
        """``(position, state)``: overwrite those rows' payloads in one transaction, zeroing what they
        held (``secure_delete``), then truncate the write-ahead log so no old page survives in it."""
        with self._datastore.transaction(commit=True) as c:
            c.execute("PRAGMA secure_delete=ON")
            c.executemany(self._update, [(state, position) for position, state in states])
        with self._datastore.get_connection(commit=False) as conn:  # outside any transaction
            conn.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")

    is_file = True

    def ping(self) -> None:
        with self._datastore.transaction(commit=False) as c:
            c.execute("SELECT 1")

    def table_exists(self) -> bool:
        with self._datastore.transaction(commit=False) as c:
            c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (self.table,))
            return c.fetchone() is not None


class PostgresRows:
    """PostgreSQL: the table has a ``notification_id`` column; ids are ``uuid``."""

    def __init__(self, recorder: Any) -> None:
        from psycopg.sql import SQL, Identifier

        self._datastore = recorder.datastore
        self.table: str = recorder.events_table_name
        self._select = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version > %s AND originator_version <= %s "
            "ORDER BY originator_version"
        ).format(Identifier(self._datastore.schema), Identifier(recorder.events_table_name))
        self._select_version_at = SQL(
            "SELECT COALESCE((SELECT originator_version FROM {0}.{1} WHERE notification_id = %(at)s "
            "AND originator_id = %(oid)s), (SELECT MAX(originator_version) FROM {0}.{1} "
            "WHERE originator_id = %(oid)s AND notification_id <= %(at)s), 0) AS version"
        ).format(Identifier(self._datastore.schema), Identifier(recorder.events_table_name))
        self._select_from = SQL(
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version > %s ORDER BY originator_version LIMIT %s"
        ).format(Identifier(self._datastore.schema), Identifier(recorder.events_table_name))
        self._select_topics = SQL(
            "SELECT topic FROM {}.{} WHERE originator_id = %s ORDER BY originator_version"
        ).format(Identifier(self._datastore.schema), Identifier(recorder.events_table_name))
        self._update = SQL("UPDATE {}.{} SET state = %s WHERE notification_id = %s").format(
            Identifier(self._datastore.schema), Identifier(recorder.events_table_name)
        )
        log = (
            "SELECT notification_id, originator_version, topic, state FROM {}.{} "
            "WHERE notification_id > %s AND notification_id <= %s{} ORDER BY notification_id LIMIT %s"
        )
        self._select_log = SQL(log.format("{}", "{}", " AND topic = ANY(%s)")).format(
            Identifier(self._datastore.schema), Identifier(recorder.events_table_name)
        )
        self._select_log_all = SQL(log.format("{}", "{}", "")).format(
            Identifier(self._datastore.schema), Identifier(recorder.events_table_name)
        )

    def _tuples(self, select: Any, params: tuple[Any, ...]) -> list[RowTuple]:
        """The rows of ``select`` as ``(position, version, topic, state)`` tuples."""
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(select, params, prepare=True)
            return [
                (r["notification_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in curs.fetchall()
            ]

    def call_rows(self, oid: uuid.UUID, gt: int | None = None, lte: int | None = None) -> list[Row]:
        params = (oid, -1 if gt is None else gt, 2**62 if lte is None else lte)
        return list(map(Row._make, self._tuples(self._select, params)))

    def call_version_at(self, oid: uuid.UUID, position: int) -> int:
        """See :meth:`SQLiteRows.call_version_at`."""
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_version_at, {"at": position, "oid": oid}, prepare=True)
            row = curs.fetchone()
            assert row is not None
            return int(row["version"])

    def call_rows_from(self, oid: uuid.UUID, after_version: int, limit: int) -> list[RowTuple]:
        """Up to ``limit`` rows of one call after version ``after_version``, as tuples (a page of a
        call read from start to end)."""
        return self._tuples(self._select_from, (oid, after_version, limit))

    def log_rows(self, after: int, stop: int, topics: tuple[str, ...], limit: int) -> list[Row]:
        """Up to ``limit`` rows of the whole log with ``after < position <= stop`` and one of
        ``topics`` (all when empty), in position order (see :meth:`SQLiteRows.log_rows`)."""
        params: tuple[Any, ...] = (after, stop, list(topics), limit) if topics else (after, stop, limit)
        return list(map(Row._make, self._tuples(self._select_log if topics else self._select_log_all, params)))

    def call_topics(self, oid: uuid.UUID) -> list[str]:
        """The topics of one call's events, in order (no payload is read)."""
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_topics, (oid,))
            return [r["topic"] for r in curs.fetchall()]

    def replace_states(self, states: list[tuple[int, bytes]]) -> None:
        """``(position, state)``: overwrite those rows' payloads in one transaction (the old row
        versions are reclaimed by VACUUM)."""
        with self._datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.executemany(self._update, [(state, position) for position, state in states])

    is_file = False

    def ping(self) -> None:
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute("SELECT 1")

    def table_exists(self) -> bool:
        with self._datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name = %s",
                (self._datastore.schema, self.table),
            )
            return curs.fetchone() is not None


def row_reader(recorder: ApplicationRecorder) -> RowReader:
    """The reader for ``recorder``'s backend."""
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteRows(recorder)
    from eventsourcing.postgres import PostgresApplicationRecorder

    if isinstance(recorder, PostgresApplicationRecorder):
        return PostgresRows(recorder)
    raise StoreBackendError(f"unsupported recorder {type(recorder).__name__}: use SQLite or PostgreSQL")


RowReader = SQLiteRows | PostgresRows
