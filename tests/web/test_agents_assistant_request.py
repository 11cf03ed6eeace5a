"""The assistant request over real sockets: ``/twiml`` asks the operator's endpoint (a local server
here) which agent answers, signed the Standard Webhooks way — checked with that standard's own
reference library — and the rules decide when it is too slow or answers nonsense."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from agents_support import GREETED, SALES_LINE, AgentsBridge, agents_bridge
from bridge_harness import of_type
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from standardwebhooks import Webhook

from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.standard_webhooks import new_secret
from callbridge.engine.events import AssistantSaid

SECRET = new_secret()


@pytest.fixture(autouse=True)
def route_secret(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """The endpoint's secret, in the engine's environment as an operator sets it."""
    if "unset" not in request.node.name:
        monkeypatch.setenv("ROUTE_SECRET", SECRET)
    else:
        monkeypatch.delenv("ROUTE_SECRET", raising=False)


@dataclass
class Endpoint:
    """The operator's routing endpoint: answers with ``answer(body)``; records what it was sent."""

    answer: Callable[[dict[str, Any]], Awaitable[Response | dict[str, Any]]]
    url: str = ""
    received: list[tuple[dict[str, Any], bool]] = field(default_factory=list)
    """Each request's body, and whether its signature verified."""
    released: trio.Event = field(default_factory=trio.Event)


@asynccontextmanager
async def endpoint(answer: Callable[[dict[str, Any]], Awaitable[Response | dict[str, Any]]]) -> AsyncIterator[Endpoint]:
    app = QuartTrio("routing-endpoint")
    state = Endpoint(answer)

    @app.post("/route")
    async def route() -> Any:
        body = await request.get_data()
        headers = {key.lower(): value for key, value in request.headers.items()}
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except Exception:
            verified = False
        parsed = json.loads(body)
        state.received.append((parsed, verified))
        return await state.answer(parsed)

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=trio.sleep_forever))
        state.url = f"{binds[0]}/route"
        yield state
        state.released.set()
        nursery.cancel_scope.cancel()


async def setup(agents: AgentsBridge, url: str, timeout_s: float = 1.5) -> None:
    await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "You sell."}, 201)
    await agents.ok("POST", "/api/agents", {"name": "support", "instructions": "You help."}, 201)
    routing = {
        "rules": [{"to": SALES_LINE, "agent": "sales"}],
        "assistant_request": {"url": url, "secret_env": "ROUTE_SECRET", "timeout_s": timeout_s},
    }
    await agents.ok("PUT", "/api/routing", routing)


GREETING_SCRIPT = Script(turns=[Turn(transcript="Hello?", reply="Hi!")])


async def test_the_endpoint_chooses_the_agent_and_overrides_its_greeting_for_this_call(tmp_path: Path) -> None:
    answers = iter([{"agent": "support", "overrides": {"greeting": "Hello Ada, calling about your boat?"}}])

    async def answer(body: dict[str, Any]) -> dict[str, Any]:
        return next(answers, {"agent": "support"})

    async with endpoint(answer) as operator, agents_bridge(tmp_path, script=GREETING_SCRIPT) as agents:
        await setup(agents, operator.url)
        call = await agents.call(SALES_LINE, GREETED, from_="+15550004444")
        after = await agents.call(SALES_LINE)  # the override was this call's only
        support = await agents.ok("GET", "/api/agents/support")

    (body, verified), _ = operator.received
    assert verified, "the request must verify with the Standard Webhooks reference library"
    assert body["type"] == "assistant_request"
    assert body["call"] == {
        "call_id": call.report.call_sid,
        "from": "+15550004444",
        "to": SALES_LINE,
        "direction": "inbound",
    }
    assert body["agents"] == ["default", "sales", "support"]
    routed = call.routed
    assert (routed.agent, routed.version, routed.source) == ("support", 1, "assistant_request")
    assert routed.reason == "assistant request with overrides of greeting" and routed.rule is None
    assert routed.overrides == {"greeting": "Hello Ada, calling about your boat?"}
    assert routed.assistant_request_ms is not None
    assert call.sent("session.update")[0]["session"]["instructions"] == "You help."
    said = [e.text for e in of_type(call.events, AssistantSaid) if e.purpose == "greeting"]
    assert said == ["Hello Ada, calling about your boat?"]
    assert support["greeting"] is None  # the profile itself is unchanged
    assert (after.routed.agent, after.routed.overrides) == ("support", {})
    assert [e for e in of_type(after.events, AssistantSaid) if e.purpose == "greeting"] == []


async def test_a_slow_endpoint_is_given_up_on_and_the_rules_decide_while_it_still_has_not_answered(
    tmp_path: Path,
) -> None:
    async def never(body: dict[str, Any]) -> dict[str, Any]:
        await operator.released.wait()  # answers only once the test is over
        return {"agent": "support"}

    async with endpoint(never) as operator, agents_bridge(tmp_path) as agents:
        await setup(agents, operator.url, timeout_s=0.3)
        call = await agents.call(SALES_LINE)
        still_waiting = not operator.released.is_set()

    assert still_waiting and len(operator.received) == 1  # the call started and ended without its answer
    routed = call.routed
    assert (routed.agent, routed.source, routed.rule) == ("sales", "fallback", 1)
    assert routed.reason == f"fallback after timeout (no answer within 0.3 s): rule #1 'to={SALES_LINE}'"
    assert routed.assistant_request_ms is not None and routed.assistant_request_ms >= 300
    assert call.started.agent_name == "sales"


async def test_an_answer_naming_no_such_agent_or_bad_overrides_falls_back_to_the_rules(tmp_path: Path) -> None:
    answers = iter(
        [
            {"agent": "nobody"},
            {"agent": "support", "overrides": {"greeting": "  "}},
            Response("down for maintenance", status=503),
            {"agnet": "support"},
        ]
    )

    async def answer(body: dict[str, Any]) -> Response | dict[str, Any]:
        return next(answers)

    async with endpoint(answer) as operator, agents_bridge(tmp_path) as agents:
        await setup(agents, operator.url)
        calls = [await agents.call(SALES_LINE) for _ in range(4)]

    assert [c.routed.agent for c in calls] == ["sales"] * 4
    assert [c.routed.source for c in calls] == ["fallback"] * 4
    reasons = [c.routed.reason.split(": rule #1")[0] for c in calls]
    assert reasons == [
        "fallback after error (it named agent 'nobody', which does not exist)",
        "fallback after error (its overrides are not valid at greeting)",
        "fallback after error (the endpoint answered HTTP 503)",
        "fallback after error (the answer has an unknown key 'agnet' (agent, overrides))",
    ]


async def test_an_endpoint_whose_secret_is_unset_is_refused_when_saved(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        routing = {"assistant_request": {"url": "https://ops.example/route", "secret_env": "ROUTE_SECRET"}}
        response = await agents.http.put("/api/routing", json=routing)
        saved = await agents.ok("GET", "/api/routing")
    assert response.status_code == 400 and response.json()["key"] == "assistant_request.secret_env"
    assert "ROUTE_SECRET is not set on this engine" in response.json()["error"]
    assert saved["version"] == 0 and saved["assistant_request"] is None
