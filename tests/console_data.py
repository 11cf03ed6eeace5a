"""What the console's browser tests talk about: past calls, a hand-answered tool, a free port.

Kept apart from the tests so each test reads as the steps a person takes in the console.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import trio

from callbridge.engine.default_tools import default_registry
from callbridge.engine.synthetic import CallLog
from callbridge.engine.tools import Tool, ToolRegistry

TOKEN = "test-token"
"""The API token ``running_bridge`` configures."""
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


def operator_registry() -> ToolRegistry:
    """The default tools plus ``ask_operator``, which has no handler: a person answers it."""
    registry = default_registry()
    registry.register(
        Tool(
            name="ask_operator",
            description="Ask the shop's operator a question.",
            parameters={"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
        )
    )
    return registry


def past_calls() -> list[CallLog]:
    """A troubled call (tool call, barge-in, model drop, model error) and two plain ones."""
    weather = (
        CallLog("CAweather", start_at=T0, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("What's the weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temperature_c": 18})
        .assistant_says("It is eighteen degrees in Paris and sunny all afternoon.", interrupted_at_ms=1200)
        .caller_says("Sorry, will it rain tomorrow?")
        .model_drops()
        .assistant_says("No rain is expected tomorrow.")
        .model_error("rate_limit_exceeded", "Too many requests")
        .end()
    )
    plumber = (
        CallLog("CAplumber", start_at=T0 + DAY, from_number="+15550100002", to_number="+15550109999")
        .start()
        .caller_says("I need a plumber for my kitchen sink")
        .assistant_says("I can book a plumber for tomorrow morning.")
        .end()
    )
    hello = (
        CallLog("CAhello", start_at=T0 + 2 * DAY, from_number="+15550100001", to_number="+15550108888")
        .start()
        .caller_says("Hello")
        .assistant_says("Hi, how can I help?")
        .end()
    )
    return [weather, plumber, hello]


def free_port() -> int:
    """A port nothing listens on now (a restarted server must come back on the same one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def start_soon(nursery: trio.Nursery, fn: Callable[[], Awaitable[object]]) -> None:
    """Start ``fn`` in ``nursery`` (for a browser thread, through ``from_trio``)."""
    nursery.start_soon(fn)
