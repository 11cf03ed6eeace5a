"""``callbridge mcp`` (stdio, the official client) masks what the server's ``CALLBRIDGE_REDACT`` masks,
though an assistant's configuration starts it without the server's environment: the server records its
rules in the log (``RedactionRulesSet``, once per change) and the MCP process honours them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import trio
from bridge_harness import of_type, running_bridge
from mcp import Client, StdioServerParameters
from privacy_calls import ONE_TURN, order_registry
from test_mcp_support import structured

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import SETTINGS_STREAM, RedactionRulesSet

SAID = "My card is 4111 1111 1111 1111, mail ada@example.com"
SCRIPT = Script(
    turns=[
        Turn(
            transcript=SAID,
            function_call=FunctionCall(name="lookup_order", arguments={"order": "4111111111111111"}),
            after_tool="Thanks.",
        )
    ]
)


async def test_callbridge_mcp_masks_the_servers_rules_without_being_given_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_REDACT", "cards,emails")
    async with running_bridge(tmp_path, script=SCRIPT, registry=order_registry()) as bridge:
        report = await place_call(bridge.base_url, script=ONE_TURN)
        assert report.ok, report.errors
        await bridge.wait_call_ended(report.call_sid)
    async with running_bridge(tmp_path) as bridge:  # the same rules again: nothing new to record
        settings = await bridge.events(SETTINGS_STREAM)
    monkeypatch.delenv("CALLBRIDGE_REDACT")

    store = str(tmp_path / "callbridge.db")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CALLBRIDGE_")}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "callbridge", "mcp", "--store", store], cwd=str(tmp_path), env=env
    )
    with trio.fail_after(60):
        async with Client(params, mode="legacy") as mcp:
            conversation = await structured(mcp, "get_conversation", {"call_id": report.call_sid})
            events = await structured(mcp, "get_call_events", {"call_id": report.call_sid})
            by_card = await structured(mcp, "search_conversations", {"query": "4111"})
            by_word = await structured(mcp, "search_conversations", {"query": "card"})

    assert [(e.rules, e.in_log) for e in of_type(settings, RedactionRulesSet)] == [(["cards", "emails"], False)]
    shown = json.dumps([conversation, events, by_word])
    # the card's digits as spoken and as the tool's argument ("4111" alone also occurs in a live call's
    # timestamps: 14:52:24.841115)
    assert "4111 1111" not in shown and "4111111111111111" not in shown and "ada@example.com" not in shown
    assert any("My card is [card], mail [email]" in (item["text"] or "") for item in conversation["items"])
    assert by_card["results"] == [] and [r["call_id"] for r in by_word["results"]] == [report.call_sid]
