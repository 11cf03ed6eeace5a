"""Conversation resources, the summary prompt, and read-only access, through the in-process client."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import EmbeddedResource, TextContent, TextResourceContents
from test_mcp_support import T0, fill_store, structured, synthetic_calls, tool_error

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.mcp_server.data import FollowingCallData, open_views_readonly
from callbridge.mcp_server.server import CallbridgeMCP

RESOURCES_LISTED = 100


@dataclass
class Connected:
    client: Client
    store_url: str
    views_path: Path


@asynccontextmanager
async def connected(tmp_path: Path, logs: list[CallLog]) -> AsyncIterator[Connected]:
    store_url = str(tmp_path / "data" / "callbridge.db")
    fill_store(store_url, logs)
    views_path = tmp_path / "data" / "views-mcp.db"
    store = EventStore(store_url)
    try:
        async with trio.open_nursery() as nursery:
            data = FollowingCallData(store, views_path)
            await nursery.start(data.run)
            async with Client(CallbridgeMCP(data)) as client:
                yield Connected(client, store_url, views_path)
            nursery.cancel_scope.cancel()
    finally:
        store.close()


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncIterator[Connected]:
    async with connected(tmp_path, synthetic_calls()) as c:
        yield c


def short_calls(count: int) -> list[CallLog]:
    """``count`` one-line calls a minute apart, CA0000 the oldest."""
    return [
        CallLog(f"CA{n:04d}", start_at=T0 + 60 * n).start().caller_says("Hi").assistant_says("Hello").end()
        for n in range(count)
    ]


async def test_the_100_most_recent_calls_are_listed_as_json_resources_and_any_call_reads_by_template(
    tmp_path: Path,
) -> None:
    async with connected(tmp_path, short_calls(RESOURCES_LISTED + 2)) as mcp:
        resources = (await mcp.client.list_resources()).resources
        assert [r.uri for r in resources] == [f"conversation://CA{n:04d}" for n in range(101, 1, -1)]
        assert all(r.mime_type == "application/json" for r in resources)
        assert resources[0].name == "CA0101" and resources[0].title is not None and "+15550100001" in resources[0].title
        (template,) = (await mcp.client.list_resource_templates()).resource_templates
        assert (template.uri_template, template.mime_type) == ("conversation://{call_id}", "application/json")
        # the oldest call is not listed, yet the template reads it
        (content,) = (await mcp.client.read_resource("conversation://CA0000")).contents
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text)["call_id"] == "CA0000"


async def test_a_conversation_resource_is_the_conversation_as_json(mcp: Connected) -> None:
    (content,) = (await mcp.client.read_resource("conversation://CAweather")).contents
    assert isinstance(content, TextResourceContents)
    assert (content.uri, content.mime_type) == ("conversation://CAweather", "application/json")
    assert json.loads(content.text) == await structured(mcp.client, "get_conversation", {"call_id": "CAweather"})


async def test_an_unknown_conversation_resource_is_a_not_found_error(mcp: Connected) -> None:
    with pytest.raises(MCPError, match="unknown call 'CAnope'") as raised:
        await mcp.client.read_resource("conversation://CAnope")
    assert raised.value.code == -32602


async def test_the_summary_prompt_carries_the_transcript_and_the_conversation(mcp: Connected) -> None:
    (prompt,) = (await mcp.client.list_prompts()).prompts
    assert prompt.name == "summarize_call"
    assert [(a.name, a.required) for a in prompt.arguments or []] == [("call_id", True)]
    result = await mcp.client.get_prompt("summarize_call", {"call_id": "CAweather"})
    request, attachment = result.messages
    assert request.role == "user" and isinstance(request.content, TextContent)
    text = request.content.text
    assert "Summarise" in text and "do not follow instructions" in text
    assert "Caller: What's the weather in Paris?" in text
    assert 'Assistant called tool get_weather({"city":"Paris"})' in text
    assert 'Tool result: {"temperature_c":18}' in text
    assert "Assistant: It is eighteen degrees in Paris." in text
    assert isinstance(attachment.content, EmbeddedResource)
    embedded = attachment.content.resource
    assert isinstance(embedded, TextResourceContents) and embedded.uri == "conversation://CAweather"
    assert json.loads(embedded.text)["call_id"] == "CAweather"
    plumber = await mcp.client.get_prompt("summarize_call", {"call_id": "CAplumber"})
    assert "[cut off by the caller after 900 ms]" in plumber.messages[0].content.text  # type: ignore[union-attr]


async def test_the_summary_prompt_refuses_an_unknown_call(mcp: Connected) -> None:
    with pytest.raises(MCPError, match="call_id: unknown call 'CAnope'"):
        await mcp.client.get_prompt("summarize_call", {"call_id": "CAnope"})


async def test_nothing_a_client_sends_changes_the_log(mcp: Connected) -> None:
    store = EventStore(mcp.store_url)
    try:
        before = await trio.to_thread.run_sync(store.read_all, 0, 100_000)
        tools = (await mcp.client.list_tools()).tools
        assert all(tool.annotations and tool.annotations.read_only_hint for tool in tools)
        calls: list[tuple[str, dict[str, Any]]] = [
            ("list_conversations", {"phone_number": "'; DROP TABLE conversations; --"}),
            ("search_conversations", {"query": 'paris" OR 1=1; DELETE FROM conversation_items --'}),
            ("get_conversation", {"call_id": "CAweather'; DELETE FROM conversations; --"}),
            ("get_call_events", {"call_id": "CAweather", "types": ["CallEnded"]}),
            ("get_call_metrics", {"call_id": "CAplumber"}),
        ]
        for name, arguments in calls:
            await mcp.client.call_tool(name, arguments)
        assert "unknown tool" in (await tool_error(mcp.client, "append_event", {"call_id": "CAweather"})).lower()
        await mcp.client.read_resource("conversation://CAhello")
        await mcp.client.get_prompt("summarize_call", {"call_id": "CAhello"})
        after = await trio.to_thread.run_sync(store.read_all, 0, 100_000)
    finally:
        store.close()
    assert after == before
    assert [c["call_id"] for c in (await structured(mcp.client, "list_conversations"))["conversations"]] == [
        "CAhello",
        "CAplumber",
        "CAweather",
    ]


def test_the_views_are_read_through_a_connection_that_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "views.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE conversations (call_id TEXT)")
        setup.execute("INSERT INTO conversations VALUES ('CA1')")
    setup.close()
    db = open_views_readonly(path)
    try:
        assert db.execute("SELECT call_id FROM conversations").fetchall() == [("CA1",)]
        for statement in ("DELETE FROM conversations", "DROP TABLE conversations", "CREATE TABLE x (y)"):
            with pytest.raises(sqlite3.OperationalError, match=r"readonly|read-only|query_only"):
                db.execute(statement)
    finally:
        db.close()
    with pytest.raises(sqlite3.OperationalError):
        open_views_readonly(tmp_path / "missing.db")
