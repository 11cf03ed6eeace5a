"""The event store and its writer, on a real SQLite file."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from eventsourcing.persistence import IntegrityError, StoredEvent

from callbridge.engine.events import (
    AssistantAudioSent,
    CallEnded,
    CallerAudioReceived,
    CallStarted,
    Event,
    ToolCallCompleted,
)
from callbridge.engine.store import (
    EncodedEvent,
    EventEncodingError,
    EventStore,
    StoreClosedError,
    call_originator_id,
    store_env,
)
from callbridge.engine.store_writer import EventWriter

ALL_BYTES = bytes(range(256))


def started(call_id: str, at: float = 0.0) -> CallStarted:
    return CallStarted(call_id=call_id, at=at, stream_sid=f"MZ-{call_id}")


def ended(call_id: str, at: float) -> CallEnded:
    return CallEnded(call_id=call_id, at=at, reason="caller_hangup")


def a_call(call_id: str) -> list[Event]:
    return [
        started(call_id),
        CallerAudioReceived(
            call_id=call_id,
            at=1.0,
            first_chunk=1,
            timestamps=[0, 20],
            frame_sizes=[128, 128],
            payload=ALL_BYTES,
        ),
        AssistantAudioSent(
            call_id=call_id,
            at=2.0,
            response_id="resp_1",
            item_id="item_1",
            offset_bytes=0,
            payload=b"\x7f" * 8000,
        ),
        ToolCallCompleted(call_id=call_id, at=3.0, tool_call_id="t1", name="lookup", output="{}", duration_ms=1.5),
        ended(call_id, 4.0),
    ]


# --- the store ---------------------------------------------------------------------------------


def test_round_trip_keeps_every_event_type_and_bytes_in_order(sqlite_event_store: EventStore) -> None:
    events = a_call("CA1")
    last = sqlite_event_store.append(events)

    recorded = sqlite_event_store.read_call("CA1")

    assert [r.event for r in recorded] == events
    assert [r.version for r in recorded] == [1, 2, 3, 4, 5]
    positions = [r.position for r in recorded]
    assert positions == sorted(positions) and len(set(positions)) == 5
    assert last == positions[-1] == sqlite_event_store.head()
    assert sqlite_event_store.read_call("CA-unknown") == []


def test_versions_are_counted_per_call_when_calls_interleave(sqlite_event_store: EventStore) -> None:
    batch_1 = [started("CA1"), started("CA2"), ended("CA1", 1.0)]
    batch_2 = [ended("CA2", 2.0), started("CA3")]
    sqlite_event_store.append(batch_1)
    sqlite_event_store.append(batch_2)

    assert [(r.version, r.event) for r in sqlite_event_store.read_call("CA1")] == [
        (1, batch_1[0]),
        (2, batch_1[2]),
    ]
    assert [(r.version, r.event) for r in sqlite_event_store.read_call("CA2")] == [
        (1, batch_1[1]),
        (2, batch_2[0]),
    ]
    everything = sqlite_event_store.read_all()
    assert [r.event for r in everything] == batch_1 + batch_2
    assert [r.position for r in everything] == [1, 2, 3, 4, 5]


def test_versions_continue_after_the_store_is_reopened(sqlite_store_url: str) -> None:
    first = EventStore(sqlite_store_url)
    first.append([started("CA1"), started("CA2")])
    first.close()

    second = EventStore(sqlite_store_url)
    position = second.append([ended("CA1", 9.0)])

    assert position == 3
    assert [r.version for r in second.read_call("CA1")] == [1, 2]
    second.close()


def test_a_conflicting_append_fails_whole_and_succeeds_when_retried(sqlite_store_url: str) -> None:
    one, other = EventStore(sqlite_store_url), EventStore(sqlite_store_url)
    one.append([started("CA1")])
    other.append([ended("CA1", 1.0)])  # version 2, which `one` does not know about
    late = [CallEnded(call_id="CA1", at=2.0, reason="late"), started("CA2")]

    with pytest.raises(IntegrityError):
        one.append(late)
    assert one.read_call("CA2") == []  # nothing of the failed batch was written

    one.append(late)
    assert [(r.version, r.event) for r in one.read_call("CA1")][-1] == (3, late[0])
    assert [r.event for r in one.read_call("CA2")] == [late[1]]
    one.close()
    other.close()


def test_read_all_pages_through_positions_after_a_given_one(sqlite_event_store: EventStore) -> None:
    sqlite_event_store.append([started(f"CA{i}", at=float(i)) for i in range(25)])

    pages: list[list[int]] = []
    after = 0
    while page := sqlite_event_store.read_all(after=after, limit=10):
        pages.append([r.position for r in page])
        after = page[-1].position

    assert pages == [list(range(1, 11)), list(range(11, 21)), list(range(21, 26))]
    assert [r.position for r in sqlite_event_store.read_all(after=7, limit=3)] == [8, 9, 10]
    assert sqlite_event_store.read_all(after=25) == []
    with pytest.raises(ValueError, match="limit"):
        sqlite_event_store.read_all(limit=0)


def test_undecodable_stored_events_are_skipped_with_a_warning(
    sqlite_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = EventStore(sqlite_store_url)
    store.append([started("CA1")])
    oid = call_originator_id("CA1")
    store.recorder.insert_events(
        [
            StoredEvent(oid, 2, "NoSuchEvent@1", b"{}"),
            StoredEvent(oid, 3, "CallEnded@1", b"not json"),
        ]
    )
    store.close()
    store = EventStore(sqlite_store_url)
    store.append([ended("CA1", 5.0)])

    with caplog.at_level(logging.WARNING, logger="callbridge.engine.store"):
        assert [(r.version, r.position) for r in store.read_call("CA1")] == [(1, 1), (4, 4)]
        # a page holding only undecodable events is passed over, not returned empty
        assert [r.position for r in store.read_all(after=1, limit=2)] == [4]

    assert "NoSuchEvent@1" in caplog.text and "CallEnded@1" in caplog.text
    store.close()


def test_an_unencodable_event_is_refused_before_anything_is_written(sqlite_event_store: EventStore) -> None:
    broken = CallStarted(call_id="CA1", at=0.0, stream_sid="MZ", session_config={"x": object()})

    with pytest.raises(EventEncodingError, match="CallStarted"):
        sqlite_event_store.append([started("CA1"), broken])
    with pytest.raises(EventEncodingError, match="empty call_id"):
        sqlite_event_store.append([started("")])

    assert sqlite_event_store.head() == 0


def test_store_folder_is_created_and_description_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "log.db"
    store = EventStore(f"sqlite:///{path}")  # sqlite:/// + absolute path = sqlite:////abs

    assert path.exists()
    assert store.description == f"sqlite:{path}"
    assert store.ping()
    store.close()
    assert not store.ping()
    with pytest.raises(StoreClosedError):
        store.read_call("CA1")


async def test_an_in_memory_store_works_across_threads() -> None:
    store = EventStore("sqlite:///:memory:")
    position = store.append([started("CA1")])
    heads: list[int] = []

    async def read_head() -> None:
        heads.append(await trio.to_thread.run_sync(store.head))

    async with trio.open_nursery() as nursery:
        for _ in range(4):
            nursery.start_soon(read_head)

    assert heads == [position] * 4
    assert store.description == "sqlite::memory:"
    store.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("data/x.db", {"SQLITE_DBNAME": (Path.cwd() / "data/x.db").as_uri()}),
        ("sqlite:///data/x.db", {"SQLITE_DBNAME": (Path.cwd() / "data/x.db").as_uri()}),
        ("sqlite:////srv/cb/x.db", {"SQLITE_DBNAME": "file:///srv/cb/x.db"}),
        ("sqlite:////srv/a b.db", {"SQLITE_DBNAME": "file:///srv/a%20b.db"}),
        (
            "postgresql://cb:s%40cret@db.local:6543/calls?schema=s1&pool_size=3",
            {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_USER": "cb",
                "POSTGRES_PASSWORD": "s@cret",
                "POSTGRES_HOST": "db.local",
                "POSTGRES_PORT": "6543",
                "POSTGRES_DBNAME": "calls",
                "POSTGRES_SCHEMA": "s1",
                "POSTGRES_POOL_SIZE": "3",
            },
        ),
        ("postgres://cb@127.0.0.1/calls", {"POSTGRES_PORT": "5432", "POSTGRES_PASSWORD": ""}),
    ],
)
def test_store_env_accepts_paths_and_urls(url: str, expected: dict[str, str]) -> None:
    env = store_env(url)

    assert env["PERSISTENCE_MODULE"] in ("eventsourcing.sqlite", "eventsourcing.postgres")
    assert {key: env.get(key) for key in expected} == expected


def test_store_env_memory_url_names_a_shared_in_memory_database() -> None:
    name = store_env("sqlite:///:memory:")["SQLITE_DBNAME"]
    assert name.startswith("file:") and "mode=memory" in name and "cache=shared" in name


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("mysql://u:secret@h/db", "unsupported .* 'mysql'.*accepted"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?mode=ro", "no query"),
        ("sqlite:///", "no file"),
        ("postgresql://h/db", "user, a host and a database"),
        ("postgresql://u:secret@h/", "user, a host and a database"),
        ("postgresql://u:secret@h:port/db", "invalid port"),
        ("postgresql://u:secret@h/db?sslmode=require", "unknown postgresql URL option 'sslmode'"),
    ],
)
def test_store_env_explains_bad_urls_without_echoing_passwords(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        store_env(url)
    assert "secret" not in str(caught.value)


# --- the writer --------------------------------------------------------------------------------


class FlakyStore(EventStore):
    """An EventStore whose first ``failures`` writes raise, after telling the test."""

    def __init__(self, url: str, failures: int) -> None:
        super().__init__(url)
        self.failures = failures
        self.failed = trio.Event()

    def append_encoded(self, batch: Sequence[EncodedEvent]) -> int:
        if self.failures:
            self.failures -= 1
            trio.from_thread.run_sync(self.failed.set)
            raise OSError("disk unplugged")
        return super().append_encoded(batch)


async def test_records_from_many_tasks_are_written_in_order_in_one_batch(
    sqlite_event_store: EventStore,
) -> None:
    writer = EventWriter(sqlite_event_store)

    async def one_call(n: int) -> None:
        for i in range(10):
            writer.record(started(f"CA{n}", at=float(i)))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(one_call, n)
    assert writer.pending_count == 200
    head = await writer.flush()

    stats = writer.statistics()
    assert (stats.batches, stats.last_batch_size, stats.pending, stats.written) == (1, 200, 0, 200)
    assert head == writer.head == sqlite_event_store.head() == 200
    for n in range(20):
        recorded = sqlite_event_store.read_call(f"CA{n}")
        assert [(r.version, r.event.at) for r in recorded] == [(i + 1, float(i)) for i in range(10)]


async def test_cancelling_the_writer_flushes_everything_accepted(sqlite_store_url: str) -> None:
    store = EventStore(sqlite_store_url)
    writer = EventWriter(store, flush_interval=3600)  # the loop itself never gets to flush
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for i in range(50):
            writer.record(started("CA1", at=float(i)))
        nursery.cancel_scope.cancel()
    store.close()

    reopened = EventStore(sqlite_store_url)
    assert [r.event.at for r in reopened.read_call("CA1")] == [float(i) for i in range(50)]
    assert writer.pending_count == 0
    reopened.close()


async def test_a_failed_write_is_retried_and_loses_nothing(
    sqlite_store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(sqlite_store_url, failures=2)
    writer = EventWriter(store, flush_interval=0.01, max_backoff=0.01)
    with trio.fail_after(10):  # a safety net that turns a hang into a failure, not a timing check
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            for i in range(3):
                writer.record(started("CA1", at=float(i)))
            await store.failed.wait()
            for i in range(3, 5):  # recorded while the store is failing: queued behind the others
                writer.record(started("CA1", at=float(i)))
            await writer.flush()
            nursery.cancel_scope.cancel()

    assert [(r.version, r.event.at) for r in store.read_call("CA1")] == [(i + 1, float(i)) for i in range(5)]
    stats = writer.statistics()
    assert (stats.failed_writes, stats.consecutive_failures, stats.pending) == (2, 0, 0)
    assert stats.last_error == "OSError: disk unplugged"
    assert "failed (attempt 1" in caplog.text
    store.close()


async def test_flushes_beside_the_loop_write_each_event_once_in_order(sqlite_event_store: EventStore) -> None:
    writer = EventWriter(sqlite_event_store, flush_interval=0.01)

    async def call_that_flushes(n: int) -> None:
        for i in range(30):
            writer.record(started(f"CA{n}", at=float(i)))
            if i % 7 == 0:
                await writer.flush()
            await trio.sleep(0.003)

    with trio.fail_after(10):  # a safety net that turns a hang into a failure, not a timing check
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            async with trio.open_nursery() as calls:
                for n in range(5):
                    calls.start_soon(call_that_flushes, n)
            await writer.flush()
            nursery.cancel_scope.cancel()

    assert sqlite_event_store.head() == 150
    for n in range(5):
        assert [r.event.at for r in sqlite_event_store.read_call(f"CA{n}")] == [float(i) for i in range(30)]


async def test_a_flush_first_takes_what_the_calls_hold_for_the_next_batch(sqlite_event_store: EventStore) -> None:
    """A reader that flushes (read your writes) sees what a call held for its next batch: the hook
    runs before an explicit flush too, not only before the periodic batches."""
    writer = EventWriter(sqlite_event_store, flush_interval=3600)
    remove = writer.before_each_batch(lambda: writer.record(started("CAheld", at=1.0)))
    head = await writer.flush()
    remove()
    assert head == sqlite_event_store.head() == 1
    assert [r.event.at for r in sqlite_event_store.read_call("CAheld")] == [1.0]


async def test_waiters_wake_as_soon_as_events_are_written(sqlite_event_store: EventStore) -> None:
    writer = EventWriter(sqlite_event_store, flush_interval=0.01)
    woke: list[int] = []

    async def wait_appended() -> None:
        woke.append(await writer.wait_appended(0))

    async def wait_for_two() -> None:
        await writer.wait_for_position(2)
        woke.append(writer.head)
        nursery.cancel_scope.cancel()

    with trio.fail_after(10):  # a safety net that turns a hang into a failure, not a timing check
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_appended)
            nursery.start_soon(wait_for_two)
            await trio.testing.wait_all_tasks_blocked()
            writer.record(started("CA1"))
            await writer.flush()  # no loop running: the flush itself wakes the waiters
            await trio.testing.wait_all_tasks_blocked()
            assert woke == [1]

            await nursery.start(writer.run)
            writer.record(ended("CA1", 1.0))  # written by the loop within one interval

    assert woke == [1, 2]


async def test_a_waiter_for_some_events_sleeps_through_batches_without_them(sqlite_event_store: EventStore) -> None:
    writer = EventWriter(sqlite_event_store)
    woke: list[int] = []

    async def wait_for_an_end(after: int) -> None:
        woke.append(await writer.wait_appended(after, names=["CallEnded"]))

    with trio.fail_after(10):  # a safety net that turns a hang into a failure, not a timing check
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_an_end, 0)
            await trio.testing.wait_all_tasks_blocked()
            writer.record(started("CA1"))
            await writer.flush()  # position 1: no CallEnded in the batch
            await trio.testing.wait_all_tasks_blocked()
            assert woke == []

            writer.record(started("CA2"))
            writer.record(ended("CA1", 1.0))
            await writer.flush()  # positions 2-3: it is woken with the head
            await trio.testing.wait_all_tasks_blocked()
            assert woke == [3]

            # a reader behind a batch it wanted is woken at once; one past it waits for the next
            nursery.start_soon(wait_for_an_end, 2)
            nursery.start_soon(wait_for_an_end, 3)
            await trio.testing.wait_all_tasks_blocked()
            assert woke == [3, 3]
            writer.record(ended("CA2", 2.0))
            await writer.flush()
    assert woke == [3, 3, 4]


async def test_record_refuses_a_bad_event_at_once(sqlite_event_store: EventStore) -> None:
    writer = EventWriter(sqlite_event_store)
    with pytest.raises(EventEncodingError):
        writer.record(CallStarted(call_id="CA1", at=0.0, stream_sid="MZ", session_config={"x": object()}))
    assert writer.pending_count == 0


async def test_a_large_backlog_is_written_in_batches_of_at_most_max_batch(sqlite_event_store: EventStore) -> None:
    writer = EventWriter(sqlite_event_store, max_batch=5)
    for i in range(12):
        writer.record(started("CA1", at=float(i)))

    assert await writer.flush() == 12

    assert (writer.statistics().batches, writer.statistics().last_batch_size) == (3, 2)
    assert [r.event.at for r in sqlite_event_store.read_call("CA1")] == [float(i) for i in range(12)]
