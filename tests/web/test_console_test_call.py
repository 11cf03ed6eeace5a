"""The offline demo, as a newcomer meets it: ``--model sim`` without OPENAI_API_KEY, the console's
**Place a test call** (``POST /api/test-call``, ending in a transfer or in the agent's goodbye) and
``callbridge simulate --barge-in``.

Every simulated call asks for the weather; here the tool must succeed on a machine without
internet (the simulated weather service), the simulated model must speak the result like an agent
(never the raw JSON), and the test call must show a real barge-in, counted as one in the metrics.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import httpx2
import trio
from bridge_harness import Bridge, of_type, running_bridge
from test_console_api import BEARER, closed_port

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import (
    DEFAULT_AFTER_TOOL_ERROR,
    DEFAULT_SCRIPT,
    FunctionCall,
    Script,
    Turn,
)
from callbridge.engine.agent import load_agent
from callbridge.engine.events import (
    BargeInDecided,
    CallEnded,
    CallEndRequested,
    DtmfForwarded,
    GoodbyeHeard,
    GreetingAudioStarted,
    ModelEventReceived,
    PhoneHangUpSent,
    ToolCallCompleted,
    ToolCallFailed,
    TransferDialed,
    TransferRefused,
)

DEMO_AGENT = Path(__file__).resolve().parents[2] / "agents" / "demo.toml"

SPOKEN_WEATHER = re.compile(r"^It's -?\d+ degrees in San Francisco right now\.$")


def assistant_transcripts(events: list) -> list[str]:
    return [
        json.loads(event.raw)["transcript"]
        for event in of_type(events, ModelEventReceived)
        if event.type == "response.output_audio_transcript.done"
    ]


async def metrics_of(bridge: Bridge, call_id: str) -> dict:
    async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
        with trio.fail_after(15):
            while True:  # the views follow the log: wait until they have seen the call's end
                response = await http.get(f"/api/calls/{call_id}/metrics")
                if response.status_code == 200 and response.json()["ended_at"]:
                    return dict(response.json())
                await bridge.server.writer.wait_appended(await bridge.server.writer.flush())


async def console_test_call_to_its_end(bridge: Bridge, body: dict | None = None) -> str:  # type: ignore[type-arg]
    """Press the console's "Place a test call" (``POST /api/test-call``); the call id, once it ended."""
    async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
        placed = await http.post("/api/test-call", json=body or {})
    assert placed.status_code == 202, placed.text
    call_id = str(placed.json()["call_sid"])
    with trio.fail_after(60):
        while bridge.server.live.get(call_id) is None:
            await bridge.server.writer.wait_appended(await bridge.server.writer.flush())
        await bridge.wait_call_ended(call_id)
    return call_id


async def test_the_console_test_call_looks_up_the_weather_offline_and_is_interrupted_once(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:  # the default script, the default tools, no network
        call_id = await console_test_call_to_its_end(bridge)
        events = await bridge.events(call_id)
        metrics = await metrics_of(bridge, call_id)

    # the caller ends by pressing 0 for sales: this agent has no transfer targets, so the model apologises
    assert of_type(events, ToolCallFailed) == [] and of_type(events, TransferRefused) == []
    assert assistant_transcripts(events)[-1] == DEFAULT_SCRIPT.keypad["0"].after_tool_error
    (completed,) = of_type(events, ToolCallCompleted)
    assert completed.name == "get_weather_from_coords"
    assert isinstance(json.loads(completed.output)["temperature_c"], float)
    spoken = assistant_transcripts(events)
    assert any(SPOKEN_WEATHER.match(text) for text in spoken), spoken
    assert not any("{" in text for text in spoken), spoken  # no JSON read aloud

    decisions = of_type(events, BargeInDecided)
    truncated = [d for d in decisions if d.action == "truncated"]
    assert len(truncated) == 1, [d.action for d in decisions]
    assert 0 < truncated[0].played_ms < truncated[0].received_ms  # cut while playing
    assert [e.reason for e in of_type(events, CallEnded)] == ["caller_hangup"]  # the script ran to its end
    assert (metrics["barge_ins"], metrics["truncations"]) == (1, 1)
    assert metrics["barge_ins_skipped"] == len(decisions) - 1


async def test_the_make_run_demo_greets_then_transfers_the_test_call_to_sales(tmp_path: Path) -> None:
    agent = load_agent(DEMO_AGENT)  # what `make run` serves with
    async with running_bridge(tmp_path, agent=agent) as bridge:
        call_id = await console_test_call_to_its_end(bridge)  # the console's default: ending in a transfer
        events = await bridge.events(call_id)
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            row = (await http.get(f"/api/conversations/{call_id}")).json()

    spoken = assistant_transcripts(events)
    assert spoken[0] == agent.greeting and len(of_type(events, GreetingAudioStarted)) == 1
    assert [(k.digits, k.mode) for k in of_type(events, DtmfForwarded)] == [("0", "model")]  # pressed 0 for sales
    (dialed,) = of_type(events, TransferDialed)
    assert (dialed.label, dialed.to, dialed.method) == ("sales", "+15005550010", "stream")  # no Twilio: the action
    assert spoken[-1] == "One moment, I'm transferring you now."
    assert [e.reason for e in of_type(events, CallEnded)] == ["transferred"]
    assert (row["outcome"], row["transfer_target"]) == ("transferred", "sales")


async def test_the_make_run_demo_test_call_can_end_in_the_agents_goodbye_and_hang_up(tmp_path: Path) -> None:
    agent = load_agent(DEMO_AGENT)
    async with running_bridge(tmp_path, agent=agent) as bridge:
        call_id = await console_test_call_to_its_end(bridge, {"ending": "goodbye"})
        events = await bridge.events(call_id)
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            row = (await http.get(f"/api/conversations/{call_id}")).json()
            refused = await http.post("/api/test-call", json={"ending": "voicemail"})

    spoken = assistant_transcripts(events)
    assert spoken[0] == agent.greeting and len(of_type(events, GreetingAudioStarted)) == 1
    assert [d.action for d in of_type(events, BargeInDecided)].count("truncated") == 1
    assert of_type(events, TransferDialed) == [] and of_type(events, DtmfForwarded) == []
    assert [(e.by, e.reason) for e in of_type(events, CallEndRequested)] == [("model", "the caller is done")]
    assert spoken[-1] == "Thank you for calling. Goodbye!"  # the goodbye the engine asks for after end_call
    (heard,) = of_type(events, GoodbyeHeard)
    (hung_up,) = of_type(events, PhoneHangUpSent)
    assert not heard.capped and events.index(heard) < events.index(hung_up)  # heard in full, then hung up
    assert (hung_up.method, hung_up.ok) == ("stream", True)  # no Twilio: the stream's <Connect action>
    assert [e.reason for e in of_type(events, CallEnded)] == ["agent_hangup"]
    assert row["outcome"] == "hung_up_by_agent"
    assert refused.status_code == 400 and "'transfer', 'goodbye'" in refused.json()["error"]


async def test_a_failed_tool_is_answered_with_an_apology_not_the_error_json(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(
                transcript="What's the weather in Paris?",
                function_call=FunctionCall(
                    name="get_weather_from_coords", arguments={"latitude": 48.85, "longitude": 2.35}
                ),
                after_tool="It's {temperature_c} degrees in Paris.",
            )
        ]
    )
    env = {"CALLBRIDGE_WEATHER_URL": f"http://127.0.0.1:{await closed_port()}/v1/forecast"}  # set: the real tool
    async with running_bridge(tmp_path, script=script, env=env) as bridge:
        report = await place_call(bridge.base_url, script=[Speak(900), WaitForAssistant(timeout_s=15), HangUp()])
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)

    (failed,) = of_type(events, ToolCallFailed)
    assert "unreachable" in failed.error
    assert assistant_transcripts(events) == [DEFAULT_AFTER_TOOL_ERROR]


async def test_callbridge_simulate_barge_in_interrupts_a_reply(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        finished = await trio.run_process(
            [sys.executable, "-m", "callbridge", "simulate", "--url", bridge.base_url, "--seconds", "12", "--barge-in"],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
        output = finished.stdout.decode() + finished.stderr.decode()
        (call_id,) = set(re.findall(r"CA[0-9a-f]{32}", output))
        await bridge.wait_call_ended(call_id)
        events = await bridge.events(call_id)

    assert finished.returncode == 0, output
    assert "barge-ins: 1 (1 over audio)" in output
    assert [d.action for d in of_type(events, BargeInDecided)].count("truncated") == 1
    assert of_type(events, ToolCallFailed) == []
