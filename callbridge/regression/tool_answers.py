"""What answers a rerun's tool calls instead of the tools: the test file's stubs, then what the
recorded call's tools answered.

A rerun must not book the table twice: a recorded call's tools answer from the recording, each call
with the output recorded for the same tool name: when the tool was called several times, the one
called with the same arguments, else the next one not used yet, in the order they were called (a
question asked again with the same arguments gets the same answer again). A recorded failure fails
the same way. A call with no recorded counterpart is a miss: the model gets an error result, and the
run says so. A scenario's tools run for real unless its file stubs them (``stub_spec.py``); a test
file's stubs answer before the recording. The engine's built-ins are never answered here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from callbridge.engine.builtin_tools import NAMES as BUILTIN_NAMES
from callbridge.engine.events import Event, ToolCallCompleted, ToolCallFailed, ToolCallRequested
from callbridge.regression.stub_spec import ToolStub


class RecordedAnswer(msgspec.Struct, frozen=True):
    arguments: str
    """The JSON the model sent then."""
    output: str
    """What the model got (for a failure, its error result)."""
    error: str | None = None
    """It failed, with this message."""


def recorded_answers(events: Sequence[Event]) -> dict[str, tuple[RecordedAnswer, ...]]:
    """Each tool's answered calls in a recorded call, in the order they were asked for (built-ins, and
    calls the call ended before answering, left out)."""
    requested: list[ToolCallRequested] = []
    answered: dict[str, RecordedAnswer] = {}
    for event in events:
        if isinstance(event, ToolCallRequested) and event.handler != "builtin" and event.name not in BUILTIN_NAMES:
            requested.append(event)
        elif isinstance(event, ToolCallCompleted):
            answered[event.tool_call_id] = RecordedAnswer("", event.output)
        elif isinstance(event, ToolCallFailed):
            answered[event.tool_call_id] = RecordedAnswer("", event.output, event.error)
    found: dict[str, list[RecordedAnswer]] = {}
    for request in requested:
        answer = answered.get(request.tool_call_id)
        if answer is not None:
            found.setdefault(request.name, []).append(msgspec.structs.replace(answer, arguments=request.arguments))
    return {name: tuple(answers) for name, answers in found.items()}


@dataclass(frozen=True)
class ToolStubs:
    """What a rerun's tools answer with (a ``RerunPlan``'s)."""

    given: dict[str, tuple[ToolStub, ...]] = field(default_factory=dict)
    """The test file's ``[tools.NAME]`` stubs."""
    recorded: dict[str, tuple[RecordedAnswer, ...]] | None = None
    """The recorded call's answers; None: not answering from a recording (a scenario, ``--live-tools``)."""
    call_id: str = ""
    """The recorded call (for the messages)."""

    def stubs(self, name: str) -> bool:
        """Is a call of ``name`` answered here (not by the tool)?"""
        return name not in BUILTIN_NAMES and (name in self.given or self.recorded is not None)

    def names(self) -> frozenset[str]:
        """The tools answered here whether or not the engine has them (a session's tool, a removed one)."""
        return frozenset((*self.given, *(self.recorded or {}))) - BUILTIN_NAMES


@dataclass(frozen=True)
class Answer:
    output: str
    error: str | None = None


@dataclass(frozen=True)
class Miss:
    """Nothing to answer a call with: the model gets ``message`` as an error; ``note`` tells the reader."""

    message: str
    note: str


class ToolAnswers:
    """One rerun's answering: which recorded answers were used is remembered across its calls."""

    def __init__(self, stubs: ToolStubs) -> None:
        self.stubs = stubs
        self._used: dict[str, set[int]] = {}

    def answer(self, name: str, arguments: dict[str, Any]) -> Answer | Miss:
        text = compact(arguments)
        given = self.stubs.given.get(name)
        if given is not None:
            stub = next((stub for stub in given if stub.matches(text)), None)
            if stub is not None:
                return _stub_answer(stub)
            if self.stubs.recorded is None or name not in self.stubs.recorded:
                return Miss(
                    f"no stub of {name} in the test file matches these arguments",
                    f"tool {name} was called with {text}, which none of its [tools.{name}] stubs matches "
                    "(their arguments regexes): it got an error result",
                )
        recorded = (self.stubs.recorded or {}).get(name, ())
        index = self._pick(name, recorded, arguments)
        if index is None:
            had = f"its {len(recorded)} answer(s) of {name} were used up" if recorded else f"it never called {name}"
            return Miss(
                f"no recorded answer for {name} (callbridge test answers tools from the recorded call)",
                f"tool {name} was called with {text}, and the recorded call {self.stubs.call_id} has no answer "
                f"for it ({had}): it got an error result; --live-tools runs the tools for real",
            )
        self._used.setdefault(name, set()).add(index)
        return Answer(recorded[index].output, recorded[index].error)

    def _pick(self, name: str, recorded: Sequence[RecordedAnswer], arguments: dict[str, Any]) -> int | None:
        """The same arguments not used yet, else the next not used yet, else the same arguments again."""
        used = self._used.get(name, set())
        same = [index for index, answer in enumerate(recorded) if _parsed(answer.arguments) == arguments]
        fresh = [index for index in range(len(recorded)) if index not in used]
        for index in same:
            if index not in used:
                return index
        if fresh:
            return fresh[0]
        return same[0] if same else None


def compact(arguments: dict[str, Any]) -> str:
    """Arguments as a stub's ``arguments`` regex searches them: ``{"order":"1234"}``."""
    return json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)


def _stub_answer(stub: ToolStub) -> Answer:
    if stub.error is not None:
        return Answer("", stub.error)
    output = stub.output if isinstance(stub.output, str) else json.dumps(stub.output, ensure_ascii=False)
    return Answer(output)


def _parsed(arguments: str) -> Any:
    try:
        return json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return None
