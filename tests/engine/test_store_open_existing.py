"""Commands that only read (``replay``, ``projections rebuild``, ``mcp``) refuse a store that does not
exist — a typo in ``--store`` — with one line naming it and the fix, and create nothing; only
``serve`` creates a store. Run as the user runs them: ``callbridge …`` in a subprocess."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from callbridge.engine.store import EventStore, StoreMissingError, open_existing_store

READ_ONLY_COMMANDS = [["replay", "CA1"], ["projections", "rebuild"], ["mcp"]]


def callbridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "callbridge", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c[0])
def test_a_mistyped_store_is_refused_in_one_line_and_nothing_is_created(tmp_path: Path, command: list[str]) -> None:
    typo = tmp_path / "dta" / "callbridge.db"
    done = callbridge(*command, "--store", str(typo), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert str(typo) in line
    assert "there is no such file (only `callbridge serve` creates a store); check --store or CALLBRIDGE_STORE" in line
    assert not typo.parent.exists()
    assert not (tmp_path / "data").exists()  # not even the default data folder


@pytest.mark.parametrize("command", READ_ONLY_COMMANDS, ids=lambda c: c[0])
def test_a_file_that_is_not_an_event_store_is_refused_and_left_alone(tmp_path: Path, command: list[str]) -> None:
    other = tmp_path / "views.db"  # e.g. the views file passed as --store
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE conversations (call_id TEXT)")
    db.commit()
    db.close()
    done = callbridge(*command, "--store", str(other), cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert f"{other}: it is not a callbridge event store (no stored_events table" in line
    db = sqlite3.connect(other)
    assert [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["conversations"]
    db.close()


def test_an_in_memory_store_is_refused_by_commands_that_read(tmp_path: Path) -> None:
    done = callbridge("replay", "CA1", "--store", "sqlite:///:memory:", cwd=tmp_path)
    assert done.returncode == 2
    assert "an in-memory store is empty in every new process" in done.stderr


def test_an_existing_store_opens(sqlite_store_url: str) -> None:
    EventStore(sqlite_store_url).close()
    store = open_existing_store(sqlite_store_url)
    assert store.head() == 0
    store.close()


@pytest.mark.postgres
def test_a_postgres_schema_without_the_event_table_is_refused_and_left_alone(postgres_store_url: str) -> None:
    import psycopg

    with pytest.raises(StoreMissingError, match=r"there is no event store there \(no callbridge_events table"):
        open_existing_store(postgres_store_url)
    schema = postgres_store_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_store_url.split("?")[0]) as conn:
        tables = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema=%s", (schema,))
        assert tables.fetchall() == []
    EventStore(postgres_store_url).close()  # serve's way: creates it
    open_existing_store(postgres_store_url).close()
