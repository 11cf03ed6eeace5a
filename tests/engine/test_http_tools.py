"""Tools answered by the operator's own HTTP endpoint, against a real local server.

Each endpoint misbehaves one way (slow, 500, 500 then 200, 400, not JSON, huge, a redirect to a
private address); each gives the model one clear error result (or, once fixed, the answer) and
never stalls it. Requests are signed the Standard Webhooks way, checked with that standard's own
reference library. The last test runs the whole path: a simulated call whose model calls the tool.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpcore2
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from standardwebhooks import Webhook

from callbridge.adapters.http import Httpx2Client
from callbridge.adapters.standard_webhooks import new_secret
from callbridge.adapters.tls import http_tls_context
from callbridge.engine.agent import Agent, AgentTool, parse_agent
from callbridge.engine.http_tools import HttpToolError, agent_registry, http_tool
from callbridge.engine.tools import ToolContext, ToolRegistry, execute_tool

SECRET = new_secret()


@dataclass
class ToolServer:
    base_url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    failures_left: dict[str, int] = field(default_factory=dict)


@asynccontextmanager
async def tool_server() -> AsyncIterator[ToolServer]:
    app = QuartTrio("tools")
    state = ToolServer(base_url="")

    @app.post("/<kind>")
    async def answer(kind: str) -> Any:
        state.requests.append((kind, {k.lower(): v for k, v in request.headers.items()}, await request.get_data()))
        if kind == "ok":
            return {"status": "shipped", "eta_days": 2}
        if kind == "slow":
            await trio.sleep(30)
        if kind == "flaky" and state.failures_left.setdefault(kind, 1) > 0:
            state.failures_left[kind] -= 1
            return Response("busy", status=503)
        if kind == "flaky":
            return {"status": "shipped"}
        if kind == "broken":
            return Response("oops", status=500)
        if kind == "refused":
            return Response('{"error": "no such order"}', status=404)
        if kind == "prose":
            return Response("Your order has shipped!", content_type="text/plain")
        if kind == "huge":
            return {"padding": "x" * 200_000}
        if kind == "redirect":
            return Response("", status=302, headers={"Location": "http://10.0.0.1/internal"})
        return Response("unknown", status=404)

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=trio.sleep_forever))
        state.base_url = binds[0]
        yield state
        nursery.cancel_scope.cancel()


def spec(kind: str, base_url: str, **extra: Any) -> AgentTool:
    return AgentTool(
        name="lookup_order",
        description="Look up an order.",
        parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
        url=f"{base_url}/{kind}",
        secret_env="TOOLS_SECRET",
        **extra,
    )


async def call_tool(kind: str, server: ToolServer, **extra: Any) -> tuple[bool, dict[str, Any]]:
    tool = http_tool(spec(kind, server.base_url, **extra), environ={"TOOLS_SECRET": SECRET})
    ctx = ToolContext(call_id="CAhttp", http=Httpx2Client(), tool_call_id="call_7", call={"from": "+1555"})
    outcome = await execute_tool(tool, tool.name, json.dumps({"order": "A-1"}), ctx)
    return outcome.ok, json.loads(outcome.output)


async def test_the_endpoint_gets_the_arguments_and_the_call_signed_and_its_json_is_the_output() -> None:
    async with tool_server() as server:
        ok, output = await call_tool("ok", server)
    assert ok and output == {"status": "shipped", "eta_days": 2}
    [(_, headers, body)] = server.requests
    sent = Webhook(SECRET).verify(body, {name.lower(): value for name, value in headers.items()})
    assert sent == {
        "tool": "lookup_order",
        "tool_call_id": "call_7",
        "arguments": {"order": "A-1"},
        "call": {"from": "+1555", "call_id": "CAhttp", "agent": "default"},
    }
    assert headers["webhook-id"] == "call_7"


async def test_tool_requests_load_the_certificate_store_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the store takes ~20 ms of the event loop, during which no call's audio moves: each
    tool request opens its own client, and none may load it again."""
    loads: list[bool] = []
    load = httpcore2.default_ssl_context

    def counted(**options: Any) -> ssl.SSLContext:
        loads.append(True)
        return load(**options)

    monkeypatch.setattr(httpcore2, "default_ssl_context", counted)
    http_tls_context.cache_clear()
    try:
        async with tool_server() as server:
            for _ in range(3):
                ok, _output = await call_tool("ok", server)
                assert ok
        assert len(server.requests) == 3 and len(loads) == 1
    finally:
        http_tls_context.cache_clear()  # the next user loads it with the real loader


async def test_an_idempotent_tool_is_retried_after_a_5xx_and_the_retry_keeps_its_message_id() -> None:
    async with tool_server() as server:
        ok, output = await call_tool("flaky", server, idempotent=True, retries=2)
    assert ok and output == {"status": "shipped"}
    assert [kind for kind, _, _ in server.requests] == ["flaky", "flaky"]
    assert len({headers["webhook-id"] for _, headers, _ in server.requests}) == 1


@pytest.mark.parametrize(
    ("kind", "extra", "attempts", "says"),
    [
        ("broken", {}, 1, "answered HTTP 500"),
        (
            "broken",
            {"idempotent": True, "retries": 2},
            3,
            "answered HTTP 500; try again later or tell the caller (after 3 tries)",
        ),
        ("refused", {"idempotent": True, "retries": 2}, 1, "answered HTTP 404"),  # a 4xx is not retried
        ("prose", {}, 1, "not JSON"),
        ("huge", {}, 1, "larger than 64 KiB"),
        ("redirect", {}, 1, "redirects are not followed"),
        ("slow", {"timeout_s": 0.5}, 1, "did not answer within 0.5 s"),
    ],
)
async def test_a_misbehaving_endpoint_gives_the_model_one_clear_error(
    kind: str, extra: dict[str, Any], attempts: int, says: str
) -> None:
    async with tool_server() as server:
        ok, output = await call_tool(kind, server, **extra)
    assert not ok and says in output["error"]
    assert len(server.requests) == attempts


def test_an_agent_file_tool_is_validated_and_its_secret_must_be_set() -> None:
    with pytest.raises(HttpToolError, match="TOOLS_SECRET"):
        agent_registry(ToolRegistry(), Agent(tools=[spec("ok", "http://127.0.0.1:9")]), environ={})
    with pytest.raises(Exception, match="not a valid JSON Schema"):
        parse_agent({"tools": [{"name": "x", "parameters": {"type": "object", "properties": 5}}]})
    with pytest.raises(Exception, match="built-in tool"):
        parse_agent({"tools": [{"name": "end_call"}]})
    registry = agent_registry(ToolRegistry(), Agent(tools=[AgentTool(name="ask_manager")]))
    assert registry.get("ask_manager") is not None and "ask_manager" not in registry.backend_names()


async def test_a_call_whose_model_calls_an_http_tool_gets_its_answer_and_a_slow_one_does_not_stall_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge_harness import of_type, running_bridge

    from callbridge.adapters.sim.caller import place_call
    from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
    from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
    from callbridge.engine.events import ToolCallCompleted, ToolCallFailed, ToolCallRequested

    monkeypatch.setenv("TOOLS_SECRET", SECRET)
    script = Script(
        turns=[
            Turn(
                transcript="Where is order A-1?",
                function_call=FunctionCall(name="lookup_order", arguments={"order": "A-1"}),
            ),
            Turn(
                transcript="And order B-2?", function_call=FunctionCall(name="slow_lookup", arguments={"order": "B-2"})
            ),
        ]
    )
    async with tool_server() as server:
        slow = AgentTool(name="slow_lookup", url=f"{server.base_url}/slow", timeout_s=1.0)
        agent = Agent(tools=[spec("ok", server.base_url), slow])
        async with running_bridge(tmp_path, script=script, agent=agent) as bridge:
            caller = [Speak(900), WaitForAssistant(15), Speak(900), WaitForAssistant(15), HangUp()]
            report = await place_call(bridge.base_url, script=caller)
            await bridge.wait_call_ended(report.call_sid)
            events = await bridge.events(report.call_sid)

    assert report.ok, report.errors
    assert [e.handler for e in of_type(events, ToolCallRequested)] == ["backend", "backend"]
    [done] = of_type(events, ToolCallCompleted)
    assert json.loads(done.output) == {"status": "shipped", "eta_days": 2}
    [failed] = of_type(events, ToolCallFailed)
    assert failed.name == "slow_lookup" and "did not answer within 1 s" in failed.output
    assert report.assistant_bytes_received > 0  # the model spoke after both, the call went on
