"""The same event store on PostgreSQL (127.0.0.1:5432, database ``test``, user ``postgres``).

Each test gets a schema of its own (see ``postgres_store_url`` in conftest.py), dropped afterwards.
Skipped when PostgreSQL is unreachable, failed instead under ``CI=true``.
"""

from __future__ import annotations

import pytest
import trio

from callbridge.engine.events import (
    CallEnded,
    CallerAudioReceived,
    CallStarted,
    Event,
    ToolCallRequested,
)
from callbridge.engine.store import EventStore
from callbridge.engine.store_postgres_recorder import BinaryInsertRecorder
from callbridge.engine.store_writer import EventWriter

pytestmark = pytest.mark.postgres


def a_call(call_id: str) -> list[Event]:
    return [
        CallStarted(call_id=call_id, at=0.0, stream_sid="MZ1", session_config={"voice": "alloy"}),
        CallerAudioReceived(
            call_id=call_id, at=1.0, first_chunk=1, timestamps=[0], frame_sizes=[256], payload=bytes(range(256))
        ),
        ToolCallRequested(call_id=call_id, at=2.0, tool_call_id="t1", name="lookup", arguments='{"q": 1}'),
        CallEnded(call_id=call_id, at=3.0, reason="caller_hangup"),
    ]


def test_round_trip_with_versions_positions_and_paging(postgres_store_url: str) -> None:
    store = EventStore(postgres_store_url)
    first, second = a_call("CA1"), a_call("CA2")
    interleaved = [e for pair in zip(first, second, strict=True) for e in pair]

    last = store.append(interleaved)

    recorded = store.read_call("CA1")
    assert [r.event for r in recorded] == first
    assert [r.version for r in recorded] == [1, 2, 3, 4]
    everything = store.read_all()
    assert [r.event for r in everything] == interleaved
    positions = [r.position for r in everything]
    assert positions == sorted(positions) and last == positions[-1] == store.head()
    assert [r.position for r in store.read_call("CA2")] == positions[1::2]
    assert [r.event for r in store.read_all(after=positions[2], limit=2)] == interleaved[3:5]
    assert store.ping()
    store.close()


def test_versions_continue_after_reopening_and_the_password_stays_hidden(postgres_store_url: str) -> None:
    url = postgres_store_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores it
    store = EventStore(url)
    store.append(a_call("CA1")[:2])
    store.close()

    reopened = EventStore(url)
    reopened.append(a_call("CA1")[2:])

    assert [r.version for r in reopened.read_call("CA1")] == [1, 2, 3, 4]
    assert "hunter2" not in reopened.description
    assert reopened.description.startswith("postgresql://postgres@127.0.0.1:5432/test?schema=cb_test_")
    reopened.close()


def test_a_store_reopened_in_place_seals_new_calls_with_the_keys_beside_it(postgres_store_url: str) -> None:
    """The writer reopens the store after failed writes (PostgreSQL restarted): the key store, which
    shares the store's connections, follows, so a call begun after it still gets its key."""
    store = EventStore(postgres_store_url)
    store.append(a_call("CA1"))
    store.reopen()
    store.append(a_call("CA2"))  # a new call: a new key, made through the new connections
    assert [r.event for r in store.read_call("CA2")] == a_call("CA2")
    assert [r.event for r in store.read_call("CA1")] == a_call("CA1")
    store.close()


async def test_the_writer_flushes_on_cancellation(postgres_store_url: str) -> None:
    store = EventStore(postgres_store_url)
    writer = EventWriter(store, flush_interval=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for event in a_call("CA1"):
            writer.record(event)
        nursery.cancel_scope.cancel()
    store.close()

    reopened = EventStore(postgres_store_url)
    assert [r.event for r in reopened.read_call("CA1")] == a_call("CA1")
    reopened.close()


def test_batches_are_inserted_with_binary_values_as_the_same_rows_in_the_same_order(postgres_store_url: str) -> None:
    """The library dumps its composite array as text in Python (slow, holding the GIL from the media
    loop); the store's recorder (the library's, built from the store URL) sends four arrays in binary.
    Every byte of a state (quotes, backslashes, commas, NUL), a topic and a version must come back as
    written, in order, at consecutive positions, and the NOTIFY that wakes other engines must still
    be sent."""
    from psycopg.sql import SQL, Identifier

    store = EventStore(postgres_store_url)
    try:
        with store.connections() as opening:
            recorder = opening.recorder
            assert isinstance(recorder, BinaryInsertRecorder)
            channel = recorder.channel_name  # type: ignore[attr-defined]
            datastore = recorder.datastore  # type: ignore[attr-defined]
        awkward = bytes(range(256)) + b'",\\() {}\x00' * 500
        batch: list[Event] = []
        for n in range(1, 60):
            batch += [
                CallerAudioReceived(
                    call_id=f"CA{n % 3}",
                    at=float(n),
                    first_chunk=n,
                    timestamps=[0],
                    frame_sizes=[len(awkward) - n],
                    payload=awkward[n:],
                ),
                ToolCallRequested(
                    call_id=f"CA{n % 3}",
                    at=n + 0.5,
                    tool_call_id=f"t{n}",
                    name="look up",
                    arguments='{"q": "a \\"quoted\\", (odd) {text}"}',
                ),
            ]
        with datastore.get_connection() as listener:
            listener.execute(SQL("LISTEN {0}").format(Identifier(channel)))
            before = store.head()
            last = store.append(batch)
            notified = list(listener.notifies(timeout=5, stop_after=1))
        assert notified, "no NOTIFY after an insert: other engines would not wake"
        everything = store.read_all(after=before)
        assert [r.event for r in everything] == batch
        assert [r.position for r in everything] == list(range(before + 1, last + 1))
        assert [r.version for r in store.read_call("CA1")] == list(range(1, 41))
    finally:
        store.close()


def test_processes_opening_a_new_store_together_take_turns_creating_it(postgres_store_url: str) -> None:
    """``serve``'s workers open the store as they start, together; on a new database the library's
    creation (its ``CREATE OR REPLACE FUNCTION`` runs at every opening) then failed one of them with
    "tuple concurrently updated" and the server stopped. Eight openings at once must all succeed."""
    import threading

    start = threading.Barrier(8)
    opened: list[EventStore] = []
    failed: list[BaseException] = []

    def open_store() -> None:
        start.wait()
        try:
            opened.append(EventStore(postgres_store_url))
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert failed == [] and len(opened) == 8
        opened[0].append(a_call("CA1"))
        assert [r.version for r in opened[-1].read_call("CA1")] == [1, 2, 3, 4]
    finally:
        for store in opened:
            store.close()
