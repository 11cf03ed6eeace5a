"""AppendSignal: followers wake when the log grows in another process — at once on PostgreSQL
(LISTEN/NOTIFY), by polling on SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from test_projections_support import normal_call, tool_call

from callbridge.engine.store import EventStore
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
