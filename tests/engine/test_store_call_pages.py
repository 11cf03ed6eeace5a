"""``EventStore.read_call_page``: one call's events a page at a time, by log position, without
reading the rest of the call (the API's and MCP's paged event reads), on SQLite and PostgreSQL; and
``EventStore.call_pages``: one call's stored rows, undecoded, a page at a time from start to end
(``replay --json``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent

from callbridge.engine.events import CallEnded, CallStarted, DtmfReceived
from callbridge.engine.store import EventStore, RecordedEvent, call_originator_id, encode_for_store


def fill(store: EventStore) -> list[int]:
    """Two calls written interleaved (so positions of one call have gaps); CAa's positions."""
    for index in range(5):
        store.append([DtmfReceived(call_id="CAa", at=float(index), digit=str(index))])
        store.append([DtmfReceived(call_id="CAb", at=float(index), digit=str(index))])
    return [recorded.position for recorded in store.read_call("CAa")]


def pages(store: EventStore, call_id: str, limit: int) -> list[list[int]]:
    found: list[list[int]] = []
    after = 0
    while page := store.read_call_page(call_id, after=after, limit=limit):
        found.append([recorded.position for recorded in page])
        after = page[-1].position
    return found


def check_paging(store: EventStore) -> None:
    positions = fill(store)
    assert pages(store, "CAa", 2) == [positions[0:2], positions[2:4], positions[4:5]]
    assert [r.event.digit for r in store.read_call_page("CAb", after=0, limit=10)] == list("01234")  # type: ignore[attr-defined]
    assert store.read_call_page("CAa", after=positions[-1], limit=10) == []
    between = positions[2] + 1  # a position of the other call's: CAa's events after it
    assert [r.position for r in store.read_call_page("CAa", after=between, limit=10)] == positions[3:]
    assert store.read_call_page("CAnobody", limit=10) == []
    with pytest.raises(ValueError, match="limit"):
        store.read_call_page("CAa", limit=0)


def check_row_pages(store: EventStore) -> None:
    positions = fill(store)
    rows = [[row[0] for row in page] for page in store.call_pages("CAa", 2)]
    assert rows == [positions[0:2], positions[2:4], positions[4:5]]
    assert [len(page) for page in store.call_pages("CAa", 5)] == [5]  # a full last page: one more read finds none
    (page,) = store.call_pages("CAb", 10)
    assert [(version, topic) for _, version, topic, _ in page] == [(n, "DtmfReceived@1") for n in range(1, 6)]
    assert all(type(state) is bytes and state.startswith(b"{") for *_, state in page)
    assert list(store.call_pages("CAnobody")) == []
    with pytest.raises(ValueError, match="size"):
        list(store.call_pages("CAa", 0))
    # a part of the call, by version: what each process of a split replay reads
    versions = [[row[1] for row in page] for page in store.call_pages("CAa", 2, through_version=3)]
    assert versions == [[1, 2], [3]]
    assert [[row[1] for row in page] for page in store.call_pages("CAa", 2, through_version=2)] == [[1, 2]]
    assert [[row[1] for row in page] for page in store.call_pages("CAa", 2, after_version=3)] == [[4, 5]]
    assert [[row[1] for row in page] for page in store.call_pages("CAa", 10, after_version=1, through_version=4)] == [
        [2, 3, 4]
    ]
    assert list(store.call_pages("CAa", 2, after_version=5)) == []
    assert (store.last_version("CAa"), store.last_version("CAnobody")) == (5, 0)


def test_a_calls_events_page_by_position_on_sqlite(sqlite_event_store: EventStore) -> None:
    check_paging(sqlite_event_store)


def test_a_calls_rows_page_by_version_on_sqlite(sqlite_event_store: EventStore) -> None:
    check_row_pages(sqlite_event_store)


@pytest.mark.postgres
def test_a_calls_events_page_by_position_on_postgresql(postgres_store_url: str) -> None:
    store = EventStore(postgres_store_url)
    try:
        check_paging(store)
    finally:
        store.close()


@pytest.mark.postgres
def test_a_calls_rows_page_by_version_on_postgresql(postgres_store_url: str) -> None:
    store = EventStore(postgres_store_url)
    try:
        check_row_pages(store)
    finally:
        store.close()


def test_undecodable_events_are_passed_over_without_cutting_the_page_short(sqlite_event_store: EventStore) -> None:
    store = sqlite_event_store
    store.append([CallStarted(call_id="CAx", at=0.0, stream_sid="MZx")])
    oid = call_originator_id("CAx")
    ended = encode_for_store(CallEnded(call_id="CAx", at=1.0, reason="caller_hangup"))
    store.recorder.insert_events(
        [
            StoredEvent(oid, 2, "NoSuchEvent@1", b"{}"),
            StoredEvent(oid, 3, "NoSuchEvent@1", b"{}"),
            StoredEvent(oid, 4, ended.topic, ended.state),
        ]
    )
    page = store.read_call_page("CAx", after=0, limit=2)
    assert [type(r.event) for r in page] == [CallStarted, CallEnded]


def test_paging_never_skips_an_event_stored_out_of_version_order(sqlite_event_store: EventStore) -> None:
    """Were a call's versions stored out of position order, the pages follow the versions from the
    event at the cursor: none is skipped, none read twice."""
    store = sqlite_event_store
    oid = call_originator_id("CAx")
    stored = [encode_for_store(DtmfReceived(call_id="CAx", at=float(n), digit=str(n))) for n in range(1, 5)]
    order = [1, 3, 2, 4]  # version 3 is stored before version 2
    store.recorder.insert_events([StoredEvent(oid, v, stored[v - 1].topic, stored[v - 1].state) for v in order])
    digits = [[r.event.digit for r in page] for page in _event_pages(store, "CAx", 2)]  # type: ignore[attr-defined]
    assert digits == [["1", "2"], ["3", "4"]]


def _event_pages(store: EventStore, call_id: str, limit: int) -> list[list[RecordedEvent]]:
    found: list[list[RecordedEvent]] = []
    after = 0
    while page := store.read_call_page(call_id, after=after, limit=limit):
        found.append(page)
        after = page[-1].position
    return found


def test_a_state_stored_as_text_is_read_as_its_bytes(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        store.append([DtmfReceived(call_id="CAt", at=0.0, digit="1")])
        (state,) = [row[3] for page in store.call_pages("CAt") for row in page]
        db = sqlite3.connect(tmp_path / "events.db")
        db.execute("UPDATE stored_events SET state = CAST(state AS TEXT)")  # a hand-edited log
        db.commit()
        assert db.execute("SELECT typeof(state) FROM stored_events").fetchall() == [("text",)]
        db.close()
        assert [row[3] for page in store.call_pages("CAt") for row in page] == [state]
    finally:
        store.close()
