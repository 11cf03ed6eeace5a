"""The synthetic call logs (``engine/synthetic.py``) are honest: each golden scenario the projection,
API and MCP tests build with ``CallLog`` is also run through the real engine, over real sockets, with
the simulated caller and model, and the two logs must tell the same story.

What "the same" means (``log_shape``):

- **The sequence of event types.** A model event counts as its own type (``ModelEventReceived`` of
  ``response.done`` is not one of ``session.created``). Events whose number and place depend on
  timing are taken out of the sequence and compared on their own (their fields, below): the audio
  streams (``CallerAudioReceived``, ``AssistantAudioSent``, ``AssistantAudioPlayed``, which interleave
  with everything else as the sockets' clocks allow) and ``EngineHeartbeat``. What remains is
  collapsed where it repeats a number of times that depends on how text was cut into pieces: a run
  of the same type, or of the same pair of types (a model's transcript ``…delta`` pieces and the
  ``TranscriptDelta`` the engine records for each writer window of them, N times), counts once.
- **For each type, the fields that are set.** Every distinct set of fields an event of that type
  carries with a value other than its default; for a model event, also the top-level keys of its
  JSON. Values themselves (ids, times, texts) differ between the runs and are not compared.

Compared: the normal call, a tool call (answered, and failed), a barge-in, a reconnect (the drop
between the turns: a drop while the model answers would race its answer) and a key press. Not
compared: the ``crashed_call`` golden log, the normal call cut short (a process that died), which no
clean run records. The last test shows the comparison itself sees a missing event and a field set.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from bridge_harness import Bridge, running_bridge
from test_projections_support import STORY, barge_in_call, normal_call

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import BargeIn, Dtmf, HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallEnded,
    CallerAudioReceived,
    EngineHeartbeat,
    Event,
    ModelEventReceived,
    ModelEventSent,
    ToolCallFailed,
    TwilioSocketClosed,
)
from callbridge.engine.synthetic import CallLog
from callbridge.engine.tools import Tool, ToolContext, ToolError, ToolRegistry

STREAMED = (CallerAudioReceived, AssistantAudioSent, AssistantAudioPlayed, EngineHeartbeat)


def type_of(event: Event) -> str:
    if isinstance(event, ModelEventReceived | ModelEventSent):
        direction = "received" if isinstance(event, ModelEventReceived) else "sent"
        return f"{direction} {event.type}"
    return type(event).__name__


def fields_set(event: Event) -> frozenset[str]:
    """The fields of ``event`` whose value is not the default (the model's JSON keys as ``raw.KEY``)."""
    info = msgspec.inspect.type_info(type(event))
    assert isinstance(info, msgspec.inspect.StructType)
    names = set()
    for field in info.fields:
        value = getattr(event, field.name)
        default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory
        if field.required or (
            default is not msgspec.NODEFAULT and value != (default() if callable(default) else default)
        ):
            names.add(field.name)
    if isinstance(event, ModelEventReceived | ModelEventSent):
        names |= {f"raw.{key}" for key in json.loads(event.raw)}
    return frozenset(names)


def collapsed(types: Iterable[str]) -> list[str]:
    """``types`` with repeated runs of one type, or of one pair of types, counted once."""
    out: list[str] = []
    for kind in types:
        out.append(kind)
        if len(out) >= 2 and out[-1] == out[-2]:
            out.pop()
        elif len(out) >= 4 and out[-2:] == out[-4:-2]:
            del out[-2:]
    return out


def log_shape(events: list[Event]) -> tuple[list[str], dict[str, set[frozenset[str]]]]:
    """(the collapsed sequence of non-streamed types, each type's distinct sets of fields set)."""
    sequence = collapsed(type_of(e) for e in events if not isinstance(e, STREAMED))
    shapes: dict[str, set[frozenset[str]]] = {}
    for event in events:
        shapes.setdefault(type_of(event), set()).add(fields_set(event))
    return sequence, shapes


def assert_same_shape(real: list[Event], synthetic: list[Event]) -> None:
    real_sequence, real_fields = log_shape(real)
    synthetic_sequence, synthetic_fields = log_shape(synthetic)
    diff = "\n".join(difflib.unified_diff(real_sequence, synthetic_sequence, "engine", "synthetic", lineterm=""))
    differing = [
        f"{kind}: engine {sorted(sorted(s) for s in real_fields.get(kind, set()))}, "
        f"synthetic {sorted(sorted(s) for s in synthetic_fields.get(kind, set()))}"
        for kind in sorted(real_fields.keys() | synthetic_fields.keys())
        if real_fields.get(kind) != synthetic_fields.get(kind)
    ]
    assert (synthetic_sequence, differing) == (real_sequence, []), diff + "\n" + "\n".join(differing)


async def recorded_call(
    tmp_path: Path, script: Script, caller: list[Step], *, after_first_answer: Any = None, **bridge: Any
) -> list[Event]:
    """The call's stored events. ``after_first_answer`` (an async function of the bridge) runs once
    the engine has read the model's first ``response.done``."""
    async with running_bridge(tmp_path, script=script, **bridge) as running:
        async with trio.open_nursery() as nursery:
            reports = []

            async def call() -> None:
                reports.append(await place_call(running.base_url, script=caller))

            nursery.start_soon(call)
            if after_first_answer is not None:
                session = await running.fake.wait_for_session(1)
                await session.wait_for_server("response.done")
                await trio.testing.wait_all_tasks_blocked()  # the engine has read it (loopback delivers at once)
                await after_first_answer(running)
        [report] = reports
        await running.wait_call_ended(report.call_sid)
        events = await running.events(report.call_sid)
    assert report.ok, report.errors
    return events


async def test_the_normal_call_is_what_the_engine_records(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript="Hi, what are your opening hours?", reply="We are open from nine to five.")])
    real = await recorded_call(tmp_path, script, [Speak(900), WaitForAssistant(15), HangUp()])
    assert_same_shape(real, normal_call().events)


def weather_registry(answered: trio.Event, *, fails: bool = False) -> ToolRegistry:
    """A tool that answers (or fails) once ``answered`` is set (the synthetic tool takes 300 ms:
    the model's ``response.done`` comes before its output; an instant tool would race it)."""

    async def get_weather(args: dict[str, object], ctx: ToolContext) -> dict[str, object]:
        await answered.wait()
        if fails:
            raise ToolError("forecast service timed out")
        return {"temp_c": 21}

    registry = ToolRegistry()
    registry.register(
        Tool(
            name="get_weather",
            description="Weather in a city",
            parameters={"type": "object", "properties": {"city": {"type": "string"}}},
            handler=get_weather,
        )
    )
    return registry


async def tool_call_recorded(tmp_path: Path, *, fails: bool) -> list[Event]:
    turn = Turn(
        transcript="Weather in Paris?",
        function_call=FunctionCall(name="get_weather", arguments={"city": "Paris"}),
        after_tool="It is {temp_c} degrees in Paris.",
    )
    answered = trio.Event()

    async def answer(_: Any) -> None:
        answered.set()

    caller: list[Step] = [Speak(900), WaitForAssistant(15), HangUp()]
    registry = weather_registry(answered, fails=fails)
    return await recorded_call(tmp_path, Script(turns=[turn]), caller, after_first_answer=answer, registry=registry)


async def test_a_tool_call_is_what_the_engine_records(tmp_path: Path) -> None:
    real = await tool_call_recorded(tmp_path, fails=False)
    synthetic = (
        CallLog("CAtool")
        .start()
        .caller_says("Weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temp_c": 21})
        .assistant_says("It is 21 degrees in Paris.")
        .end()
    )
    assert_same_shape(real, synthetic.events)


async def test_a_failed_tool_call_is_what_the_engine_records(tmp_path: Path) -> None:
    real = await tool_call_recorded(tmp_path, fails=True)
    synthetic = (
        CallLog("CAtool")
        .start()
        .caller_says("Weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, "forecast service timed out", failed=True)
        .assistant_says("Sorry, I couldn't look that up right now.")
        .end()
    )
    assert_same_shape(real, synthetic.events)
    [failed] = [e for e in real if isinstance(e, ToolCallFailed)]
    [synthetic_failed] = [e for e in synthetic.events if isinstance(e, ToolCallFailed)]
    assert (synthetic_failed.error, synthetic_failed.output) == (failed.error, failed.output)


async def test_a_barge_in_is_what_the_engine_records(tmp_path: Path) -> None:
    script = Script(
        turns=[Turn(transcript="Tell me a long story", reply=STORY * 3), Turn(transcript="Stop, thanks", reply="Okay!")]
    )
    caller: list[Step] = [Speak(900), BargeIn(after_ms=600, speak_ms=900), WaitForAssistant(15), HangUp()]
    real = await recorded_call(tmp_path, script, caller)
    assert_same_shape(real, barge_in_call().events)


async def test_a_reconnect_is_what_the_engine_records(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(transcript="Hello there", reply="Hi! How can I help?"),
            Turn(transcript="Book a table", reply="Done."),
        ]
    )
    caller: list[Step] = [Speak(900), WaitForAssistant(15), Silence(1500), Speak(900), WaitForAssistant(15), HangUp()]

    async def drop(bridge: Bridge) -> None:
        await bridge.fake.drop_all()

    real = await recorded_call(tmp_path, script, caller, after_first_answer=drop)
    # the golden reconnect_call drops after the second question; here the drop comes between the
    # turns (a drop while the model answers would race its answer): the same builder steps, in the
    # order this run took
    synthetic = (
        CallLog("CAreconn")
        .start()
        .caller_says("Hello there")
        .assistant_says("Hi! How can I help?")
        .model_drops(downtime_ms=400)
        .caller_says("Book a table")
        .assistant_says("Done.")
        .end()
    )
    assert_same_shape(real, synthetic.events)


async def test_a_keypress_is_what_the_engine_records(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript="Hi, what are your opening hours?", reply="We are open from nine to five.")])
    caller: list[Step] = [Speak(900), WaitForAssistant(15), Dtmf("7"), WaitForAssistant(15), HangUp()]
    real = await recorded_call(tmp_path, script, caller)
    synthetic = (
        CallLog("CAkeys")
        .start()
        .caller_says("Hi, what are your opening hours?")
        .assistant_says("We are open from nine to five.")
        .dtmf("7", forward=True)
        .assistant_says(script.fallback_reply)  # the model answers the key it was told of
        .end()
    )
    assert_same_shape(real, synthetic.events)


def test_the_comparison_sees_a_missing_event_and_a_field_set() -> None:
    log = normal_call().events
    assert_same_shape(log, log)
    with pytest.raises(AssertionError, match="TwilioSocketClosed"):
        assert_same_shape(log, [e for e in log if not isinstance(e, TwilioSocketClosed)])
    detailed = [msgspec.structs.replace(e, detail="why") if isinstance(e, CallEnded) else e for e in log]
    with pytest.raises(AssertionError, match="CallEnded"):
        assert_same_shape(log, detailed)
    assert collapsed(["a", "a", "b", "c", "b", "c", "b", "c", "d"]) == ["a", "b", "c", "d"]
