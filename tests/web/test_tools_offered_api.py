"""``/api/tools/offered`` against a real server: the tools it says a call gets are the tools a real call
(over sockets, through ``/twiml`` and ``/call``) sends the simulated model in its ``session.update`` —
the server's, the agent's own, the built-ins and the session's, in the same order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
from agents_support import SALES_LINE, SUPPORT_LINE, agents_bridge, session_updates

from callbridge.engine.agent import Agent, AgentTool, TransferTarget

ASK_A_PERSON = {"type": "function", "name": "ask_a_person", "description": "Ask a person.", "parameters": {}}
DEFAULT_AGENT = Agent(
    transfer_targets=[TransferTarget(label="sales", to="+15551234567")],
    tools=[AgentTool(name="lookup_order", description="Look up an order.")],
)


def rows(answer: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(tool["name"], tool["handler"], tool["source"]) for tool in answer["tools"]]


async def test_the_offered_tools_are_what_a_call_of_the_default_agent_sends_the_model(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path, agent=DEFAULT_AGENT) as agents:
        await agents.ok("POST", "/api/session", {"session": {"tools": [ASK_A_PERSON]}})
        saved = await agents.ok("GET", "/api/tools/offered")
        proposed = await agents.ok("POST", "/api/tools/offered", {"tools": []})
        replaced = await agents.ok(
            "POST", "/api/tools/offered", {"tools": [{"type": "function", "name": "end_call", "description": "Bye."}]}
        )
        call = await agents.call(SUPPORT_LINE)
        (session,) = agents.bridge.fake.sessions
        sent = session_updates(session)[0]["tools"]

    assert (saved["agent"], saved["version"]) == ("default", 1)
    assert rows(saved) == [
        ("get_weather_from_coords", "backend", "server"),
        ("lookup_order", "human", "agent"),
        ("end_call", "builtin", "built-in"),
        ("transfer_call", "builtin", "built-in"),
        ("send_dtmf", "builtin", "built-in"),
        ("ask_a_person", "human", "session"),
    ]
    # exactly what the call sent the model, schema for schema
    strip = ("handler", "source", "schema_from_session")
    assert [{k: v for k, v in tool.items() if k not in strip} for tool in saved["tools"]] == sent
    assert call.started.agent_name == "default"
    assert [name for name, _, _ in rows(proposed)] == [name for name, _, _ in rows(saved)][:-1]
    (bye,) = [tool for tool in replaced["tools"] if tool["name"] == "end_call"]
    assert (bye["description"], bye["handler"], bye["schema_from_session"]) == ("Bye.", "builtin", True)


async def test_a_calls_offered_tools_are_its_agents_and_bad_requests_are_refused(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        profile = {"name": "sales", "server_tools": [], "end_call": False, "tools": [{"name": "quote"}]}
        await agents.ok("POST", "/api/agents", profile, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        call = await agents.call(SALES_LINE)
        call_id = call.report.call_sid
        of_call = await agents.ok("POST", "/api/tools/offered", {"tools": [], "call_id": call_id})
        bad_tools = await agents.http.post("/api/tools/offered", json={"tools": [{"type": "function", "name": "a b"}]})
        no_call = await agents.http.post("/api/tools/offered", json={"tools": [], "call_id": "CA-none"})
        no_body = await agents.http.post("/api/tools/offered", json={"call_id": call_id})
        (session,) = agents.bridge.fake.sessions
        sent = [tool["name"] for tool in session_updates(session)[0]["tools"]]
        async with httpx2.AsyncClient(base_url=agents.bridge.base_url) as anonymous:
            no_token = await anonymous.get("/api/tools/offered")

    assert (of_call["agent"], of_call["version"], of_call["call_id"]) == ("sales", 1, call_id)
    assert rows(of_call) == [("quote", "human", "agent"), ("send_dtmf", "builtin", "built-in")]
    assert [name for name, _, _ in rows(of_call)] == sent
    assert bad_tools.status_code == 400 and bad_tools.json()["key"] == "tools" and "name" in bad_tools.json()["error"]
    assert no_call.status_code == 404 and no_call.json()["key"] == "call_id"
    assert no_body.status_code == 400 and "tools" in no_body.json()["error"]
    assert no_token.status_code == 401
