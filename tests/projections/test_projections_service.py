"""ProjectionService: follows the log while the server runs — woken by the in-process writer, by
polling for other processes, or by any ``wait_for_appends`` seam — and survives failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from test_projections_support import conversation_status, fold, normal_call, tool_call

from callbridge.engine.store import EventStore, RecordedEvent
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.conversations import ConversationsProjection
from callbridge.projections.service import ProjectionService
from callbridge.projections.views_db import open_views

DEADLINE = 10  # generous: a failure, not a timing assumption


async def test_in_process_appends_wake_the_service_at_once(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    writer = EventWriter(sqlite_event_store, flush_interval=0.01)
    # Polling is an hour: only the writer's wake-up can bring the events in within the deadline.
    service = ProjectionService(sqlite_event_store, path, writer=writer, poll_interval=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await nursery.start(service.run)
        for event in normal_call().events:
            writer.record(event)
        head = await writer.flush()
        with trio.fail_after(DEADLINE):
            await service.wait_for_position(head)
        assert service.position == head
        assert conversation_status(path, "CAnormal") == "completed"
        nursery.cancel_scope.cancel()


async def test_appends_by_other_processes_are_found_by_polling(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    service = ProjectionService(sqlite_event_store, path, poll_interval=0.02)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        head = await trio.to_thread.run_sync(tool_call().write, sqlite_event_store)
        with trio.fail_after(DEADLINE):
            await service.wait_for_position(head)
        assert conversation_status(path, "CAtool") == "completed"
        nursery.cancel_scope.cancel()


async def test_any_wait_for_appends_can_drive_the_service(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    """The seam where PostgreSQL LISTEN/NOTIFY plugs in: the service folds only when told."""
    asks_send, asks_receive = trio.open_memory_channel[int](10)
    nudge_send, nudge_receive = trio.open_memory_channel[None](0)

    async def wait_for_appends(position: int) -> None:
        await asks_send.send(position)
        await nudge_receive.receive()

    service = ProjectionService(sqlite_event_store, tmp_path / "views.db", wait_for_appends=wait_for_appends)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        with trio.fail_after(DEADLINE):
            assert await asks_receive.receive() == 0  # caught up with the empty log, now waiting
        head = await trio.to_thread.run_sync(normal_call().write, sqlite_event_store)
        assert service.position == 0  # not told yet
        with trio.fail_after(DEADLINE):
            await nudge_send.send(None)
            await service.wait_for_position(head)
            assert await asks_receive.receive() == head  # and waits for what comes after
        nursery.cancel_scope.cancel()


async def test_the_service_resumes_from_the_recorded_position(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    head = normal_call().write(sqlite_event_store)
    db = open_views(path)
    fold(sqlite_event_store, db)
    db.close()
    service = ProjectionService(sqlite_event_store, path, poll_interval=3600)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        assert service.position == head  # known before any catch-up
        with trio.fail_after(DEADLINE):
            await service.wait_for_position(head)  # returns at once
        nursery.cancel_scope.cancel()


class LockedOnce(ConversationsProjection):
    """Fails its first event like a database locked by another writer would."""

    failed = 0

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        if not LockedOnce.failed:
            LockedOnce.failed += 1
            raise sqlite3.OperationalError("database is locked")
        super().apply(db, recorded)


async def test_the_service_retries_after_a_failure(
    sqlite_event_store: EventStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "views.db"
    head = normal_call().write(sqlite_event_store)
    service = ProjectionService(
        sqlite_event_store, path, projections=[LockedOnce()], poll_interval=3600, max_backoff=0.01
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        with trio.fail_after(DEADLINE):
            await service.wait_for_position(head)
        nursery.cancel_scope.cancel()
    assert LockedOnce.failed == 1
    assert service.failures == 0
    assert "projections failed (attempt 1" in caplog.text
    assert conversation_status(path, "CAnormal") == "completed"  # nothing lost: the failed page was folded again


async def test_a_process_that_does_not_fold_reads_how_far_the_views_are_when_someone_waits(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    """``serve --workers``: worker 0 folds, the others follow the views' position table. Their poll is an
    hour here: only a waiter (read-your-writes) can make them read it within the deadline."""
    path = tmp_path / "views.db"
    writer = EventWriter(sqlite_event_store, flush_interval=0.01)
    folding = ProjectionService(sqlite_event_store, path, writer=writer, poll_interval=3600)
    following = ProjectionService(sqlite_event_store, path, poll_interval=3600, fold=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await nursery.start(folding.run)
        await nursery.start(following.run)
        for event in normal_call().events:
            writer.record(event)
        head = await writer.flush()
        with trio.fail_after(DEADLINE):
            await folding.wait_for_position(head)
            await following.wait_for_position(head)
        assert following.position == head
        nursery.cancel_scope.cancel()
