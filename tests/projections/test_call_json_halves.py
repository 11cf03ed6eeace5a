"""A long call's ``replay --json`` is written by two processes (``projections/call_json_halves.py``):
the second half by a forked child that opens the store for itself, the first by this process.

The output is held to the one-process bytes (``expected_json``, as for ``call_json``): whatever the call
holds, wherever the middle falls, whichever half has nothing to show, and when the child fails (then
this process writes its half). Each test checks that a child really was forked.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from test_call_json import expected_json
from test_projections_support import T0, golden_calls, normal_call

from callbridge.cli import main
from callbridge.engine.events import CallEnded, CallerSaid, CallStarted
from callbridge.engine.store import EventStore, call_originator_id, encode_for_store
from callbridge.projections import call_json_halves
from callbridge.projections.call_json_halves import write_call_json_in_halves
from callbridge.projections.erasure import erase_call

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork here: one process writes the JSON")


@pytest.fixture
def forks(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The children forked (their pids, as this process sees them)."""
    forked: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    yield forked


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[tuple[str, EventStore]]:
    """A SQLite store's URL and the store, open for the test."""
    url = str(tmp_path / "events.db")
    store = EventStore(url)
    yield url, store
    store.close()


@pytest.fixture
def stored_call(sqlite_store: tuple[str, EventStore]) -> tuple[str, EventStore, str]:
    """The store's URL, the store, and the id of a normal call written to it."""
    url, store = sqlite_store
    log = normal_call()
    log.write(store)
    return url, store, log.call_id


def in_halves(store: EventStore, url: str, call_id: str, page_size: int = 1000) -> bytes:
    out = io.BytesIO()
    written = write_call_json_in_halves(store, url, call_id, out, page_size=page_size, min_events=2)
    assert written == len(store.read_call(call_id))
    return out.getvalue()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store the child opens anew: a SQLite file, a PostgreSQL schema (a connection of its own)."""
    return str(request.getfixturevalue(f"{request.param}_store_url"))


def test_calls_with_audio_tools_an_erasure_read_in_halves_give_the_one_process_bytes(
    store_url: str, forks: list[int]
) -> None:
    url = store_url
    store = EventStore(url)
    try:
        calls = golden_calls()
        for log in calls:
            log.write(store)
        erase_call(store, calls[0].call_id, by="cli")
        for log in calls:
            expected = expected_json(store, log.call_id)
            for page_size in (1, 3, 1000):
                assert in_halves(store, url, log.call_id, page_size) == expected, (log.call_id, page_size)
    finally:
        store.close()
    assert len(forks) == 3 * len(calls)


@pytest.mark.parametrize("events", [2, 3, 4])
def test_the_middle_of_a_short_call(sqlite_store: tuple[str, EventStore], forks: list[int], events: int) -> None:
    url, store = sqlite_store
    said = [CallerSaid(call_id="CAs", at=T0 + i, item_id=f"i{i}", text=f"line {i}") for i in range(1, events - 1)]
    store.append([CallStarted(call_id="CAs", at=T0, stream_sid="MZ"), *said])
    store.append([CallEnded(call_id="CAs", at=T0 + events, reason="caller_hangup")])
    assert in_halves(store, url, "CAs") == expected_json(store, "CAs")
    assert len(forks) == 1


def test_a_first_half_with_nothing_to_show_starts_the_array_with_the_second(
    sqlite_store: tuple[str, EventStore], forks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    url, store = sqlite_store
    oid = call_originator_id("CAx")
    started = encode_for_store(CallStarted(call_id="CAx", at=T0, stream_sid="MZx"))
    ended = encode_for_store(CallEnded(call_id="CAx", at=T0 + 1, reason="caller_hangup"))
    store.recorder.insert_events(
        [
            StoredEvent(oid, 1, "NoSuchEvent@1", b"{}"),
            StoredEvent(oid, 2, "CallEnded@1", b"not json"),
            StoredEvent(oid, 3, started.topic, started.state),
            StoredEvent(oid, 4, ended.topic, ended.state),
        ]
    )
    with caplog.at_level(logging.WARNING):
        output = in_halves(store, url, "CAx")
    assert output.startswith(b"[\n{") and output == expected_json(store, "CAx")
    assert len(forks) == 1


def test_a_child_that_fails_leaves_its_half_to_this_process(
    stored_call: tuple[str, EventStore, str], tmp_path: Path, forks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    _, store, call_id = stored_call
    out = io.BytesIO()
    with caplog.at_level(logging.WARNING):
        # the child cannot open this store: it exits 1 without a count
        written = write_call_json_in_halves(store, str(tmp_path / "missing.db"), call_id, out, min_events=2)
    assert written == len(store.read_call(call_id))
    assert out.getvalue() == expected_json(store, call_id)
    assert len(forks) == 1
    assert "did not finish the call's second half" in caplog.text


def test_without_a_temporary_file_one_process_writes_the_call(
    stored_call: tuple[str, EventStore, str],
    forks: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, store, call_id = stored_call

    def no_room() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(call_json_halves.tempfile, "TemporaryFile", no_room)
    with caplog.at_level(logging.WARNING):
        assert in_halves(store, url, call_id) == expected_json(store, call_id)
    assert forks == []
    assert "No space left on device" in caplog.text


def test_a_call_under_the_threshold_is_written_by_one_process(
    stored_call: tuple[str, EventStore, str], forks: list[int]
) -> None:
    url, store, call_id = stored_call
    out = io.BytesIO()
    write_call_json_in_halves(store, url, call_id, out)  # the default threshold: 10,000 events
    assert out.getvalue() == expected_json(store, call_id)
    assert forks == []


def test_callbridge_replay_json_writes_a_long_call_in_halves(
    stored_call: tuple[str, EventStore, str],
    forks: list[int],
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, store, call_id = stored_call
    expected = expected_json(store, call_id)
    monkeypatch.setattr(call_json_halves, "MIN_EVENTS", 2)
    assert main(["replay", call_id, "--json", "--store", url]) == 0
    assert capsysbinary.readouterr().out == expected
    assert len(forks) == 1
