"""The call's tool runner: executes function calls and answers each with exactly one ``ToolResult``.

Rules, and why:

- **Concurrent.** Each ``RunTool`` runs in its own child task, so a slow tool never delays a fast
  one; results go back in the order tools finish.
- **Exactly one result per ``tool_call_id``.** The model must get one ``function_call_output`` per
  call, so every path (success, error, crash, timeout, operator silence) ends in one result. A
  second ``RunTool`` with an id already seen is ignored (logged): it would otherwise answer twice.
- **Humans.** A call the core marked ``handler="human"`` (a session tool without a backend, or a
  registered tool without a handler) waits for a ``HumanToolAnswer`` with its id (arriving on the
  same inbox) for ``human_timeout_s``, then gets an error result. A ``HumanToolAnswer`` may also
  answer a *backend* tool that is still running: **the human wins**, the backend task is cancelled
  and its late result, if any, is dropped. A person who steps in knows better than a stuck backend.
  Answers for unknown or already answered ids are ignored (logged).
- **Settling.** Each decided call is handed to ``settle`` once, as a ``ToolSettled`` carrying the
  event to record (``ToolCallCompleted``, ``source`` backend, human or the tool's own ``source``, e.g.
  ``stub``; or ``ToolCallFailed``, ``source`` ``stub`` for a stand-in) and the output; the call core
  records it and sends the output (``ToolCallRequested`` is the core's).
  ``settle`` does not wait, so a result can never be lost between the runner and the core.
- **Shutdown.** When the inbox closes (or the runner is cancelled) pending tools are cancelled and
  each is settled as ``ToolCallFailed`` ("tool runner stopped ..."); the runner returns.

Event times come from the injected ``clock`` (the call's wall clock); durations from
``trio.current_time()`` (monotonic, and the MockClock in tests).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import trio

from callbridge.engine.call_io import RunTool, ToolSettled
from callbridge.engine.events import ToolCallCompleted, ToolCallFailed
from callbridge.engine.messages import HumanToolAnswer
from callbridge.engine.tools import Tool, ToolContext, ToolOutcome, ToolRegistry, error_output, execute_tool

log = logging.getLogger(__name__)

STOPPED_ERROR = "tool runner stopped before the tool finished (the call is ending)"


ToolMessage = RunTool | HumanToolAnswer


async def run_tool_runner(
    inbox: trio.MemoryReceiveChannel[ToolMessage],
    settle: Callable[[ToolSettled], None],
    *,
    registry: ToolRegistry,
    ctx: ToolContext,
    clock: Callable[[], float],
    human_timeout_s: float = 60.0,
) -> None:
    """Serve ``inbox`` (``RunTool`` and ``HumanToolAnswer``; other messages are logged and
    ignored) until it closes; see the module docstring for the rules."""
    runner = _ToolRunner(settle, registry, ctx, clock, human_timeout_s)
    try:
        async with trio.open_nursery() as nursery:
            async for message in inbox:
                if isinstance(message, RunTool):
                    runner.start(nursery, message)
                elif isinstance(message, HumanToolAnswer):
                    runner.answer(message)
                else:
                    log.warning("tool runner ignores a %s message", type(message).__name__)
            nursery.cancel_scope.cancel()
    finally:
        runner.abandon_pending()


@dataclass(eq=False)
class _Pending:
    """One call between its ``RunTool`` and its decision."""

    call: RunTool
    tool: Tool | None
    started: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    human_output: str | None = None


class _ToolRunner:
    def __init__(
        self,
        settle: Callable[[ToolSettled], None],
        registry: ToolRegistry,
        ctx: ToolContext,
        clock: Callable[[], float],
        human_timeout_s: float,
    ) -> None:
        self._settle = settle
        self._registry = registry
        self._ctx = ctx
        self._clock = clock
        self._human_timeout_s = human_timeout_s
        self._pending: dict[str, _Pending] = {}
        self._seen: set[str] = set()

    # --- messages from the inbox (synchronous: the inbox loop never waits on a tool) ------------

    def start(self, nursery: trio.Nursery, call: RunTool) -> None:
        if call.tool_call_id in self._seen:
            log.warning("ignoring duplicate RunTool %s (%s)", call.tool_call_id, call.name)
            return
        self._seen.add(call.tool_call_id)
        pending = _Pending(call, self._registry.get(call.name), trio.current_time())
        self._pending[call.tool_call_id] = pending
        nursery.start_soon(self._serve, pending, name=f"tool {call.name} {call.tool_call_id}")

    def answer(self, message: HumanToolAnswer) -> None:
        pending = self._pending.get(message.tool_call_id)
        if pending is None:
            log.warning("ignoring operator answer for %s: no such pending tool call", message.tool_call_id)
            return
        if pending.human_output is not None:
            log.warning("ignoring second operator answer for %s", message.tool_call_id)
            return
        pending.human_output = message.output
        pending.scope.cancel()

    def abandon_pending(self) -> None:
        """Settle every undecided call as failed (the runner is stopping)."""
        for pending in list(self._pending.values()):
            self._decide(
                pending,
                ToolOutcome(
                    ok=False,
                    output=error_output(STOPPED_ERROR),
                    error=STOPPED_ERROR,
                    duration_ms=self._elapsed_ms(pending),
                ),
            )

    # --- one call's task -------------------------------------------------------------------------

    async def _serve(self, pending: _Pending) -> None:
        outcome: ToolOutcome | None = None
        with pending.scope:  # cancelled only by an operator's answer
            if pending.call.handler == "human" or (pending.tool is not None and pending.tool.handler is None):
                outcome = await self._wait_for_operator(pending)
            else:
                ctx = replace(self._ctx, tool_call_id=pending.call.tool_call_id)
                outcome = await execute_tool(pending.tool, pending.call.name, pending.call.arguments, ctx)
        self._decide(pending, outcome)

    async def _wait_for_operator(self, pending: _Pending) -> ToolOutcome:
        await trio.sleep(self._human_timeout_s)
        message = f"no answer from an operator within {self._human_timeout_s:g} s"
        return ToolOutcome(
            ok=False,
            output=error_output(message),
            error=message,
            timed_out=True,
            duration_ms=self._elapsed_ms(pending),
        )

    def _decide(self, pending: _Pending, outcome: ToolOutcome | None) -> None:
        """Settle a call once: an operator's answer beats ``outcome``."""
        call = pending.call
        del self._pending[call.tool_call_id]
        source = pending.tool.source if pending.tool is not None else "backend"
        if pending.human_output is not None:
            source = "human"
            outcome = ToolOutcome(
                ok=True, output=pending.human_output, error=None, timed_out=False, duration_ms=self._elapsed_ms(pending)
            )
        elif outcome is None:  # the scope can only be cancelled together with human_output being set
            raise AssertionError(f"tool call {call.tool_call_id} ended with neither outcome nor answer")
        event: ToolCallCompleted | ToolCallFailed
        if outcome.ok:
            event = ToolCallCompleted(
                call_id=self._ctx.call_id,
                at=self._clock(),
                tool_call_id=call.tool_call_id,
                name=call.name,
                output=outcome.output,
                duration_ms=outcome.duration_ms,
                source=source,
            )
        else:
            log.info("tool call %s (%s) failed: %s", call.tool_call_id, call.name, outcome.error)
            event = ToolCallFailed(
                call_id=self._ctx.call_id,
                at=self._clock(),
                tool_call_id=call.tool_call_id,
                name=call.name,
                error=outcome.error or "",
                output=outcome.output,
                duration_ms=outcome.duration_ms,
                timed_out=outcome.timed_out,
                source="" if source == "backend" else source,
            )
        self._settle(ToolSettled(tool_call_id=call.tool_call_id, output=outcome.output, event=event))

    @staticmethod
    def _elapsed_ms(pending: _Pending) -> float:
        return (trio.current_time() - pending.started) * 1000.0
