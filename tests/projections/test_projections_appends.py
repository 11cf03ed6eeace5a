"""AppendSignal: followers wake when the log grows in another process — at once on PostgreSQL
(LISTEN/NOTIFY), by polling on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from test_projections_support import normal_call, tool_call

from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.appends import AppendSignal
from callbridge.projections.service import ProjectionService
from callbridge.web.live_feed import LiveFeed

DEADLINE = 10  # generous: a failure, not a timing assumption
AN_HOUR = 3600.0


@pytest.mark.postgres
async def test_another_processs_append_wakes_the_views_and_the_feed_through_notify(
    postgres_store_url: str, tmp_path: Path
) -> None:
    here, elsewhere = EventStore(postgres_store_url), EventStore(postgres_store_url)  # two engines, one log
    try:
        signal = AppendSignal(here)
        # Polling is an hour: only a NOTIFY can bring the other engine's events in within the deadline.
        service = ProjectionService(here, tmp_path / "views.db", wait_for_appends=signal.waiter(AN_HOUR))
        feed = LiveFeed(here, wait_for_appends=signal.waiter(AN_HOUR))
        async with trio.open_nursery() as nursery:
            await nursery.start(signal.run)
            await nursery.start(service.run)
            await nursery.start(feed.run)
            with feed.subscribe() as subscription:
                head = await trio.to_thread.run_sync(normal_call().write, elsewhere)
                with trio.fail_after(DEADLINE):
                    await service.wait_for_position(head)
                    await feed.wait_for_position(head)
                    first = await subscription.next()
            assert signal.notifications >= 1
            assert first is not None and "CAnormal" in first
            nursery.cancel_scope.cancel()
    finally:
        here.close()
        elsewhere.close()


async def test_on_sqlite_the_signal_has_nothing_to_listen_to_and_followers_poll(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    signal = AppendSignal(sqlite_event_store)
    service = ProjectionService(sqlite_event_store, tmp_path / "views.db", wait_for_appends=signal.waiter(0.02))
    async with trio.open_nursery() as nursery:
        await nursery.start(signal.run)  # returns at once: SQLite cannot push
        await nursery.start(service.run)
        head = await trio.to_thread.run_sync(tool_call().write, sqlite_event_store)
        with trio.fail_after(DEADLINE):
            await service.wait_for_position(head)
        assert signal.notifications == 0
        nursery.cancel_scope.cancel()


async def another_processs_append_wakes_the_followers(
    url: str, views: Path, *, poll_interval: float, interval: float = 0.5
) -> AppendSignal:
    """A server's followers (a follower of operator commands, waiting for those names only, and the
    views, waiting for anything) wait on its writer, without timeouts of their own, until a process
    with a store of its own (``elsewhere``) appends a call with no command in it. Returns the signal
    that woke them."""
    here, elsewhere = EventStore(url), EventStore(url)
    writer = EventWriter(here)
    signal = AppendSignal(here, writer, poll_interval=poll_interval)
    try:
        wait_for_commands = signal.waiter(interval, names=["CallCommandIssued"])
        service = ProjectionService(here, views, writer=writer, wait_for_appends=signal.waiter(interval))
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await nursery.start(signal.run)
            await nursery.start(service.run)
            woken = trio.Event()

            async def follow_commands() -> None:
                await wait_for_commands(await writer.flush())
                woken.set()

            nursery.start_soon(follow_commands)
            await trio.testing.wait_all_tasks_blocked()
            assert signal.polling and not woken.is_set()
            head = await trio.to_thread.run_sync(normal_call().write, elsewhere)  # no command among them
            with trio.fail_after(DEADLINE):
                await woken.wait()  # what another process appended is not known by name: it wakes
                await service.wait_for_position(head)
            nursery.cancel_scope.cancel()
    finally:
        here.close()
        elsewhere.close()
    return signal


async def test_on_sqlite_one_poll_of_the_head_wakes_every_follower_of_another_processs_appends(
    tmp_path: Path,
) -> None:
    """The signal's one poll of the head wakes the followers when another process appends."""
    signal = await another_processs_append_wakes_the_followers(
        str(tmp_path / "callbridge.db"), tmp_path / "views.db", poll_interval=0.05
    )
    assert signal.notifications == 0  # SQLite cannot push: the poll found it


async def test_a_poll_does_not_wake_those_who_wait_for_this_writers_own_batches_of_some_names(
    tmp_path: Path,
) -> None:
    """``wait_appended(names=…)`` without ``polls`` keeps its word: only a batch of this writer's holding
    one of the names (tests and read-your-writes rely on it)."""
    store = EventStore(str(tmp_path / "callbridge.db"))
    writer = EventWriter(store)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            start = await writer.flush()
            exact, polled = trio.Event(), trio.Event()

            async def wait(polls: bool, done: trio.Event) -> None:
                await writer.wait_appended(start, ["CallCommandIssued"], polls=polls)
                done.set()

            nursery.start_soon(wait, False, exact)
            nursery.start_soon(wait, True, polled)
            await trio.testing.wait_all_tasks_blocked()
            writer.note_head(start + 5)
            await trio.testing.wait_all_tasks_blocked()
            assert polled.is_set() and not exact.is_set()
            nursery.cancel_scope.cancel()
    finally:
        store.close()


@pytest.mark.postgres
async def test_on_postgresql_with_a_writer_one_read_of_the_head_per_notify_wakes_the_followers(
    postgres_store_url: str, tmp_path: Path
) -> None:
    """The followers wait on the writer, as on SQLite: at each NOTIFY the signal reads the head once for
    all of them. Polling is an hour, so only a NOTIFY can bring another engine's events in."""
    signal = await another_processs_append_wakes_the_followers(
        postgres_store_url, tmp_path / "views.db", poll_interval=AN_HOUR, interval=AN_HOUR
    )
    assert signal.notifications >= 1


async def test_a_head_holding_only_this_writers_own_batches_wakes_no_follower_of_other_names(
    tmp_path: Path,
) -> None:
    """On PostgreSQL a NOTIFY follows this writer's own inserts too. The head read after it then holds
    nothing that is not known by name, and a follower of rare events must not wake for the audio this
    writer wrote (ten batches a second); another process's append between two of this writer's
    batches must still wake it."""
    path = str(tmp_path / "callbridge.db")
    store, elsewhere = EventStore(path), EventStore(path)
    writer = EventWriter(store)

    def record(call_id: str) -> None:
        for event in normal_call(call_id).events:
            writer.record(event)

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            start = await writer.flush()
            woken = trio.Event()

            async def follow_commands() -> None:
                await writer.wait_appended(start, ["CallCommandIssued"], polls=True)
                woken.set()

            nursery.start_soon(follow_commands)
            record("CAours1")
            writer.note_head(await writer.flush())
            record("CAours2")
            writer.note_head(await writer.flush())
            await trio.testing.wait_all_tasks_blocked()
            assert not woken.is_set()

            await trio.to_thread.run_sync(normal_call("CAtheirs").write, elsewhere)
            record("CAours3")  # after theirs: the head is this writer's again, but not all of it
            writer.note_head(await writer.flush())
            with trio.fail_after(DEADLINE):
                await woken.wait()
            nursery.cancel_scope.cancel()
    finally:
        store.close()
        elsewhere.close()
