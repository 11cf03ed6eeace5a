"""ReadYourWrites: the API's and MCP's "flush, then wait for the views to reach the store head",
bounded — and not waiting at all for a writer whose store is down."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import trio.testing
from test_projections_support import conversation_status, normal_call

from callbridge.engine.store import EncodedEvent, EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.freshness import ReadYourWrites
from callbridge.projections.service import ProjectionService


async def test_recorded_events_are_in_the_views_once_views_returns(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    views = tmp_path / "views.db"
    writer = EventWriter(sqlite_event_store, flush_interval=3600)  # only read-your-writes flushes
    service = ProjectionService(sqlite_event_store, views, writer=writer, poll_interval=3600)
    fresh = ReadYourWrites(sqlite_event_store, writer, service.watermark)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        await nursery.start(service.run)
        for event in normal_call().events:
            writer.record(event)
        answer = await fresh.views()
        assert answer.fresh and answer.head == len(normal_call().events)
        assert conversation_status(views, "CAnormal") == "completed"
        nursery.cancel_scope.cancel()


class DownStore(EventStore):
    def append_encoded(self, batch: Sequence[EncodedEvent]) -> int:
        raise OSError("No space left on device")

    def head(self) -> int:
        raise OSError("server closed the connection unexpectedly")


async def test_with_the_store_down_an_answer_is_stale_at_once_rather_than_late(
    sqlite_store_url: str,
    tmp_path: Path,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = DownStore(sqlite_store_url)
    writer = EventWriter(store)
    service = ProjectionService(store, tmp_path / "views.db", writer=writer, poll_interval=3600)
    fresh = ReadYourWrites(store, writer, service.watermark, timeout=2.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.record(normal_call().events[0])
        await writer.failures.wait_for(3)  # the writer knows its writes fail
        autojump_clock.autojump_threshold = math.inf  # from now on virtual time stands still: no timeout fires
        flushes: list[None] = []
        monkeypatch.setattr(writer, "flush", lambda: flushes.append(None))  # would wait out the bound
        answer = await fresh.views()
        await fresh.events()
        assert flushes == []  # a flush that can only time out is not waited for
        assert (answer.head, answer.views) == (0, 0)  # the store's head unknown: the views as they are
        assert "cannot read the head of" in caplog.text
        autojump_clock.autojump_threshold = 0  # let the writer's final flush give up
        nursery.cancel_scope.cancel()
    store.close()


async def test_views_that_do_not_catch_up_give_a_stale_answer_after_the_bound(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    writer = EventWriter(sqlite_event_store)
    service = ProjectionService(sqlite_event_store, tmp_path / "views.db", writer=writer)  # never run: views stuck
    fresh = ReadYourWrites(sqlite_event_store, writer, service.watermark, timeout=1.0)
    for event in normal_call().events:
        writer.record(event)
    with trio.fail_after(10):  # a safety net: the bound answers, the views never would
        answer = await fresh.views()
    assert not answer.fresh and (answer.head, answer.views) == (len(normal_call().events), 0)
