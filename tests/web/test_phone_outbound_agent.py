"""An outbound call chooses the agent that answers it, over real sockets: ``POST /api/calls
{"agent": NAME}`` (and ``callbridge call TO --agent NAME``) → the fake Twilio places the call →
our ``/twiml`` routes it to that saved profile, over the routing rules that would have chosen
another → the stream runs with it (what the simulated model was told, what the person heard).
An unknown name is refused with 400 naming it, before Twilio is asked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import trio
from agents_support import session_updates
from phone_harness import PhoneBridge, of_type, phone_bridge
from serve_process import CLEAN_ENV

from callbridge.adapters.sim.caller import HangUp, WaitForAssistant
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent
from callbridge.engine.events import AgentRouted, AssistantSaid, CallStarted, Event, OutboundCallPlaced

PERSON = "+15551230001"
HEARS_GREETING = [WaitForAssistant(timeout_s=10), HangUp()]


async def ok(phone: PhoneBridge, method: str, path: str, body: Any, status: int) -> Any:
    response = await phone.http.request(method, path, json=body)
    assert response.status_code == status, response.text
    return response.json()


async def sales_and_support(phone: PhoneBridge) -> None:
    """Two profiles, and a rule that sends calls to PERSON's number to ``support``."""
    await ok(phone, "POST", "/api/agents", {"name": "sales", "instructions": "You sell boats.",
                                            "greeting": "Boat sales!"}, 201)  # fmt: skip
    await ok(phone, "POST", "/api/agents", {"name": "support", "instructions": "You fix boats.",
                                            "greeting": "Boat repairs!"}, 201)  # fmt: skip
    await ok(phone, "PUT", "/api/routing", {"rules": [{"to": PERSON, "agent": "support"}]}, 200)


async def placed_call(phone: PhoneBridge, body: dict[str, Any]) -> tuple[str, list[Event]]:
    """Place the call through the API and wait for its end; its CallSid and log."""
    answer = await phone.post("/api/calls", body)
    assert answer.status_code == 201, answer.text
    call_id = answer.json()["call_id"]
    with trio.fail_after(30):
        await phone.twilio.calls.calls[call_id].done.wait()
        await phone.bridge.wait_call_ended(call_id)
    return call_id, await phone.events(call_id)


def greetings(events: list[Event]) -> list[str]:
    return [e.text for e in of_type(events, AssistantSaid) if e.purpose == "greeting"]


async def test_an_outbound_call_placed_with_an_agent_is_answered_by_it_over_the_routing_rules(
    tmp_path: Path,
) -> None:
    async with phone_bridge(tmp_path, agent=Agent(greeting="Hello from default.")) as phone:
        await sales_and_support(phone)
        phone.twilio.calls.script_number(PERSON, Answer(script=HEARS_GREETING))
        chosen_id, chosen = await placed_call(phone, {"to": PERSON, "agent": "sales"})
        ruled_id, ruled = await placed_call(phone, {"to": PERSON})
        told = [session_updates(session)[0] for session in phone.bridge.fake.sessions]
        listed = {c["call_id"]: c for c in (await phone.http.get("/api/conversations")).json()}

    # the call placed with "sales": routed to it at /twiml, before the stream started, and why
    [placed] = of_type(chosen, OutboundCallPlaced)
    assert (placed.agent, placed.to_number) == ("sales", PERSON)
    [routed] = of_type(chosen, AgentRouted)
    assert (routed.agent, routed.version, routed.source) == ("sales", 1, "placed")
    assert routed.reason == "chosen when the call was placed" and not routed.at_stream_start
    [started] = of_type(chosen, CallStarted)
    assert chosen.index(routed) < chosen.index(started)
    assert (started.agent_name, started.agent_version) == ("sales", 1)
    assert greetings(chosen) == ["Boat sales!"]
    # the same number without an agent: the rule chooses support
    [ruled_routed] = of_type(ruled, AgentRouted)
    assert (ruled_routed.agent, ruled_routed.source) == ("support", "rule")
    assert of_type(ruled, OutboundCallPlaced)[0].agent is None and greetings(ruled) == ["Boat repairs!"]
    # what the simulated model was told: each call's own agent
    assert [t["instructions"] for t in told] == ["You sell boats.", "You fix boats."]
    assert listed[chosen_id]["direction"] == listed[ruled_id]["direction"] == "outbound"


async def test_an_unknown_agent_is_refused_naming_it_and_nothing_is_placed(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=Agent()) as phone:
        await sales_and_support(phone)
        unknown = await phone.post("/api/calls", {"to": PERSON, "agent": "marketing"})
        empty = await phone.post("/api/calls", {"to": PERSON, "agent": " "})
        not_text = await phone.post("/api/calls", {"to": PERSON, "agent": 7})

    assert unknown.status_code == 400
    assert unknown.json()["error"] == (
        "'agent': no agent profile named 'marketing'; the agents are: default, sales, support"
    )
    assert empty.status_code == 400 and "'agent'" in empty.json()["error"]
    assert not_text.status_code == 400 and "agent" in not_text.json()["error"]
    assert phone.twilio.calls.calls == {}  # Twilio was never asked


async def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "callbridge", *args],
        env={**CLEAN_ENV, "CALLBRIDGE_API_TOKEN": "test-token"},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_callbridge_call_with_agent_places_the_call_for_that_agent(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=Agent()) as phone:
        await sales_and_support(phone)
        phone.twilio.calls.script_number(PERSON, Answer(script=HEARS_GREETING))
        done = await run_cli("call", PERSON, "--agent", "sales", "--url", phone.base_url)
        assert done.returncode == 0, done.stderr
        (call_id,) = phone.twilio.calls.calls
        with trio.fail_after(30):
            await phone.twilio.calls.calls[call_id].done.wait()
            await phone.bridge.wait_call_ended(call_id)
        events = await phone.events(call_id)
        refused = await run_cli("call", PERSON, "--agent", "nobody", "--url", phone.base_url)

    assert [p.agent for p in of_type(events, OutboundCallPlaced)] == ["sales"]
    assert [(r.agent, r.source) for r in of_type(events, AgentRouted)] == [("sales", "placed")]
    assert greetings(events) == ["Boat sales!"]
    assert refused.returncode == 1
    assert "HTTP 400" in refused.stderr.decode() and "'nobody'" in refused.stderr.decode()
    assert len(phone.twilio.calls.calls) == 1
