"""Call logs and client helpers shared by the MCP tests (``test_mcp_*.py``).

Three finished calls on three days (two callers, two called numbers, one tool call, one barge-in),
written with the synthetic-log builder; and helpers that call a tool through the official ``mcp``
client and return its structured result, or its error text.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import trio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.mcp_server.data import FollowingCallData
from callbridge.mcp_server.server import CallbridgeMCP

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
TOKEN = "test-token"  # what running_bridge configures
TOOL_NAMES = {
    "list_conversations",
    "get_conversation",
    "search_conversations",
    "get_call_events",
    "get_call_timeline",
    "get_call_metrics",
}
CONTRACT_SUMMARY = {  # the fields docs/contract.md promises for every conversation
    "call_id",
    "stream_sid",
    "phone_number",
    "caller_number",
    "started_at",
    "ended_at",
    "duration_seconds",
    "message_count",
    "status",
}


def synthetic_calls() -> list[CallLog]:
    """CAweather (day 1, tool call), CAplumber (day 2, barge-in), CAhello (day 3), all finished."""
    weather = (
        CallLog("CAweather", start_at=T0, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("What's the weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temperature_c": 18})
        .assistant_says("It is eighteen degrees in Paris.")
        .end()
    )
    plumber = (
        CallLog("CAplumber", start_at=T0 + DAY, from_number="+15550100002", to_number="+15550109999")
        .start()
        .caller_says("I need a plumber for my kitchen sink")
        .assistant_says("I can book a plumber for tomorrow morning at eight or nine.", interrupted_at_ms=900)
        .caller_says("Eight is fine")
        .assistant_says("Booked for eight.")
        .end()
    )
    hello = (
        CallLog("CAhello", start_at=T0 + 2 * DAY, from_number="+15550100001", to_number="+15550108888")
        .start()
        .caller_says("Hello")
        .assistant_says("Hi, how can I help?")
        .end()
    )
    return [weather, plumber, hello]


def fill_store(store_url: str | Path, logs: list[CallLog]) -> int:
    """Write the logs to a (new or existing) store; returns the head."""
    store = EventStore(str(store_url))
    try:
        head = 0
        for log in logs:
            head = log.write(store)
        return head
    finally:
        store.close()


@asynccontextmanager
async def mcp_over(tmp_path: Path, logs: list[CallLog]) -> AsyncIterator[tuple[Client, str]]:
    """The official client connected in process to an MCP server over a new store holding ``logs``
    (folded into the server's own views, as ``callbridge mcp`` does); and the store's URL."""
    store_url = str(tmp_path / "data" / "callbridge.db")
    fill_store(store_url, logs)
    store = EventStore(store_url)
    try:
        async with trio.open_nursery() as nursery:
            data = FollowingCallData(store, tmp_path / "data" / "views-mcp.db")
            await nursery.start(data.run)
            async with Client(CallbridgeMCP(data)) as client:
                yield client, store_url
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def structured(client: Client, name: str, arguments: dict[str, Any] | None = None) -> Any:
    """Call a tool that must succeed; its structured result."""
    result = await client.call_tool(name, arguments or {})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def tool_error(client: Client, name: str, arguments: dict[str, Any]) -> str:
    """Call a tool that must fail; the error text the assistant would read."""
    result = await client.call_tool(name, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is None
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call_ids(client: Client, **arguments: Any) -> list[str]:
    listed = await structured(client, "list_conversations", arguments)
    return [c["call_id"] for c in listed["conversations"]]


@asynccontextmanager
async def mcp_client(url: str, headers: dict[str, str] | None = None, **client: Any) -> AsyncIterator[Client]:
    """The official MCP client over streamable HTTP at ``url``."""
    async with httpx2.AsyncClient(headers=headers or {}, timeout=20) as http:
        async with Client(streamable_http_client(url, http_client=http), **client) as mcp:
            yield mcp
