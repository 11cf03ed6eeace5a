"""Reopening the event store (the writer does after failed writes) while other threads use it.

A server with a full disk died of a segfault in ``libsqlite3``: its writer reopened the store after
five failed writes, which closed connections the webhook lease's thread was reading through. Each
use of the connections is now counted and a replaced set closed by its last user
(``engine/store_connections.py``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from callbridge.engine.events import CallStarted
from callbridge.engine.store import EventStore, StoreClosedError
from callbridge.engine.store_connections import Connections, Opening

READERS_WHILE_REOPENED = """
import sys, threading
from callbridge.engine.events import CallStarted
from callbridge.engine.store import EventStore

store = EventStore(sys.argv[1])
store.append([CallStarted(call_id="CA1", at=0.0, stream_sid="MZ1")])
stop, reads, errors = threading.Event(), [0], []

def read():
    while not stop.is_set():
        try:
            assert store.last_event("CA1")[0] == 1 and store.head() == 1 and len(store.read_all()) == 1
            reads[0] += 1
        except Exception as exc:
            errors.append(repr(exc))

threads = [threading.Thread(target=read) for _ in range(4)]
for thread in threads:
    thread.start()
for _ in range(int(sys.argv[2])):
    store.reopen()
stop.set()
for thread in threads:
    thread.join()
print(reads[0], len(errors), errors[:3])
"""


def test_threads_reading_while_the_store_is_reopened_over_and_over_neither_crash_nor_fail(tmp_path: Path) -> None:
    """In a process of its own: before the fix it died of SIGSEGV within a few hundred reopens."""
    run = subprocess.run(
        [sys.executable, "-c", READERS_WHILE_REOPENED, str(tmp_path / "callbridge.db"), "1000"],
        capture_output=True,
        text=True,
        timeout=120,  # a safety net: it takes about a second
    )
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    reads, errors, first_errors = run.stdout.split(" ", 2)
    assert int(reads) > 0 and int(errors) == 0, first_errors


class CountingOpening(Opening):
    """An opening that records when it is closed (and by which thread)."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.closed_by: str | None = None

    def close(self) -> None:
        self.closed_by = threading.current_thread().name
        super().close()


MEMORY = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": ":memory:"}


def test_a_replaced_opening_stays_open_until_its_last_use_ends_and_is_closed_by_it() -> None:
    first, second = CountingOpening(MEMORY), CountingOpening(MEMORY)
    connections = Connections(first, "sqlite::memory:")
    with connections.use() as using:
        assert using is first
        connections.replace(second)
        assert first.closed_by is None  # in use: not closed under the reader
        with connections.use() as newer:
            assert newer is second  # new uses get the new one meanwhile
    assert first.closed_by == threading.current_thread().name
    assert second.closed_by is None


def test_a_replaced_opening_nobody_uses_is_closed_at_once() -> None:
    first, second = CountingOpening(MEMORY), CountingOpening(MEMORY)
    connections = Connections(first, "sqlite::memory:")
    connections.replace(second)
    assert first.closed_by is not None and second.closed_by is None


def test_close_waits_for_a_use_in_progress_then_refuses_new_ones() -> None:
    opening = CountingOpening(MEMORY)
    connections = Connections(opening, "sqlite::memory:")
    entered, leave = threading.Event(), threading.Event()

    def use_until_told() -> None:
        with connections.use():
            entered.set()
            leave.wait()

    user = threading.Thread(target=use_until_told, name="the reader")
    user.start()
    entered.wait()
    assert connections.close(timeout=0.0) is False  # still in use: left to its user
    assert opening.closed_by is None
    with pytest.raises(StoreClosedError):
        connections.use().__enter__()
    leave.set()
    user.join()
    assert opening.closed_by == "the reader"
    assert connections.close(timeout=0.0) is True  # idempotent, and now all is closed


def test_the_store_reads_and_writes_on_after_a_reopen_and_not_after_close(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    store.append([CallStarted(call_id="CA1", at=0.0, stream_sid="MZ1")])
    store.reopen()
    assert store.append([CallStarted(call_id="CA2", at=1.0, stream_sid="MZ2")]) == 2
    assert [r.event.call_id for r in store.read_all()] == ["CA1", "CA2"]
    assert store.close() is True
    with pytest.raises(StoreClosedError):
        store.read_all()
    assert store.ping() is False
