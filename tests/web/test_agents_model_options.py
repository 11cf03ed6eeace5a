"""An agent profile's model options and tool choice, over real sockets: profiles saved through
``/api/agents``, calls placed through ``/twiml`` and ``/call`` as Twilio does, and what the simulated
model received (its ``session.update``, the socket's URL, the function output) checked at the model.

The profile's options win over the console's default session for the calls that profile answers;
the other calls keep the default's. A bad option is refused with 400 naming the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from agents_support import SALES_LINE, SUPPORT_LINE, agents_bridge, session_updates
from test_live_feed import is_type, open_feed

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.default_tools import default_registry
from callbridge.engine.events import AgentSaved
from callbridge.engine.tools import Tool, ToolContext

OPTIONS: dict[str, Any] = {
    "model": "gpt-realtime-mini",
    "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
    "max_output_tokens": 800,
    "noise_reduction": "none",
    "speed": 1.2,
}
WEATHER = "get_weather_from_coords"
"""The server's own tool (``engine/default_tools.py``)."""
CONSOLE_DEFAULT = {"speed": 0.9, "noise_reduction": "near_field", "max_output_tokens": 300}


async def test_a_profiles_model_options_reach_the_model_and_win_over_the_default_session(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/session", {"session": CONSOLE_DEFAULT})
        created = await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "Sell.", **OPTIONS}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        sales = await agents.call(SALES_LINE)
        other = await agents.call(SUPPORT_LINE)
        fetched = await agents.ok("GET", "/api/agents/sales")
        sessions = agents.bridge.fake.sessions
        told = [session_updates(session)[0] for session in sessions]

    assert {key: created[key] for key in OPTIONS} == OPTIONS == {key: fetched[key] for key in OPTIONS}
    assert created["server_tools"] is None  # not named: all of the server's tools
    assert (sales.started.agent_name, other.started.agent_name) == ("sales", "default")
    profile, default = told
    # the profile's call: its model (the socket opened with it too), turns, tokens, no noise filter, speed
    assert "model=gpt-realtime-mini" in sessions[0].path and "model=gpt-realtime" in sessions[1].path
    assert profile["model"] == "gpt-realtime-mini"
    assert profile["audio"]["input"]["turn_detection"] == {"type": "semantic_vad", "eagerness": "low"}
    assert "noise_reduction" not in profile["audio"]["input"]  # "none" beats the default's near_field
    assert (profile["max_output_tokens"], profile["audio"]["output"]["speed"]) == (800, 1.2)
    assert sales.started.session_config["speed"] == 1.2 and sales.started.session_config["noise_reduction"] is None
    # the default agent's call keeps the console's default session
    assert default["model"] == "gpt-realtime" and default["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert default["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert (default["max_output_tokens"], default["audio"]["output"]["speed"]) == (300, 0.9)


async def test_bad_model_options_are_refused_naming_the_key_and_nothing_is_saved(tmp_path: Path) -> None:
    cases = [
        ({"speed": 3}, "speed", "speed: between 0.25 and 1.5"),
        ({"max_output_tokens": 0}, "max_output_tokens", 'between 1 and 4096, or "inf"'),
        ({"max_output_tokens": "lots"}, "max_output_tokens", "max_output_tokens"),
        ({"noise_reduction": "loud"}, "noise_reduction", "Invalid enum value 'loud'"),
        ({"model": "gpt realtime"}, "model", "is not a model name"),
        ({"turn_detection": {"type": "push_to_talk"}}, "turn_detection.type", "push_to_talk"),
        ({"turn_detection": {"type": "server_vad", "threshold": 2}}, "turn_detection.threshold", "<= 1.0"),
        ({"turn_detection": {"type": "semantic_vad", "silence_ms": 5}}, "turn_detection.silence_ms", "unknown key"),
        ({"server_tools": [WEATHER, "launch_rocket"]}, "server_tools[1]", "'launch_rocket' is not one of"),
    ]
    async with agents_bridge(tmp_path) as agents:
        answers = [await agents.http.post("/api/agents", json={"name": "sales", **body}) for body, _, _ in cases]
        log = await agents.agents_log()

    for (_, key, words), answer in zip(cases, answers, strict=True):
        assert answer.status_code == 400, answer.text
        assert answer.json()["key"] == key and words in answer.json()["error"], answer.json()
    assert [e.name for e in log if isinstance(e, AgentSaved)] == ["default"]


ASK_A_PERSON = {
    "name": "ask_a_person",
    "description": "Ask a human operator; they answer from the console.",
    "parameters": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
}
ANSWER = "Yes, we open at nine on Sundays."


async def test_a_profiles_hand_answered_tool_is_answered_through_the_console_and_the_model_gets_it(
    tmp_path: Path,
) -> None:
    script = Script(
        turns=[
            Turn(
                transcript="Are you open on Sunday?",
                function_call=FunctionCall(name="ask_a_person", arguments={"question": "Open on Sunday?"}),
                after_tool="The operator says: {output}",
            )
        ]
    )
    async with agents_bridge(tmp_path, script=script) as agents:
        profile = {"name": "desk", "tools": [ASK_A_PERSON], "server_tools": [], "end_call": False}
        await agents.ok("POST", "/api/agents", profile, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "desk"}]})
        bridge = agents.bridge
        with trio.fail_after(120):  # a safety net, not a timing assumption
            async with open_feed(bridge) as feed, trio.open_nursery() as nursery:

                async def call() -> None:
                    steps = [Speak(900), WaitForAssistant(timeout_s=60), HangUp()]
                    await place_call(bridge.base_url, script=steps, to_number=SALES_LINE)

                nursery.start_soon(call)
                requested = await feed.until(is_type("callbridge.tool_call.requested"))
                call_id, tool_call_id = requested["call_id"], requested["tool_call_id"]
                item = {"type": "function_call_output", "call_id": tool_call_id, "output": ANSWER}
                await feed.send({"type": "conversation.item.create", "call_id": call_id, "item": item})
                await feed.send({"type": "response.create", "call_id": call_id})
                spoken = await feed.until(is_type("response.output_audio_transcript.done"))
        (session,) = bridge.fake.sessions
        told = session_updates(session)[0]

    offered = [tool["name"] for tool in told["tools"]]
    assert offered == ["ask_a_person", "send_dtmf"]  # no server tool (server_tools = []), no end_call
    outputs = [
        json.loads(event.raw)["item"] for event in session.client_events if event.type == "conversation.item.create"
    ]
    assert [o["output"] for o in outputs if o["type"] == "function_call_output"] == [ANSWER]
    assert requested["handler"] == "human" and requested["name"] == "ask_a_person"
    assert spoken["transcript"] == f"The operator says: {ANSWER}"


async def answer_time(arguments: dict[str, Any], ctx: ToolContext) -> str:
    return json.dumps({"time": "09:00"})


async def test_a_profile_offers_only_the_server_tools_it_names(tmp_path: Path) -> None:
    registry = default_registry(simulated=True)
    registry.register(
        Tool(name="get_time", description="The time.", parameters={"type": "object"}, handler=answer_time)
    )
    async with agents_bridge(tmp_path, registry=registry) as agents:
        await agents.ok("POST", "/api/agents", {"name": "sales", "server_tools": [WEATHER]}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        await agents.call(SALES_LINE)
        await agents.call(SUPPORT_LINE)
        told = [session_updates(session)[0] for session in agents.bridge.fake.sessions]

    names = [[tool["name"] for tool in session["tools"]] for session in told]
    assert names == [[WEATHER, "end_call", "send_dtmf"], [WEATHER, "get_time", "end_call", "send_dtmf"]]
