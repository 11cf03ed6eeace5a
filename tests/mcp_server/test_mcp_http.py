"""``/mcp``: the MCP server over streamable HTTP in a real running server (real sockets, store, views).

The store is filled with synthetic calls before the server starts. Clients are the official
``mcp`` client over ``streamable_http_client`` with an httpx2 client carrying the bearer token,
and raw httpx2 requests for what a client library would never send.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import Bridge, running_bridge
from mcp.shared.exceptions import MCPError
from test_mcp_support import (
    TOKEN,
    TOOL_NAMES,
    call_ids,
    fill_store,
    mcp_client,
    structured,
    synthetic_calls,
    tool_error,
)

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.engine.events import CallStarted
from callbridge.mcp_server.http import allowed_hosts_and_origins
from callbridge.web.auth import SESSION_COOKIE

BEARER = {"Authorization": f"Bearer {TOKEN}"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Served:
    bridge: Bridge
    url: str
    http: httpx2.AsyncClient
    """Raw HTTP, no credentials."""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    fill_store(tmp_path / "callbridge.db", synthetic_calls())
    script = Script(turns=[Turn(transcript="Hi there", reply="Hello! How can I help you today?")])
    async with running_bridge(tmp_path, script=script) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, timeout=20) as http:
            yield Served(bridge, f"{bridge.base_url}/mcp", http)


async def test_a_client_with_the_token_gets_the_tools_resources_and_prompt_over_http(served: Served) -> None:
    async with mcp_client(served.url, BEARER) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOL_NAMES
        assert await call_ids(client) == ["CAhello", "CAplumber", "CAweather"]
        weather = await structured(client, "get_conversation", {"call_id": "CAweather"})
        assert weather["items"][0]["text"] == "What's the weather in Paris?"
        resources = (await client.list_resources()).resources
        assert [r.uri for r in resources] == [
            "conversation://CAhello",
            "conversation://CAplumber",
            "conversation://CAweather",
        ]
        (content,) = (await client.read_resource("conversation://CAplumber")).contents
        assert '"call_id":"CAplumber"' in getattr(content, "text", "")
        assert [p.name for p in (await client.list_prompts()).prompts] == ["summarize_call"]
        assert "call_id: unknown call 'CAnope'" in await tool_error(client, "get_call_events", {"call_id": "CAnope"})
        assert "until:" in await tool_error(client, "list_conversations", {"until": "tomorrow-ish"})
    # the legacy handshake (Claude Desktop's) works as well
    async with mcp_client(served.url, BEARER, mode="legacy") as legacy:
        assert (await structured(legacy, "get_call_metrics"))["period"]["calls"]["total"] == 3
    # and the rest of the server is still Quart's
    assert (await served.http.get("/healthz")).json()["status"] == "ok"
    assert (await served.http.get("/api/conversations", headers=BEARER)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}],
)
async def test_a_request_without_the_token_is_refused_before_the_mcp_server_sees_it(
    served: Served, headers: dict[str, str]
) -> None:
    for method, path in (("POST", "/mcp"), ("GET", "/mcp"), ("DELETE", "/mcp"), ("POST", "/mcp/")):
        response = await served.http.request(method, path, json=INITIALIZE, headers={**MCP_HEADERS, **headers})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer TOKEN" in response.json()["error"]
        assert TOKEN not in response.text


async def test_an_unauthenticated_mcp_client_cannot_connect(served: Served) -> None:
    with pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="error response"), flatten_subgroups=True):
        with trio.fail_after(20):
            async with mcp_client(served.url) as client:
                await client.list_tools()


async def test_neither_the_console_cookie_nor_a_token_in_the_query_opens_mcp(served: Served) -> None:
    login = await served.http.get("/api/conversations", params={"token": TOKEN})
    assert login.status_code == 200 and served.http.cookies.get(SESSION_COOKIE)
    assert (await served.http.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS)).status_code == 401
    assert (
        await served.http.post("/mcp", params={"token": TOKEN}, json=INITIALIZE, headers=MCP_HEADERS)
    ).status_code == 401


async def test_requests_for_other_hosts_or_origins_are_refused_even_with_the_token(served: Served) -> None:
    headers = {**MCP_HEADERS, **BEARER}
    ok = await served.http.post("/mcp", json=INITIALIZE, headers=headers)
    assert ok.status_code == 200, ok.text
    rebound = await served.http.post("/mcp", json=INITIALIZE, headers={**headers, "Host": "evil.example.com"})
    assert rebound.status_code == 421
    cross = await served.http.post("/mcp", json=INITIALIZE, headers={**headers, "Origin": "https://evil.example.com"})
    assert cross.status_code == 403


async def test_the_public_url_host_is_allowed(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"PUBLIC_URL": "https://calls.example.com"}) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers={**MCP_HEADERS, **BEARER}, timeout=20) as http:
            for host in ("calls.example.com", "calls.example.com:443"):
                response = await http.post(
                    "/mcp", json=INITIALIZE, headers={"Host": host, "Origin": "https://calls.example.com"}
                )
                assert response.status_code == 200, (host, response.text)
            assert (await http.post("/mcp", json=INITIALIZE, headers={"Host": "example.com"})).status_code == 421


def test_allowed_hosts_come_from_the_public_url_and_the_bound_port() -> None:
    hosts, origins = allowed_hosts_and_origins("https://calls.example.com", 8081)
    assert hosts == [
        "calls.example.com",
        "calls.example.com:443",
        "127.0.0.1:8081",
        "localhost:8081",
        "[::1]:8081",
    ]
    assert origins[:2] == ["https://calls.example.com", "https://calls.example.com:443"]
    assert "http://localhost:8081" in origins and "http://127.0.0.1:8081" in origins
    hosts, origins = allowed_hosts_and_origins("http://127.0.0.1:8081", 8081)
    assert hosts == ["127.0.0.1:8081", "localhost:8081", "[::1]:8081"]
    assert origins == ["http://127.0.0.1:8081", "http://localhost:8081", "http://[::1]:8081"]


# --- a real call -------------------------------------------------------------------------------


async def wait_until_stored(bridge: Bridge, call_id: str, kind: type[Any]) -> None:
    """Return as soon as the writer has stored an event of ``kind`` for the call (woken by its writes)."""
    after = 0
    while True:
        head = await bridge.server.writer.wait_appended(after)
        recorded = await trio.to_thread.run_sync(bridge.server.store.read_all, after, 10_000)
        if any(isinstance(r.event, kind) and r.event.call_id == call_id for r in recorded):
            return
        after = head


async def test_a_live_call_is_visible_within_one_second_of_its_call_started_being_stored(served: Served) -> None:
    call_sid = "CA" + "1" * 32
    reports = []

    async def call() -> None:
        script: list[Step] = [Speak(900), Silence(30_000), HangUp()]
        reports.append(await place_call(served.bridge.base_url, script=script, call_sid=call_sid))

    async with mcp_client(served.url, BEARER) as client, trio.open_nursery() as nursery:
        nursery.start_soon(call)
        with trio.fail_after(15):
            await wait_until_stored(served.bridge, call_sid, CallStarted)
        with trio.fail_after(1):
            listed = (await structured(client, "list_conversations", {"limit": 1}))["conversations"]
        assert (listed[0]["call_id"], listed[0]["status"], listed[0]["ended_at"]) == (call_sid, "in_progress", None)
        assert listed[0]["caller_number"] == "+15005550006"
        served.bridge.server.live.hang_up_all("test_done")

    (report,) = reports
    assert report.call_sid == call_sid
    async with mcp_client(served.url, BEARER) as client:
        listed = (await structured(client, "list_conversations", {"limit": 1}))["conversations"]
        assert listed[0]["call_id"] == call_sid and listed[0]["status"] == "completed"
        events = await structured(client, "get_call_events", {"call_id": call_sid, "types": ["CallEnded"]})
        assert events["events"][0]["data"]["reason"] == "test_done"
