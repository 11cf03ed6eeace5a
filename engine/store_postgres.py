"""PostgreSQL: processes opening a new store together take turns creating it.

Opening the store creates what is missing (the library's types, table, indexes and functions — its
``CREATE OR REPLACE FUNCTION`` runs at every opening — and the key store's table). Two processes
doing that at once, as ``serve``'s workers do as they start, or two engines started together on a
new database, can fail with "tuple concurrently updated" or a duplicate key in the catalogue: a
worker then exited and took the server down with it (seen once in about ten starts on a new schema).
A session advisory lock held around the creation makes them take turns.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

CREATION_LOCK = 0x63616C6C62726467
"""The advisory lock's key (``callbrdg`` in ASCII): one per database, whatever the schema."""


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
