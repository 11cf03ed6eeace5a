"""Recorded calls for the regression tests: a real call through the real bridge (simulated caller and
model, real sockets) into a store in the test's folder, answered by an agent file."""

from __future__ import annotations

from pathlib import Path

import trio
from bridge_harness import running_bridge

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import Silence, Speak, Step, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.agent import load_agent

AGENT_TOML = """\
greeting = "Acme Plumbing, how can I help?"

[[transfer_targets]]
label = "sales"
to = "+15557654321"
"""
"""The agent that answered the recorded call: it greets, and it may transfer to sales."""

WEATHER = FunctionCall(name="get_weather_from_coords", arguments={"latitude": 37.77, "longitude": -122.42})
TRANSFER = FunctionCall(name="transfer_call", arguments={"target": "sales", "reason": "wants a new boiler"})
SCRIPT = Script(
    turns=[
        Turn(
            transcript="What's the weather at the depot?",
            function_call=WEATHER,
            after_tool="It is {temperature_c} degrees.",
        ),
        Turn(transcript="Put me through to sales please", function_call=TRANSFER, after_tool="Transferring you now."),
    ]
)
CALLER: list[Step] = [
    WaitForAssistant(timeout_s=10),
    Speak(900),
    WaitForAssistant(timeout_s=10),
    Silence(300),
    Speak(800),
    WaitForHangUp(timeout_s=20),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def record_call(folder: Path, agent_file: Path) -> str:
    """One call recorded in ``folder/callbridge.db``: the greeting, a weather question (a tool), then
    a transfer to sales (the call ends transferred). Returns its CallSid."""

    async def run() -> str:
        async with running_bridge(folder, script=SCRIPT, agent=load_agent(agent_file)) as bridge:
            with trio.fail_after(40):
                report = await place_call(bridge.base_url, script=CALLER)
                await bridge.wait_call_ended(report.call_sid)
            assert report.errors == [], report.errors
            return report.call_sid

    return trio.run(run)
