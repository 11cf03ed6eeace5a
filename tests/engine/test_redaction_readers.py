"""Redaction (``CALLBRIDGE_REDACT``) in every reader outside the REST API, over real sockets: a card
number, a national id, an e-mail and a phone number said on a call (and passed to a tool) are masked in
the live feed (``WS /logs``), in MCP (the official client: the conversation, its timeline, a search) and
in webhook deliveries (a local endpoint receiving ``call.ended`` with the transcript), while the owner's
log keeps the words — or, with ``CALLBRIDGE_REDACT_LOG=1``, holds them masked too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import running_bridge
from privacy_calls import ONE_TURN, order_registry
from test_mcp_support import mcp_client, structured
from trio_websocket import WebSocketConnection, open_websocket_url
from webhook_endpoint import webhook_endpoint

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import CallerSaid, ToolCallRequested
from callbridge.engine.redaction import NO_REDACTION
from callbridge.engine.store import EventStore
from callbridge.projections.webhook_messages import KINDS

BEARER = {"Authorization": "Bearer test-token"}
CARD = "4111 1111 1111 1111"
SAID = f"My card is {CARD}, ssn 123-45-6789, mail ada@example.com, phone +15551234567"
SECRETS = ("4111", "1111 1111", "123-45-6789", "ada@example.com", "5551234567")
SCRIPT = Script(
    turns=[
        Turn(
            transcript=SAID,
            function_call=FunctionCall(name="lookup_order", arguments={"order": "4111111111111111"}),
            after_tool="Noted the card 4111-1111-1111-1111; I will call +15551234567.",
        )
    ]
)


def leaked(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def stored_words(tmp_path: Path, call_id: str) -> str:
    """What the owner reads from the log (no rules applied on reading)."""
    store = EventStore(str(tmp_path / "callbridge.db"), redaction=NO_REDACTION)
    try:
        kinds = CallerSaid | ToolCallRequested
        return str([r.event for r in store.read_call(call_id) if isinstance(r.event, kinds)])
    finally:
        store.close()


async def follow_the_call(ws: WebSocketConnection, seen: list[dict[str, Any]]) -> None:
    """Every live feed message (``WS /logs``, as the console reads it) until the first call has ended."""
    call_id = None
    while True:
        message = json.loads(await ws.get_message())
        seen.append(message)
        if message["type"] == "call.started" and call_id is None:
            call_id = message["call_id"]
        if message["type"] == "call.ended" and message["call_id"] == call_id:
            return


async def a_redacted_call(tmp_path: Path) -> dict[str, Any]:
    """A call saying the secrets, watched by the live feed, a webhook endpoint and an MCP client."""
    async with (
        webhook_endpoint() as endpoint,
        running_bridge(tmp_path, script=SCRIPT, registry=order_registry()) as bridge,
    ):
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            answer = await http.post("/api/webhooks", json={"url": endpoint.url, "events": list(KINDS)})
            assert answer.status_code == 201, answer.text
            seen: list[dict[str, Any]] = []
            feed = bridge.base_url.replace("http://", "ws://") + "/logs?token=test-token"
            with trio.fail_after(40):  # a guard against a hang, not a timing assumption
                async with open_websocket_url(feed) as ws, trio.open_nursery() as nursery:
                    assert json.loads(await ws.get_message())["type"] == "feed.hello"
                    nursery.start_soon(follow_the_call, ws, seen)
                    report = await place_call(bridge.base_url, script=ONE_TURN)
                    assert report.ok, report.errors
            call_id = report.call_sid
            await bridge.wait_call_ended(call_id)
            await endpoint.wait_for(lambda e: len(e.of_type("call.ended")) == 1)
            await bridge.server.fresh.events()
        async with mcp_client(f"{bridge.base_url}/mcp", BEARER) as mcp:
            conversation = await structured(mcp, "get_conversation", {"call_id": call_id})
            timeline = await mcp.call_tool("get_call_timeline", {"call_id": call_id})
            by_card = await structured(mcp, "search_conversations", {"query": "4111"})
            by_mask = await structured(mcp, "search_conversations", {"query": "ssn"})
    return {
        "call_id": call_id,
        "feed": json.dumps(seen),
        "webhooks": [r.message for r in endpoint.received],
        "conversation": conversation,
        "timeline": str(timeline.content),
        "by_card": by_card,
        "by_mask": by_mask,
    }


async def test_the_live_feed_mcp_and_webhooks_mask_what_was_said_while_the_log_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_REDACT", "all")
    shown = await a_redacted_call(tmp_path)

    # the live feed: the caller's words and the tool's argument arrive masked, never in plain
    assert leaked(shown["feed"]) == []
    assert "My card is [card], ssn [national id], mail [email], phone [phone]" in shown["feed"]
    # webhooks: call.ended carries the transcript masked; the tool's arguments too
    assert leaked(json.dumps(shown["webhooks"])) == []
    (ended,) = [m["data"] for m in shown["webhooks"] if m["type"] == "call.ended"]
    said = [item["text"] for item in ended["transcript"] if item["type"] == "message"]
    assert any("My card is [card]" in (text or "") for text in said)
    (tool,) = [m["data"] for m in shown["webhooks"] if m["type"] == "tool.called"]
    assert "[card]" in tool["arguments"]
    # MCP: the conversation, the timeline and search
    assert leaked(json.dumps(shown["conversation"]) + shown["timeline"]) == []
    assert any("My card is [card]" in (item["text"] or "") for item in shown["conversation"]["items"])
    assert "[card]" in shown["timeline"]
    assert shown["by_card"]["results"] == []  # the card's digits are not findable
    assert [r["call_id"] for r in shown["by_mask"]["results"]] == [shown["call_id"]]
    assert leaked(json.dumps(shown["by_mask"])) == []
    # the owner's log keeps the words
    assert SAID in stored_words(tmp_path, shown["call_id"])


async def test_with_redact_log_the_log_too_holds_the_masked_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_REDACT", "cards")
    monkeypatch.setenv("CALLBRIDGE_REDACT_LOG", "1")
    shown = await a_redacted_call(tmp_path)

    for reader in (shown["feed"], json.dumps(shown["webhooks"]), json.dumps(shown["conversation"])):
        assert "4111" not in reader and "[card]" in reader
        assert "123-45-6789" in reader  # only the rule asked for: cards
    stored = stored_words(tmp_path, shown["call_id"])
    assert "My card is [card]" in stored and "4111" not in stored
