"""Specification of engine/tool_runner.py: one settled result per call, concurrently, with operators,
timeouts and shutdown, and the events it settles with."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from callbridge.engine.call_io import RunTool, ToolSettled
from callbridge.engine.events import Event, ToolCallCompleted, ToolCallFailed
from callbridge.engine.messages import HumanToolAnswer
from callbridge.engine.tool_runner import STOPPED_ERROR, ToolMessage, run_tool_runner
from callbridge.engine.tools import Handler, Tool, ToolContext, ToolRegistry

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


class NoHttp:
    async def get_json(self, url: str, params: dict[str, str], timeout_s: float) -> Any:
        raise AssertionError("no tool in these tests uses HTTP")


def tool(name: str, handler: Handler | None, timeout_s: float = 10.0) -> Tool:
    return Tool(name=name, description=name, parameters=PARAMETERS, handler=handler, timeout_s=timeout_s)


async def forecast(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    return {"city": arguments["city"], "temperature_c": 3.1}


def registry_of(*tools: Tool) -> ToolRegistry:
    registry = ToolRegistry()
    for item in tools:
        registry.register(item)
    return registry


def run(tool_call_id: str, name: str, city: str = "Paris", handler: str = "backend") -> RunTool:
    return RunTool(tool_call_id=tool_call_id, name=name, arguments=json.dumps({"city": city}), handler=handler)


@dataclass(frozen=True)
class ToolResult:
    """What the model gets for one call, read off a ``ToolSettled``."""

    tool_call_id: str
    name: str
    output: str
    ok: bool

    @classmethod
    def of(cls, settled: ToolSettled) -> ToolResult:
        event = settled.event
        assert isinstance(event, ToolCallCompleted | ToolCallFailed)
        return cls(settled.tool_call_id, event.name, settled.output, isinstance(event, ToolCallCompleted))


@dataclass
class Runner:
    inbox: trio.MemorySendChannel[ToolMessage]
    results: trio.MemoryReceiveChannel[ToolResult]
    events: list[Event] = field(default_factory=list)
    stopped: trio.Event = field(default_factory=trio.Event)
    stopping: bool = False

    async def stop(self) -> None:
        """Close the inbox and wait for the runner to return (what it settles then is recorded only)."""
        self.stopping = True
        await self.inbox.aclose()
        await self.stopped.wait()

    def no_more_results(self) -> bool:
        try:
            self.results.receive_nowait()
        except trio.WouldBlock:
            return True
        return False


@asynccontextmanager
async def running(registry: ToolRegistry, human_timeout_s: float = 60.0) -> AsyncIterator[Runner]:
    inbox_send, inbox_receive = trio.open_memory_channel[ToolMessage](10)
    results_send, results_receive = trio.open_memory_channel[ToolResult](10)
    runner = Runner(inbox_send, results_receive)
    ticks = itertools.count(1_700_000_000)

    def settle(settled: ToolSettled) -> None:
        runner.events.append(settled.event)
        if not runner.stopping:
            results_send.send_nowait(ToolResult.of(settled))

    async def serve() -> None:
        await run_tool_runner(
            inbox_receive,
            settle,
            registry=registry,
            ctx=ToolContext(call_id="CA42", http=NoHttp()),
            clock=lambda: float(next(ticks)),
            human_timeout_s=human_timeout_s,
        )
        runner.stopped.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve)
        yield runner
        if not runner.stopped.is_set():
            await runner.stop()


# --- backend tools -----------------------------------------------------------------------------


async def test_a_backend_tool_answers_once_and_is_recorded() -> None:
    async with running(registry_of(tool("forecast", forecast))) as runner:
        await runner.inbox.send(run("call_1", "forecast"))
        result = await runner.results.receive()
        await runner.stop()

    assert result == ToolResult(tool_call_id="call_1", name="forecast", output=result.output, ok=True)
    assert json.loads(result.output) == {"city": "Paris", "temperature_c": 3.1}  # JSON text, decoded once
    assert runner.no_more_results()
    [event] = runner.events
    assert isinstance(event, ToolCallCompleted)
    assert event.call_id == "CA42"
    assert event.at == 1_700_000_000.0  # from the injected clock
    assert (event.tool_call_id, event.name, event.output, event.source) == (
        "call_1",
        "forecast",
        result.output,
        "backend",
    )
    assert event.duration_ms >= 0.0


async def test_unknown_tool_and_bad_arguments_still_get_one_error_result_each() -> None:
    async with running(registry_of(tool("forecast", forecast))) as runner:
        await runner.inbox.send(run("call_1", "teleport"))
        unknown = await runner.results.receive()
        await runner.inbox.send(RunTool(tool_call_id="call_2", name="forecast", arguments="{oops", handler="backend"))
        bad = await runner.results.receive()
        await runner.stop()

    assert (unknown.ok, json.loads(unknown.output)) == (False, {"error": "unknown tool teleport"})
    assert not bad.ok
    assert json.loads(bad.output)["error"].startswith("invalid arguments for forecast: not valid JSON")
    failed = [event for event in runner.events if isinstance(event, ToolCallFailed)]
    assert [(event.tool_call_id, event.output, event.timed_out) for event in failed] == [
        ("call_1", unknown.output, False),
        ("call_2", bad.output, False),
    ]
    assert failed[0].error == "unknown tool teleport"


async def test_a_crashing_tool_gets_an_error_result_and_the_runner_keeps_serving() -> None:
    async def crash(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise KeyError("boom")

    async with running(registry_of(tool("crash", crash), tool("forecast", forecast))) as runner:
        await runner.inbox.send(run("call_1", "crash"))
        crashed = await runner.results.receive()
        await runner.inbox.send(run("call_2", "forecast", city="Oslo"))
        fine = await runner.results.receive()
        await runner.stop()

    assert not crashed.ok
    assert json.loads(crashed.output) == {"error": "tool crash failed: KeyError: 'boom'"}
    assert fine.ok and json.loads(fine.output)["city"] == "Oslo"
    assert [type(event).__name__ for event in runner.events] == ["ToolCallFailed", "ToolCallCompleted"]


async def test_a_tool_that_runs_too_long_is_recorded_as_timed_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hang(arguments: dict[str, Any], ctx: ToolContext) -> str:
        await trio.sleep_forever()
        return "never"

    async with running(registry_of(tool("hang", hang, timeout_s=5.0))) as runner:
        await runner.inbox.send(run("call_1", "hang"))
        result = await runner.results.receive()
        await runner.stop()

    assert not result.ok
    assert json.loads(result.output) == {"error": "tool hang timed out after 5 s"}
    [event] = runner.events
    assert isinstance(event, ToolCallFailed)
    assert event.timed_out
    assert event.duration_ms == pytest.approx(5000.0)
    assert event.error == "tool hang timed out after 5 s"


async def test_tools_run_in_parallel_and_the_fast_one_answers_first() -> None:
    release_slow = trio.Event()

    async def slow(arguments: dict[str, Any], ctx: ToolContext) -> str:
        await release_slow.wait()
        return "slow done"

    async with running(registry_of(tool("slow", slow), tool("forecast", forecast))) as runner:
        await runner.inbox.send(run("call_slow", "slow"))
        await runner.inbox.send(run("call_fast", "forecast"))
        first = await runner.results.receive()  # the slow tool is still waiting here
        release_slow.set()
        second = await runner.results.receive()
        await runner.stop()

    assert (first.tool_call_id, second.tool_call_id) == ("call_fast", "call_slow")
    assert second.output == "slow done"


async def test_a_duplicate_run_tool_is_ignored() -> None:
    calls = 0

    async def counted(arguments: dict[str, Any], ctx: ToolContext) -> int:
        nonlocal calls
        calls += 1
        return calls

    async with running(registry_of(tool("counted", counted))) as runner:
        await runner.inbox.send(run("call_1", "counted"))
        first = await runner.results.receive()
        await runner.inbox.send(run("call_1", "counted"))
        await runner.inbox.send(run("call_2", "counted"))
        second = await runner.results.receive()
        await runner.stop()

    assert (first.tool_call_id, first.output) == ("call_1", "1")
    assert (second.tool_call_id, second.output) == ("call_2", "2")
    assert calls == 2
    assert runner.no_more_results()


# --- operators ---------------------------------------------------------------------------------


async def test_an_operator_answers_a_human_tool() -> None:
    async with running(registry_of(tool("ask_operator", None))) as runner:
        await runner.inbox.send(run("call_1", "ask_operator"))
        await runner.inbox.send(HumanToolAnswer(tool_call_id="call_1", output='{"approved": true}'))
        result = await runner.results.receive()
        await runner.stop()

    assert result == ToolResult(tool_call_id="call_1", name="ask_operator", output='{"approved": true}', ok=True)
    [event] = runner.events
    assert isinstance(event, ToolCallCompleted)
    assert (event.source, event.output, event.call_id) == ("human", '{"approved": true}', "CA42")


async def test_an_operator_who_never_answers_gets_an_error_result(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(registry_of(tool("ask_operator", None)), human_timeout_s=60.0) as runner:
        await runner.inbox.send(run("call_1", "ask_operator"))
        result = await runner.results.receive()
        await runner.inbox.send(HumanToolAnswer(tool_call_id="call_1", output="too late"))
        await runner.stop()

    assert not result.ok
    assert json.loads(result.output) == {"error": "no answer from an operator within 60 s"}
    assert runner.no_more_results()  # the late answer changed nothing
    [event] = runner.events
    assert isinstance(event, ToolCallFailed)
    assert event.timed_out
    assert event.duration_ms == pytest.approx(60_000.0)


async def test_an_operator_answer_beats_a_running_backend_tool() -> None:
    started = trio.Event()
    backend_cancelled = False

    async def stuck(arguments: dict[str, Any], ctx: ToolContext) -> str:
        nonlocal backend_cancelled
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            backend_cancelled = True
            raise
        return "never"

    async with running(registry_of(tool("stuck", stuck))) as runner:
        await runner.inbox.send(run("call_1", "stuck"))
        await started.wait()
        await runner.inbox.send(HumanToolAnswer(tool_call_id="call_1", output="It is sunny."))
        await runner.inbox.send(HumanToolAnswer(tool_call_id="call_1", output="second answer"))
        result = await runner.results.receive()
        await runner.stop()

    assert result == ToolResult(tool_call_id="call_1", name="stuck", output="It is sunny.", ok=True)
    assert backend_cancelled
    assert runner.no_more_results()
    [event] = runner.events
    assert isinstance(event, ToolCallCompleted) and event.source == "human"


async def test_an_answer_for_an_unknown_call_is_ignored() -> None:
    async with running(registry_of(tool("forecast", forecast))) as runner:
        await runner.inbox.send(HumanToolAnswer(tool_call_id="nobody", output="hello"))
        await runner.inbox.send(run("call_1", "forecast"))
        result = await runner.results.receive()
        await runner.stop()

    assert result.tool_call_id == "call_1" and result.ok
    assert runner.no_more_results()
    assert len(runner.events) == 1


# --- shutdown ----------------------------------------------------------------------------------------


async def test_closing_the_inbox_cancels_pending_tools_and_records_them() -> None:
    started = trio.Event()
    backend_cancelled = False

    async def stuck(arguments: dict[str, Any], ctx: ToolContext) -> str:
        nonlocal backend_cancelled
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            backend_cancelled = True
            raise
        return "never"

    async with running(registry_of(tool("stuck", stuck), tool("ask_operator", None))) as runner:
        await runner.inbox.send(run("call_1", "stuck"))
        await runner.inbox.send(run("call_2", "ask_operator"))
        await started.wait()
        await runner.stop()

    assert backend_cancelled
    assert runner.no_more_results()
    failed = [event for event in runner.events if isinstance(event, ToolCallFailed)]
    assert len(failed) == len(runner.events)
    assert sorted(event.tool_call_id for event in failed) == ["call_1", "call_2"]
    for event in failed:
        assert event.error == STOPPED_ERROR
        assert json.loads(event.output) == {"error": STOPPED_ERROR}
