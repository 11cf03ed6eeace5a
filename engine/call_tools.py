"""The call core's tool calls: each answered exactly once, whoever answers it — pure.

Part of the model side (``engine/call_model.py``). Each finished function call is handed to the
tool runner, as a backend call or one an operator answers (a session tool without a backend), or
answered here by a built-in (``end_call``, ``transfer_call``, ``send_dtmf``: call control); its
output goes to the model exactly once, or waits for the next session when none is open;
``response.create`` follows only when nothing is running and every output is in
(``engine/response_gate.py``); a slow tool gets a short "one moment" instead of silence
(``engine/tool_wait.py``); a crashed runner still answers each of its calls (with an error).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from callbridge.engine.builtin_tools import NAMES as BUILTIN_NAMES
from callbridge.engine.builtin_tools import SEND_DTMF, builtin_arguments, builtin_schemas
from callbridge.engine.call_io import CancelTimer, LogLine, RunTool, StartTimer, Timer, ToolRunnerLost, ToolSettled
from callbridge.engine.call_state import OFFLINE
from callbridge.engine.events import ToolCallCompleted, ToolCallFailed, ToolCallRequested
from callbridge.engine.offered_tools import handler_of
from callbridge.engine.tool_wait import RETRY_S, TOOL_WAIT_RESPONSE, ToolWait
from callbridge.engine.tools import error_output

if TYPE_CHECKING:
    from callbridge.engine.call_model import ModelSide

_json = msgspec.json.Encoder()

RUNNER_LOST_ERROR = "the tool runner crashed; the call was not completed"


class ToolCalls:
    def __init__(self, model: ModelSide) -> None:
        self.model = model
        self.core = model.core
        self.out = model.out
        self.tool_wait = ToolWait(self.core.config.tool_wait_announce_s)
        self.unsent_outputs: list[tuple[str, str]] = []
        """(tool_call_id, output) settled while no session was open."""
        self.answered: set[str] = set()
        """Tool calls whose output has been decided (each gets exactly one)."""
        self.requested: dict[str, str] = {}
        """tool_call_id -> name, for every call the model asked for."""
        self.builtins = builtin_schemas(self.core.config.agent)
        self.builtin_names = BUILTIN_NAMES & {tool["name"] for tool in self.builtins}

    def send_unsent(self) -> None:
        """A fresh first session: the outputs settled while none was open."""
        for tool_call_id, output in self.unsent_outputs:
            self.send_output(tool_call_id, output)

    def _handler_of(self, name: str) -> str:
        return handler_of(name, builtin_names=self.builtin_names, backend_names=self.core.config.backend_tools)

    def function_call(self, event: Any) -> None:
        tool_call_id = str(event.call_id)
        if tool_call_id in self.requested:
            self.out.emit(LogLine(level=logging.WARNING, message=f"duplicate function call {tool_call_id} ignored"))
            return
        handler = self._handler_of(event.name)
        self.requested[tool_call_id] = event.name
        requested = ToolCallRequested(
            call_id=self.core.config.call_id,
            at=self.out.now,
            tool_call_id=tool_call_id,
            name=event.name,
            arguments=event.arguments,
            response_id=event.response_id,
            item_id=event.item_id,
            handler=handler,
        )
        if handler == "builtin":
            self.out.record(requested)
            args = builtin_arguments(event.arguments)
            if event.name == SEND_DTMF:
                self.core.keypad.send(tool_call_id, str(args.get("digits") or ""))
            else:
                self.core.control.builtin_call(tool_call_id, event.name, args, event.response_id)
            return
        self.model.gate.tool_requested(tool_call_id)
        delay = self.tool_wait.tool_started()
        if delay is not None:
            self.out.emit(StartTimer(timer=Timer.TOOL_WAIT, delay_s=delay))
        self.out.record(requested)
        self.out.emit(RunTool(tool_call_id=tool_call_id, name=event.name, arguments=event.arguments, handler=handler))

    def settled(self, given: ToolSettled) -> None:
        tool_call_id = given.tool_call_id
        if tool_call_id in self.answered or tool_call_id not in self.requested:
            why = "already answered" if tool_call_id in self.answered else "never requested"
            self.out.emit(LogLine(level=logging.WARNING, message=f"tool result for {tool_call_id} dropped: {why}"))
            return
        self.answered.add(tool_call_id)
        self.out.record(given.event)
        self.model.gate.output_arrived(tool_call_id)
        if not self.model.gate.awaiting_outputs and self.tool_wait.all_answered():
            self.out.emit(CancelTimer(timer=Timer.TOOL_WAIT))
        if self.model.connected:
            self.send_output(tool_call_id, given.output)
            self.model.maybe_create_response()
        elif self.core.state in OFFLINE:
            self.unsent_outputs.append((tool_call_id, given.output))

    def settle_builtin(self, tool_call_id: str, name: str, result: dict[str, Any], *, ok: bool = True) -> None:
        """Answer a built-in tool call: recorded, and its output sent, once. It asks for no response
        by itself: the caller of this decides what the model should say next."""
        if tool_call_id in self.answered:
            return
        self.answered.add(tool_call_id)
        output = _json.encode(result).decode()
        call_id, now = self.core.config.call_id, self.out.now
        if ok:
            self.out.record(
                ToolCallCompleted(
                    call_id=call_id,
                    at=now,
                    tool_call_id=tool_call_id,
                    name=name,
                    output=output,
                    duration_ms=0.0,
                    source="builtin",
                )
            )
        else:
            error = str(result.get("error", ""))
            self.out.record(
                ToolCallFailed(
                    call_id=call_id,
                    at=now,
                    tool_call_id=tool_call_id,
                    name=name,
                    error=error,
                    output=output,
                    duration_ms=0.0,
                )
            )
        if self.model.connected:
            self.send_output(tool_call_id, output)

    def send_output(self, tool_call_id: str, output: str) -> None:
        self.model.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": tool_call_id, "output": output},
            }
        )

    def runner_lost(self, given: ToolRunnerLost) -> None:
        """The crashed runner took its pending calls with it: each still gets one (error) output."""
        for tool_call_id in sorted(self.model.gate.awaiting_outputs):
            output = error_output(RUNNER_LOST_ERROR)
            failed = ToolCallFailed(
                call_id=self.core.config.call_id,
                at=self.out.now,
                tool_call_id=tool_call_id,
                name=self.requested.get(tool_call_id, ""),
                error=f"{RUNNER_LOST_ERROR}: {given.error}",
                output=output,
                duration_ms=0.0,
            )
            self.settled(ToolSettled(tool_call_id=tool_call_id, output=output, event=failed))

    def timer_fired(self, timer: Timer) -> None:
        if timer is not Timer.TOOL_WAIT:
            return
        gate = self.model.gate
        may_speak = (
            self.model.connected
            and bool(gate.awaiting_outputs)
            and gate.active_response is None
            and not gate.requested
            and not self.core.assistant.is_playing
        )
        decision = self.tool_wait.fired(may_speak)
        if decision == "announce":
            gate.out_of_band_requested()
            self.model.send({"type": "response.create", "response": TOOL_WAIT_RESPONSE})
        elif decision == "retry":
            self.out.emit(StartTimer(timer=Timer.TOOL_WAIT, delay_s=RETRY_S))
