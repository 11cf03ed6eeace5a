"""The MCP tools, through the official client connected in process to the server.

The store is filled with synthetic calls; the server folds it into views of its own (as
``callbridge mcp`` does) and every answer is the structured result an assistant receives.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
from mcp import Client
from test_mcp_support import (
    CONTRACT_SUMMARY,
    DAY,
    T0,
    TOOL_NAMES,
    call_ids,
    mcp_over,
    structured,
    synthetic_calls,
    tool_error,
)

from callbridge.engine.events import CallerAudioReceived
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.replay_cli import replay_cli


@dataclass
class Connected:
    client: Client
    store_url: str
    logs: dict[str, CallLog]


@pytest.fixture
async def mcp(tmp_path: Path) -> AsyncIterator[Connected]:
    logs = synthetic_calls()
    async with mcp_over(tmp_path, logs) as (client, store_url):
        yield Connected(client, store_url, {log.call_id: log for log in logs})


async def test_the_six_tools_are_listed_read_only_with_input_and_output_schemas(mcp: Connected) -> None:
    tools = (await mcp.client.list_tools()).tools
    assert {tool.name for tool in tools} == TOOL_NAMES
    for tool in tools:
        assert tool.annotations is not None and tool.annotations.read_only_hint is True, tool.name
        assert tool.annotations.destructive_hint is False
        assert tool.description and tool.output_schema is not None and tool.output_schema["type"] == "object"
    schemas = {tool.name: tool.input_schema for tool in tools}
    assert set(schemas["list_conversations"]["properties"]) == {
        "phone_number",
        "caller_number",
        "since",
        "until",
        "limit",
    }
    assert schemas["get_conversation"]["required"] == ["call_id"]
    assert schemas["search_conversations"]["required"] == ["query"]
    assert set(schemas["get_call_events"]["properties"]) == {"call_id", "types", "include_audio", "after", "limit"}
    assert schemas["get_call_timeline"]["required"] == ["call_id"]
    assert set(schemas["get_call_metrics"]["properties"]) == {"call_id", "since", "until"}


# --- conversations -----------------------------------------------------------------------------


async def test_conversations_are_listed_newest_first_with_the_contract_fields(mcp: Connected) -> None:
    listed = (await structured(mcp.client, "list_conversations"))["conversations"]
    assert [c["call_id"] for c in listed] == ["CAhello", "CAplumber", "CAweather"]
    assert all(CONTRACT_SUMMARY <= set(c) for c in listed)
    weather = listed[-1]
    assert weather["started_at"] == "2026-01-01T00:00:00.000Z" and weather["ended_at"].endswith("Z")
    assert (weather["phone_number"], weather["caller_number"]) == ("+15550109999", "+15550100001")
    assert (weather["status"], weather["message_count"]) == ("completed", 2)


async def test_conversations_filter_by_number_and_time_and_honour_the_limit(mcp: Connected) -> None:
    assert await call_ids(mcp.client, phone_number="+15550109999") == ["CAplumber", "CAweather"]
    assert await call_ids(mcp.client, caller_number="+15550100001") == ["CAhello", "CAweather"]
    assert await call_ids(mcp.client, since="2026-01-02", until="2026-01-03") == ["CAplumber"]
    assert await call_ids(mcp.client, since=T0 + 2 * DAY) == ["CAhello"]  # Unix seconds work too
    assert await call_ids(mcp.client, until="2026-01-01T00:00:00Z") == []
    assert await call_ids(mcp.client, limit=2) == ["CAhello", "CAplumber"]


async def test_a_conversation_has_its_transcript_tool_call_and_barge_in_in_order(mcp: Connected) -> None:
    weather = await structured(mcp.client, "get_conversation", {"call_id": "CAweather"})
    assert CONTRACT_SUMMARY <= set(weather)
    items = weather["items"]
    assert [(i["type"], i["role"]) for i in items] == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
    ]
    assert items[0]["text"] == "What's the weather in Paris?"
    assert (items[1]["name"], items[1]["arguments"]) == ("get_weather", '{"city":"Paris"}')
    assert items[2]["output"] == '{"temperature_c":18}'
    assert items[3]["text"] == "It is eighteen degrees in Paris."
    plumber = await structured(mcp.client, "get_conversation", {"call_id": "CAplumber"})
    cut = [item for item in plumber["items"] if item["truncated_at_ms"] is not None]
    assert [(item["role"], item["truncated_at_ms"]) for item in cut] == [("assistant", 900)]


async def test_search_finds_calls_by_the_words_said_with_marked_snippets(mcp: Connected) -> None:
    found = await structured(mcp.client, "search_conversations", {"query": "plumber kitchen"})
    assert found["query"] == "plumber kitchen"
    assert [hit["call_id"] for hit in found["results"]] == ["CAplumber"]
    (match,) = found["results"][0]["matches"]
    assert match["role"] == "user" and "**plumber**" in match["snippet"] and "**kitchen**" in match["snippet"]
    assert [
        hit["call_id"] for hit in (await structured(mcp.client, "search_conversations", {"query": "Par*"}))["results"]
    ] == ["CAweather"]
    assert (await structured(mcp.client, "search_conversations", {"query": "submarine"}))["results"] == []
    assert "query:" in await tool_error(mcp.client, "search_conversations", {"query": " ?! "})


# --- events ------------------------------------------------------------------------------------


async def test_a_calls_events_are_its_stored_log_in_order_with_audio_left_out_unless_asked(mcp: Connected) -> None:
    log = mcp.logs["CAhello"]
    found = await structured(mcp.client, "get_call_events", {"call_id": "CAhello", "limit": 10_000})
    events = found["events"]
    assert found["call_id"] == "CAhello" and found["more"] is False and found["next_after"] is None
    assert [e["type"] for e in events] == [type(e).__name__ for e in log.events]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    started = events[1]  # after /twiml's routing decision
    assert started["at"] == "2026-01-03T00:00:00.000000Z" and started["data"]["from_number"] == "+15550100001"
    audio = next(e for e in events if e["type"] == "CallerAudioReceived")
    original = next(e for e in log.events if isinstance(e, CallerAudioReceived))
    assert audio["data"]["payload"] == {"omitted_bytes": len(original.payload)}

    with_audio = await structured(
        mcp.client, "get_call_events", {"call_id": "CAhello", "types": ["CallerAudioReceived"], "include_audio": True}
    )
    assert base64.b64decode(with_audio["events"][0]["data"]["payload"]) == original.payload


async def test_call_events_filter_by_type_and_page_by_position(mcp: Connected) -> None:
    only = await structured(
        mcp.client,
        "get_call_events",
        {"call_id": "CAweather", "types": ["CallStarted", "ToolCallRequested", "CallEnded"]},
    )
    assert [e["type"] for e in only["events"]] == ["CallStarted", "ToolCallRequested", "CallEnded"]
    assert only["events"][1]["data"]["name"] == "get_weather"

    pages: list[dict[str, Any]] = []
    after: int | None = 0
    while after is not None:
        page = await structured(mcp.client, "get_call_events", {"call_id": "CAweather", "after": after, "limit": 7})
        pages.extend(page["events"])
        after = page["next_after"]
        assert page["more"] is (after is not None)
        if after is not None:
            assert len(page["events"]) == 7 and after == page["events"][-1]["position"]
    assert [e["type"] for e in pages] == [type(e).__name__ for e in mcp.logs["CAweather"].events]
    # a type filter pages too: the next page starts after the last event of that type returned
    first = await structured(
        mcp.client, "get_call_events", {"call_id": "CAweather", "types": ["ModelEventReceived"], "limit": 2}
    )
    second = await structured(
        mcp.client,
        "get_call_events",
        {"call_id": "CAweather", "types": ["ModelEventReceived"], "limit": 2, "after": first["next_after"]},
    )
    assert first["next_after"] == first["events"][-1]["position"] < second["events"][0]["position"]


async def test_each_result_is_its_structured_content_and_that_json_once_as_compact_text(mcp: Connected) -> None:
    result = await mcp.client.call_tool("get_call_events", {"call_id": "CAhello", "limit": 10_000})
    (block,) = result.content
    text = getattr(block, "text", "")
    assert json.loads(text) == result.structured_content
    assert "\n" not in text and text.startswith('{"call_id":')  # compact, not the SDK's indented copy


# --- the timeline ------------------------------------------------------------------------------


async def test_the_timeline_is_what_callbridge_replay_prints(mcp: Connected) -> None:
    result = await mcp.client.call_tool("get_call_timeline", {"call_id": "CAplumber"})
    assert not result.is_error
    printed = io.StringIO()
    assert replay_cli(mcp.store_url, "CAplumber", wav=None, as_json=False, out=printed) == 0
    (block,) = result.content
    assert getattr(block, "text", "") == printed.getvalue()
    timeline = result.structured_content
    assert timeline is not None and timeline["call_id"] == "CAplumber"
    lines = [f"{e['clock']}  {e['kind']:<10} {e['summary']}" for e in timeline["entries"]]
    assert lines == printed.getvalue().splitlines()
    assert "barge_in" in [e["kind"] for e in timeline["entries"]]
    assert "call_id: unknown call 'CAnope'" in await tool_error(mcp.client, "get_call_timeline", {"call_id": "CAnope"})


# --- metrics -----------------------------------------------------------------------------------


async def test_metrics_of_one_call_and_of_a_period(mcp: Connected) -> None:
    plumber = await structured(mcp.client, "get_call_metrics", {"call_id": "CAplumber"})
    assert plumber["period"] is None
    call = plumber["call"]
    assert (call["call_id"], call["status"], call["barge_ins"], call["truncations"]) == ("CAplumber", "completed", 1, 1)
    assert [turn["truncated"] for turn in call["turns"]] == [True, False]
    assert call["tokens"]["input_text"] > 0 and call["cost_usd"] > 0
    weather = (await structured(mcp.client, "get_call_metrics", {"call_id": "CAweather"}))["call"]
    assert [(tool["name"], tool["outcome"]) for tool in weather["tools"]] == [("get_weather", "completed")]

    everything = await structured(mcp.client, "get_call_metrics")
    assert everything["call"] is None
    assert everything["period"]["calls"] == {"total": 3, "in_progress": 0, "completed": 3, "failed": 0}
    assert everything["period"]["truncations"] == 1 and everything["period"]["tool_calls"]["completed"] == 1
    later = (await structured(mcp.client, "get_call_metrics", {"since": "2026-01-02T00:00:00Z"}))["period"]
    assert later["since"] == "2026-01-02T00:00:00.000Z" and later["calls"]["total"] == 2


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["get_conversation", "get_call_events", "get_call_metrics"])
async def test_an_unknown_call_id_is_a_tool_error_naming_it(mcp: Connected, tool: str) -> None:
    text = await tool_error(mcp.client, tool, {"call_id": "CAnope"})
    assert "call_id: unknown call 'CAnope'" in text


@pytest.mark.parametrize(
    ("tool", "arguments", "param"),
    [
        ("list_conversations", {"since": "yesterday"}, "since"),
        ("list_conversations", {"until": "2026-13-45"}, "until"),
        ("list_conversations", {"limit": 0}, "limit"),
        ("get_call_metrics", {"since": "soon"}, "since"),
        ("get_call_metrics", {"until": "1 January"}, "until"),
        ("get_call_metrics", {"call_id": "CAweather", "since": "2026-01-01"}, "call_id"),
        ("get_call_events", {"call_id": "CAweather", "types": ["CallStarted", "Nonsense"]}, "types"),
        ("get_call_events", {"call_id": "CAweather", "limit": 0}, "limit"),
        ("search_conversations", {"query": "paris", "limit": 5000}, "limit"),
    ],
)
async def test_a_bad_parameter_is_a_tool_error_naming_it(
    mcp: Connected, tool: str, arguments: dict[str, Any], param: str
) -> None:
    text = await tool_error(mcp.client, tool, arguments)
    assert f"{param}:" in text
    if param == "types":
        assert "'Nonsense'" in text and "CallStarted" in text.split("known types:")[1]


async def test_a_call_in_progress_is_listed_as_soon_as_it_is_stored_and_completed_when_it_ends(
    mcp: Connected,
) -> None:
    live = CallLog("CAlive", start_at=T0 + 3 * DAY).start().caller_says("Is anyone there?")
    writer = EventStore(mcp.store_url)  # as another process would write the shared log
    try:
        writer.append(live.events)
        with trio.fail_after(1):
            listed = (await structured(mcp.client, "list_conversations", {"limit": 1}))["conversations"]
        assert (listed[0]["call_id"], listed[0]["status"], listed[0]["ended_at"]) == ("CAlive", "in_progress", None)
        started = await structured(mcp.client, "get_call_events", {"call_id": "CAlive", "types": ["CallStarted"]})
        assert started["events"][0]["data"]["call_id"] == "CAlive"
        written = len(live.events)
        writer.append(live.end().events[written:])
        listed = (await structured(mcp.client, "list_conversations", {"limit": 1}))["conversations"]
        assert listed[0]["status"] == "completed" and listed[0]["ended_at"] is not None
    finally:
        writer.close()
