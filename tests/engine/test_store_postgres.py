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
