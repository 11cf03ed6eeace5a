"""One phone call as a supervised trio actor.

``run_call`` owns a nursery with three children — the Twilio task, the model task and the tool
runner — connected by memory channels (``engine/messages.py``). The supervisor decides what a
child's end means:

- the Twilio task returns (caller hung up, socket gone): the call is over; the other tasks are
  cancelled, which closes the model socket;
- the model task raises ``ModelUnavailable`` (reconnects exhausted): the call ends cleanly;
- any task crashes (a bug): ``TaskCrashed`` is recorded with the traceback and the task restarted,
  up to ``max_task_restarts`` times; a crash of the Twilio task, or one restart too many, ends the call.

Whatever happens, ``CallEnded`` is recorded last, with the reason, and nothing is silently lost.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from callbridge.adapters.twilio import codec
from callbridge.engine.context import CallClock, CallContext, CallRecorder, CallSettings, MessageSocket
from callbridge.engine.events import CallEnded, CallStarted, Event, TaskCrashed
from callbridge.engine.messages import ForwardClientEvent, HumanToolAnswer, Message, ToolResult, UpdateSession
from callbridge.engine.model_reconnect import ModelUnavailable
from callbridge.engine.model_task import ModelSide
from callbridge.engine.tool_runner import run_tool_runner
from callbridge.engine.tools import ToolContext, error_output
from callbridge.engine.twilio_task import TwilioSide

log = logging.getLogger(__name__)

HANGUP_DRAIN_S = 0.5
"""After ``stop``, how long the caller's last frames still queued for the model may take to go out."""

MODEL_INBOX_SIZE = 500
"""Caller frames (50/s), mark echoes, tool results and console commands for the model task: 10 s."""


@dataclass
class LiveCall:
    """The server's handle on a live call: how the console reaches it, and how to end it."""

    call_id: str
    stream_sid: str
    started_at: float
    from_number: str
    to_number: str
    _model_inbox: trio.MemorySendChannel[Message]
    _tools_inbox: trio.MemorySendChannel[Message]
    _cancel: trio.CancelScope
    end_reason: str | None = None

    def update_session(self, session: dict[str, Any]) -> bool:
        return self._post(self._model_inbox, UpdateSession(session=session))

    def forward_client_event(self, event: dict[str, Any]) -> bool:
        """A console event for this call. A ``function_call_output`` answers the pending tool call
        through the tool runner, so the model gets exactly one output per call."""
        item = event.get("item") or {}
        if event.get("type") == "conversation.item.create" and item.get("type") == "function_call_output":
            answer = HumanToolAnswer(tool_call_id=str(item.get("call_id", "")), output=str(item.get("output", "")))
            return self._post(self._tools_inbox, answer)
        return self._post(self._model_inbox, ForwardClientEvent(event=event))

    def hang_up(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self._cancel.cancel()

    @staticmethod
    def _post(channel: trio.MemorySendChannel[Message], message: Message) -> bool:
        try:
            channel.send_nowait(message)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True


@dataclass
class LiveCalls:
    """The calls this process is carrying now (owned by the server, never module-level)."""

    calls: dict[str, LiveCall] = field(default_factory=dict)
    _emptied: trio.Event | None = None

    def add(self, call: LiveCall) -> None:
        self.calls[call.call_id] = call

    def remove(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        if not self.calls and self._emptied is not None:
            self._emptied.set()

    async def wait_empty(self) -> None:
        while self.calls:
            self._emptied = trio.Event()
            await self._emptied.wait()

    def get(self, call_id: str) -> LiveCall | None:
        return self.calls.get(call_id)

    def hang_up_all(self, reason: str) -> None:
        for call in list(self.calls.values()):
            call.hang_up(reason)

    def __len__(self) -> int:
        return len(self.calls)


async def run_call(
    socket: MessageSocket,
    start: codec.Start,
    *,
    settings: CallSettings,
    session_config: dict[str, Any],
    sink: Callable[[Event], None],
    live: LiveCalls | None = None,
) -> str:
    """Carry one call from Twilio's ``start`` frame to its end; returns the end reason."""
    info = start.start
    call_id = info.call_sid or start.stream_sid
    clock = CallClock()
    recorder = CallRecorder(call_id, clock, sink)
    ctx = CallContext(
        call_id=call_id,
        stream_sid=start.stream_sid,
        settings=settings,
        session_config=dict(session_config),
        clock=clock,
        record=recorder,
    )
    params = info.custom_parameters
    recorder(
        CallStarted(
            call_id=call_id,
            at=clock.now(),
            stream_sid=start.stream_sid,
            account_sid=info.account_sid,
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            custom_parameters=dict(params),
            model=settings.model_kind,
            session_config=ctx.session_config,
        )
    )
    supervisor = CallSupervisor(ctx, socket)
    with trio.CancelScope() as scope:
        handle = LiveCall(
            call_id=call_id,
            stream_sid=start.stream_sid,
            started_at=clock.now(),
            from_number=params.get("From", ""),
            to_number=params.get("To", ""),
            _model_inbox=supervisor.model_inbox_send,
            _tools_inbox=supervisor.tools_send,
            _cancel=scope,
        )
        if live is not None:
            live.add(handle)
        try:
            await supervisor.run()
        finally:
            if live is not None:
                live.remove(call_id)
    if supervisor.end_reason is None:
        supervisor.end_reason = handle.end_reason or "server_shutdown"
    supervisor.finish()
    return supervisor.end_reason


class CallSupervisor:
    def __init__(self, ctx: CallContext, socket: MessageSocket) -> None:
        self.ctx = ctx
        self.socket = socket
        self.model_inbox_send, self.model_inbox_recv = trio.open_memory_channel[Message](MODEL_INBOX_SIZE)
        self.to_twilio_send, self.to_twilio_recv = trio.open_memory_channel[Message](1000)
        self.tools_send, self.tools_recv = trio.open_memory_channel[Message](100)
        self.twilio = TwilioSide(ctx, socket, self.model_inbox_send, self.to_twilio_recv)
        self.model = ModelSide(ctx, self.model_inbox_recv, self.to_twilio_send, self.tools_send)
        self.end_reason: str | None = None
        self.end_detail = ""
        self._nursery: trio.Nursery | None = None

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._supervise, "model", self.model.run)
                nursery.start_soon(self._supervise, "tools", self._run_tools)
                nursery.start_soon(self._run_twilio)
        finally:
            self.twilio.flush_audio()
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await self.socket.aclose(1000, self.end_reason or "call ended")
                except Exception:  # the socket is already gone: nothing left to tell the caller
                    log.debug("call %s: closing the Twilio socket failed", self.ctx.call_id, exc_info=True)

    def finish(self) -> None:
        self.ctx.record(
            CallEnded(
                call_id=self.ctx.call_id,
                at=self.ctx.clock.now(),
                reason=self.end_reason or "unknown",
                detail=self.end_detail,
            )
        )

    def _end(self, reason: str, detail: str = "") -> None:
        if self.end_reason is None:
            self.end_reason, self.end_detail = reason, detail
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _run_twilio(self) -> None:
        try:
            reason = await self.twilio.run()
        except Exception as error:
            self._crashed("twilio", error, "ended_call")
            self._end("twilio_task_crashed", repr(error))
            return
        if reason == "caller_hangup":
            with trio.move_on_after(HANGUP_DRAIN_S):
                await self.model.wait_audio_handled(self.twilio.frames_forwarded)
        self._end(reason)

    async def _run_tools(self) -> None:
        settings = self.ctx.settings
        await run_tool_runner(
            self.tools_recv,
            self.model_inbox_send,
            registry=settings.registry,
            ctx=ToolContext(call_id=self.ctx.call_id, http=settings.tool_context_http),
            record=self.ctx.record,
            clock=self.ctx.clock.now,
            human_timeout_s=settings.human_tool_timeout_s,
        )

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        restarts = 0
        while True:
            try:
                await run()
                return
            except Exception as error:
                unavailable = _find(error, ModelUnavailable)
                if unavailable is not None:
                    self._end("model_unavailable", str(unavailable))
                    return
                restarts += 1
                give_up = restarts > self.ctx.settings.max_task_restarts
                self._crashed(name, error, "ended_call" if give_up else "restarted")
                if give_up:
                    self._end("supervisor_gave_up", f"{name}: {error!r}")
                    return
                if name == "tools":
                    self._answer_orphaned_tool_calls()

    def _answer_orphaned_tool_calls(self) -> None:
        """The crashed runner took its pending calls with it: the model still gets one (error)
        output for each, so it is never left waiting."""
        for tool_call_id in sorted(self.model.gate.awaiting_outputs):
            result = ToolResult(
                tool_call_id=tool_call_id,
                name="",
                output=error_output("the tool runner crashed; the call was not completed"),
                ok=False,
            )
            try:
                self.model_inbox_send.send_nowait(result)
            except trio.WouldBlock:
                log.error("call %s: could not answer orphaned tool call %s", self.ctx.call_id, tool_call_id)

    def _crashed(self, task: str, error: BaseException, action: str) -> None:
        log.error("call %s: task %s crashed (%s): %r", self.ctx.call_id, task, action, error)
        self.ctx.record(
            TaskCrashed(
                call_id=self.ctx.call_id,
                at=self.ctx.clock.now(),
                task=task,
                error=repr(error),
                traceback="".join(traceback.format_exception(error))[-8000:],
                action=action,
            )
        )


def _find(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find(inner, kind)
            if found is not None:
                return found
    return None
