"""Stand-ins for a rerun's tools: the registry each call of the rerun gets (``Server(call_tools=…)``)
is wrapped so that a stubbed tool's handler answers from ``tool_answers.ToolAnswers`` instead of
running (an HTTP tool's endpoint is not called, a human tool waits for nobody).

Everything else stays the engine's: the call core asks for the tool as usual, the runner checks the
arguments against the tool's own schema, applies its timeout and records the result, as
``ToolCallCompleted`` or ``ToolCallFailed`` with ``source = "stub"`` (so checks, the diff and the
console see them as any result, marked stubbed). The tools offered to the model are unchanged: a
stubbed name the engine does not have (a session's tool, one the agent dropped) is answered when the
model calls it, never offered. A session's tool is a person's to answer in a live call: a rerun
answering from a recording answers it too (an error result and a note when the recording never
called it), since no operator is there to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from callbridge.engine.tools import Tool, ToolContext, ToolError, ToolRegistry
from callbridge.regression.tool_answers import Miss, ToolAnswers, ToolStubs

STUB_SOURCE = "stub"
ANY_OBJECT: dict[str, Any] = {"type": "object"}
"""The arguments schema of a stubbed tool the engine does not have (the stub cannot know better)."""


class StubbedTools:
    """One rerun's stand-ins, across its calls (a call back from a transfer's hold included)."""

    def __init__(self, stubs: ToolStubs, session_tools: Iterable[str] = ()) -> None:
        """``session_tools``: the function tools of the rerun's session configuration, answered by a
        person in a live call; stubbed like the others (a recorded call's: all of them), so none waits
        for an operator a test run does not have."""
        self.answers = ToolAnswers(stubs)
        self.stubs = stubs
        self.names = stubs.names() | frozenset(name for name in session_tools if stubs.stubs(name))
        """The tools answered here whether or not the engine has them."""
        self.notes: list[str] = []
        """One per tool call nothing answered (the model got an error result): for the test's result."""

    def registry(self, registry: ToolRegistry) -> ToolRegistry:
        """``registry`` with its stubbed tools answered here (``Server(call_tools=…)``)."""
        return _StubbedRegistry(registry, self)

    def tool(self, name: str, real: Tool | None) -> Tool:
        """The stand-in for ``real`` (its description, schema and timeout; None: a tool the engine lacks)."""

        async def handler(arguments: dict[str, Any], ctx: ToolContext) -> str:
            answer = self.answers.answer(name, arguments)
            if isinstance(answer, Miss):
                if answer.note not in self.notes:
                    self.notes.append(answer.note)
                raise ToolError(answer.message)
            if answer.error is not None:
                raise ToolError(answer.error)
            return answer.output

        if real is None:
            return Tool(name=name, description="", parameters=ANY_OBJECT, handler=handler, source=STUB_SOURCE)
        return replace(real, handler=handler, source=STUB_SOURCE)


class _StubbedRegistry(ToolRegistry):
    """The engine's tools in their order, the stubbed ones answered by ``StubbedTools``; a stubbed
    name it does not have is answered too (a backend answers it), but not offered (no schema)."""

    def __init__(self, base: ToolRegistry, stubbed: StubbedTools) -> None:
        super().__init__()
        for name in base.names():
            real = base.get(name)
            assert real is not None
            self.register(stubbed.tool(name, real) if stubbed.stubs.stubs(name) else real)
        self._extra = {name: stubbed.tool(name, None) for name in stubbed.names if base.get(name) is None}

    def get(self, name: str) -> Tool | None:
        return super().get(name) or self._extra.get(name)

    def backend_names(self) -> frozenset[str]:
        return super().backend_names() | frozenset(self._extra)
