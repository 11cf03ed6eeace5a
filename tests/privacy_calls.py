"""A call with something to hide, for the erasure and redaction tests: a caller number, a phrase in
both transcripts, a tool argument and a tool output that appear nowhere else, placed over the real
Twilio and OpenAI wire protocols against a running bridge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bridge_harness import Bridge

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.tools import Tool, ToolContext, ToolRegistry

CALLER_NUMBER = "+15557770123"
PHRASE = "purple elephant marmalade"
ORDER = "ORD-ZEBRA-7731"
TOOL_OUTPUT = "shipped-by-carrier-owl"
SECRETS = (CALLER_NUMBER, "marmalade", ORDER, TOOL_OUTPUT)
"""Each must be gone from every file once the call is erased."""

SCRIPT = Script(
    turns=[
        Turn(
            transcript=f"Where is my order {ORDER}? It has the {PHRASE} in it.",
            function_call=FunctionCall(name="lookup_order", arguments={"order": ORDER}),
            after_tool="Your order is {status}, with the " + PHRASE + ".",
        )
    ]
)
ONE_TURN = [Speak(900), WaitForAssistant(timeout_s=15), HangUp()]


def order_registry() -> ToolRegistry:
    async def lookup(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return {"order": arguments.get("order"), "status": TOOL_OUTPUT}

    registry = ToolRegistry()
    registry.register(
        Tool(
            name="lookup_order",
            description="Where an order is",
            parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
            handler=lookup,
        )
    )
    return registry


async def place_secret_call(bridge: Bridge) -> str:
    """Place the call and wait until it has ended; its CallSid."""
    report = await place_call(bridge.base_url, script=ONE_TURN, from_number=CALLER_NUMBER)
    assert report.ok, report.errors
    await bridge.wait_call_ended(report.call_sid)
    await bridge.server.writer.flush()
    return report.call_sid


def files_holding(folder: Path, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """``{file: [needle, ...]}`` for every file under ``folder`` whose bytes contain a needle."""
    found: dict[str, list[str]] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits = [needle for needle in needles if needle.encode() in data]
            if hits:
                found[str(path.relative_to(folder))] = hits
    return found
