"""The live feed while no browser listens: it keeps knowing the live calls and their pending tool
calls (``feed.hello`` and hand-answered tools need them) but reads nothing else — no model event is
fetched, decoded or turned into a message nobody takes. A browser that comes finds every message
from then on, even one that comes while an unwatched page is being read."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import trio
from test_projections_support import T0, normal_call

from callbridge.engine.events import ToolCallRequested
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.appends import AppendSignal
from callbridge.projections.live import STATE_EVENTS
from callbridge.web.live_feed import LiveFeed, Subscription

DEADLINE = 10  # generous: a failure, not a timing assumption
POLL_S = 0.01
"""The hub's own poll of the log (SQLite cannot tell it of appends by another writer)."""
STATE_TOPICS = {f"{kind.__name__}@{kind.schema_version}" for kind in STATE_EVENTS}


def a_call_waiting_for_a_person(call_id: str) -> CallLog:
    """Started, a turn spoken (model events), and a tool call a person has not answered yet."""
    log = CallLog(call_id, start_at=T0).start().caller_says("Can someone check my order?")
    log.events.append(
        ToolCallRequested(call_id=call_id, at=T0 + 3, tool_call_id="call_1", name="ask_a_person", arguments="{}")
    )
    return log


def decoded_topics(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every topic the store decodes from now on, counted."""
    seen: Counter[str] = Counter()
    decode = store.decode_row

    def counting(position: int, version: int, topic: str, state: bytes, **options: Any) -> Any:
        seen[topic] += 1
        return decode(position, version, topic, state, **options)

    monkeypatch.setattr(store, "decode_row", counting)
    return seen


async def messages_until(subscription: Subscription, last: Callable[[str], bool]) -> list[str]:
    taken: list[str] = []
    with trio.fail_after(DEADLINE):
        while True:
            text = await subscription.next()
            assert text is not None
            taken.append(text)
            if last(text):
                return taken


async def test_an_unwatched_feed_reads_only_what_it_must_know(
    sqlite_event_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_event_store
    feed = LiveFeed(store, wait_for_appends=AppendSignal(store).waiter(POLL_S))
    seen = decoded_topics(store, monkeypatch)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        head = await trio.to_thread.run_sync(a_call_waiting_for_a_person("CAwaiting").write, store)
        with trio.fail_after(DEADLINE):
            await feed.wait_for_position(head)
        nursery.cancel_scope.cancel()

    assert feed.projection.is_live("CAwaiting")
    assert feed.projection.is_pending("CAwaiting", "call_1")
    assert [call["pending_tool_calls"][0]["tool_call_id"] for call in feed.projection.live_calls()] == ["call_1"]
    assert seen and set(seen) <= STATE_TOPICS, seen  # no model event was even decoded


async def test_a_browser_gets_every_message_from_when_it_comes(sqlite_event_store: EventStore) -> None:
    store = sqlite_event_store
    feed = LiveFeed(store, wait_for_appends=AppendSignal(store).waiter(POLL_S))
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        before = await trio.to_thread.run_sync(normal_call("CAbefore").write, store)
        with trio.fail_after(DEADLINE):
            await feed.wait_for_position(before)
        with feed.subscribe() as subscription:
            await trio.to_thread.run_sync(normal_call("CAwatched", start_at=T0 + 60).write, store)
            taken = await messages_until(subscription, lambda text: json.loads(text)["type"] == "call.ended")
        nursery.cancel_scope.cancel()

    assert all("CAwatched" in text for text in taken)
    kinds = [json.loads(text)["type"] for text in taken]
    assert kinds[0] == "call.started" and kinds[-1] == "call.ended"
    assert "response.output_audio_transcript.done" in kinds  # model events flow again


async def test_a_browser_who_comes_while_an_unwatched_page_is_read_gets_that_pages_messages(
    sqlite_event_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = sqlite_event_store
    feed = LiveFeed(store, wait_for_appends=AppendSignal(store).waiter(POLL_S))
    opened: list[Subscription] = []
    came = trio.Event()
    read_rows = store.log_rows

    browser = feed.subscribe()  # entered from the thread reading the page; left at the end

    def a_browser_comes() -> None:
        opened.append(browser.__enter__())
        came.set()

    def rows_then_a_browser_comes(after: int, stop: int, topics: tuple[str, ...] = (), limit: int = 1000) -> Any:
        rows = read_rows(after, stop, topics, limit)
        if rows and not opened:  # the first page with events, read for nobody: a browser subscribes now
            assert set(topics) <= STATE_TOPICS
            trio.from_thread.run_sync(a_browser_comes)
        return rows

    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        monkeypatch.setattr(store, "log_rows", rows_then_a_browser_comes)
        await trio.to_thread.run_sync(normal_call("CAraced").write, store)
        with trio.fail_after(DEADLINE):
            await came.wait()
        taken = await messages_until(opened[0], lambda text: json.loads(text)["type"] == "call.ended")
        browser.__exit__(None, None, None)
        nursery.cancel_scope.cancel()

    kinds = [json.loads(text)["type"] for text in taken]
    assert kinds[0] == "call.started"  # the page read for nobody was read again for the browser
    assert "response.output_audio_transcript.done" in kinds
