"""The event writer when the store cannot take writes: it says so, stops taking calls, bounds what it
holds, and recovers by itself once the store is fixed — on a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from store_support import read_only, store_files

from callbridge.engine.events import CallEnded, CallerAudioReceived, CallStarted
from callbridge.engine.store import EncodedEvent, EventStore
from callbridge.engine.store_writer import EventWriter, WriterLimits


def started(call_id: str, at: float = 0.0) -> CallStarted:
    return CallStarted(call_id=call_id, at=at, stream_sid=f"MZ-{call_id}")


def audio(call_id: str, at: float) -> CallerAudioReceived:
    return CallerAudioReceived(
        call_id=call_id, at=at, first_chunk=1, timestamps=[0], frame_sizes=[4000], payload=b"\xff" * 4000
    )


def existing_store(url: str) -> None:
    EventStore(url).close()


async def test_a_read_only_store_stops_the_calls_and_the_writer_recovers_once_it_is_fixed(
    sqlite_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    existing_store(sqlite_store_url)
    db = Path(sqlite_store_url)
    with read_only(*store_files(db)):
        store = EventStore(sqlite_store_url)  # opens fine: SQLite finds out at the first write
        writer = EventWriter(store)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            assert writer.accepting_calls and writer.health() == []
            writer.record(started("CA1"))
            await writer.failures.wait_for(3)
            assert not writer.accepting_calls
            assert writer.health() == ["the last 3 writes to the event store failed"]
            assert writer.stuck
            assert "readonly database" in (writer.statistics().last_error or "")
            nursery.cancel_scope.cancel()
        assert writer.pending_count == 1
    # repaired: a new writer on the same store object (its connections were opened read-only)
    writer = EventWriter(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.record(started("CA2"))
        await writer.wait_for_position(1)  # the writer reopened the store after 5 failures
        assert writer.accepting_calls and writer.statistics().consecutive_failures == 0
        nursery.cancel_scope.cancel()
    assert [r.event.call_id for r in store.read_call("CA2")] == ["CA2"]
    store.close()


async def test_pending_events_are_bounded_and_every_call_keeps_its_start_and_end(
    sqlite_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    existing_store(sqlite_store_url)
    limits = WriterLimits(max_pending_bytes=50_000)  # room for about eleven 4 kB audio chunks
    with read_only(*store_files(Path(sqlite_store_url))):
        store = EventStore(sqlite_store_url)
        writer = EventWriter(store, limits=limits)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            writer.record(started("CA1"))
            for i in range(100):
                writer.record(audio("CA1", 1.0 + i))
            writer.record(CallEnded(call_id="CA1", at=200.0, reason="caller_hangup"))
            stats = writer.statistics()
            assert stats.pending_bytes <= limits.max_pending_bytes + 1000  # the end was kept beyond the bound
            assert stats.dropped == 100 - (stats.pending - 2)
            assert stats.dropped > 80
            assert "the event writer is behind by" in " ".join(writer.health())
            assert not writer.accepting_calls
            nursery.cancel_scope.cancel()
        kept = list(writer._pending)
        assert kept[0].topic.startswith("CallStarted@") and kept[-1].topic.startswith("CallEnded@")
        store.close()


class HangingStore(EventStore):
    """A store whose next write hangs until released (a database that stopped answering)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.release = threading.Event()
        self.entered = threading.Event()
        self.writes = 0

    def append_encoded(self, batch: Sequence[EncodedEvent]) -> int:
        self.writes += 1
        self.entered.set()
        self.release.wait()
        return super().append_encoded(batch)


async def test_a_hanging_write_is_reported_abandoned_by_a_deadline_and_never_written_twice(
    sqlite_store_url: str,
) -> None:
    store = HangingStore(sqlite_store_url)
    writer = EventWriter(store, limits=WriterLimits(stall_after_s=0.05))
    writer.record(started("CA1"))
    with trio.CancelScope() as gave_up:  # a caller of flush() gives up: the write goes on in its thread
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.flush)
            await trio.to_thread.run_sync(store.entered.wait)
            gave_up.cancel()
    assert writer.pending_count == 1
    await trio.sleep(0.1)  # not a synchronisation: the write must have taken longer than stall_after_s
    assert writer.stuck
    assert any(p.startswith("a write to the event store has been in progress for") for p in writer.health())
    # shutdown: drain by a deadline, even though the write hangs
    with trio.fail_after(10):  # a safety net: drain must not wait for the hanging write
        left = await writer.drain(trio.current_time() + 0.1)
    assert left == 1
    # the store answers again: the abandoned write committed, and is not written a second time
    store.release.set()
    writer.record(started("CA2"))
    with trio.fail_after(10):
        await writer.flush()
    assert store.writes == 2  # the hung batch once, then CA2's
    assert [r.event.call_id for r in store.read_call("CA1")] == ["CA1"]
    assert writer.pending_count == 0 and writer.written_count == 2
    store.close()


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        WriterLimits(behind_events=0)
    with pytest.raises(ValueError, match="stall_after_s"):
        WriterLimits(stall_after_s=0)
