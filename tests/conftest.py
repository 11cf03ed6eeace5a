"""Shared fixtures. Each group is named after what it provides; add new groups below."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from callbridge.engine.store import EventStore

# --- event store -------------------------------------------------------------------------------

POSTGRES_TEST_URL = os.environ.get("CALLBRIDGE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL the ``postgres`` tests use (trust auth); override with CALLBRIDGE_TEST_POSTGRES."""


@pytest.fixture
def sqlite_store_url(tmp_path: Path) -> str:
    """A SQLite store path in a folder that does not exist yet (the store creates it)."""
    return str(tmp_path / "data" / "callbridge.db")


@pytest.fixture
def sqlite_event_store(sqlite_store_url: str) -> Iterator[EventStore]:
    """An open, empty SQLite event store, closed after the test."""
    store = EventStore(sqlite_store_url)
    yield store
    store.close()


@pytest.fixture
def postgres_store_url(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``postgresql://`` store URL in a fresh schema of its own, dropped after the test.

    With a PostgreSQL store an engine's data folder (its id, lock and views) is ``./data``, so the test
    runs in a folder of its own: tests running side by side (``pytest -n``) must not share one engine's
    lock or views. Skips when PostgreSQL is unreachable, except under ``CI=true`` where that is a failure.
    """
    import psycopg

    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))

    try:
        admin = psycopg.connect(POSTGRES_TEST_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_TEST_URL.split('@')[-1]}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message} (CI=true: PostgreSQL tests must run)")
        pytest.skip(message)
    schema = f"cb_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{POSTGRES_TEST_URL}?schema={schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}_keys" CASCADE')  # its calls' keys (engine.keys)
