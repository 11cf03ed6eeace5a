"""Two changes to how the library uses PostgreSQL: inserts sent in binary, and one creator at a time.

**Inserts in binary** (:func:`insert_in_binary`). eventsourcing (9.5) inserts a batch as one array
of its composite ``stored_event`` type, which psycopg dumps as text, in Python: each event's state
as hex, then escaped twice by regular expressions (the composite's quoting, then the array's). At
100 calls that was half the event writer's time — in a thread, holding the GIL in stretches the
media loop then waited behind at every socket call: 238 loop stalls over 10 ms in a minute in the
worker carrying the calls, p99 24 ms against SQLite's 8. Sent as four parallel arrays (ids,
versions, topics, states) with binary placeholders, psycopg dumps them in C: 9 stalls, p99 8.4 ms,
16 % less CPU per call (``benchmarks/bridge.py --store postgresql://…``).

The rows are the same, in the same order (``unnest`` of parallel arrays yields them in array order, as
of the composite array), and so are the positions the insert returns; the table's lock and the NOTIFY
before it stay the library's own (``_lock_table``, ``_notify_channel``: eventsourcing is pinned below
9.6, see ``engine/store_rows.py``).

**One creator at a time** (:func:`one_creator_at_a_time`). Opening the store creates what is missing
(the library's types, table, indexes and functions — its ``CREATE OR REPLACE FUNCTION`` runs at every
opening — and the key store's table). Two processes doing that at once, as ``serve``'s workers do as
they start, or two engines started together on a new database, can fail with "tuple concurrently
updated" or a duplicate key in the catalogue: a worker then exited and took the server down with it
(seen once in about ten starts on a new schema). A session advisory lock held around the creation makes
them take turns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

CREATION_LOCK = 0x63616C6C62726467
"""The advisory lock's key (``callbrdg`` in ASCII): one per database, whatever the schema."""


def insert_in_binary(recorder: ApplicationRecorder) -> None:
    """On PostgreSQL, make this ``recorder`` (this instance only) insert its batches with binary
    parameters; any other recorder is left as it is."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from psycopg.sql import SQL, Identifier

    if not isinstance(recorder, PostgresApplicationRecorder):
        return
    statement = SQL(
        "INSERT INTO {schema}.{table} AS t (originator_id, originator_version, topic, state) "
        "SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[]) RETURNING notification_id"
    ).format(schema=Identifier(recorder.datastore.schema), table=Identifier(recorder.events_table_name))

    def insert_stored_events(curs: Any, stored_events: Sequence[StoredEvent], **_: Any) -> None:
        # what PostgresApplicationRecorder._insert_stored_events does, with the insert's values in binary
        recorder._lock_table(curs)
        recorder._notify_channel(curs)
        curs.execute(
            statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )

    setattr(recorder, "_insert_stored_events", insert_stored_events)  # noqa: B010 (an instance's method)


@contextmanager
def one_creator_at_a_time(env: Mapping[str, str]) -> Iterator[None]:
    """On PostgreSQL, when the store may be created (``CREATE_TABLE`` not "no"): hold the database's
    creation lock (a session advisory lock, on a connection of its own) for the ``with`` block, so
    processes opening the store together create it in turn. Anything else: nothing."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres" or env.get("CREATE_TABLE") == "no":
        yield
        return
    import psycopg

    with psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env.get("POSTGRES_PASSWORD") or None,
        connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT") or 5),
        autocommit=True,
    ) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (CREATION_LOCK,))
        yield  # closing the connection releases the lock
