"""The model task: the realtime model's side of one call, and the conversation's brain.

It owns the model socket. Caller audio from the Twilio task is appended to the model's input
buffer; assistant audio deltas go back to the Twilio task with a mark each
(``engine/assistant_audio.py``). Everything the model says is recorded verbatim. Here live the
decisions that make a phone agent good:

- **barge-in**: on ``input_audio_buffer.speech_started`` Twilio's buffer is cleared and the item is
  truncated at what the caller really heard (``engine/assistant_audio.py``, ``engine/playback.py``);
- **tools**: each finished function call goes to the tool runner; its output is sent once as
  ``function_call_output``; ``response.create`` follows only when the response that asked has
  finished and every output it waits for is in (``engine/response_gate.py``); a slow tool gets a
  short "one moment" instead of silence (``engine/tool_wait.py``);
- **reconnects**: a dropped socket or an expired session is reopened with bounded backoff
  (``engine/model_reconnect.py``), the session config re-sent, the conversation re-seeded from the
  call's own recorded events (``engine/conversation.py``) and a cut utterance re-sent
  (``engine/utterance_buffer.py``), while the caller stays on the line.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import msgspec
import trio

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.session import session_update_payload
from callbridge.engine.assistant_audio import AssistantAudio
from callbridge.engine.context import CallContext, ModelConnection, ModelLinkError
from callbridge.engine.events import (
    CallSessionConfigChanged,
    ModelErrorReported,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
    ToolCallRequested,
)
from callbridge.engine.messages import (
    CallerAudio,
    ForwardClientEvent,
    MarkEchoed,
    Message,
    RunTool,
    ToolResult,
    UpdateSession,
)
from callbridge.engine.model_reconnect import keep_session
from callbridge.engine.response_gate import ResponseGate
from callbridge.engine.tool_wait import TOOL_WAIT_RESPONSE, ToolWaitAnnouncer, is_tool_wait_response
from callbridge.engine.utterance_buffer import UtteranceBuffer

log = logging.getLogger(__name__)

_json_encoder = msgspec.json.Encoder()

CONSOLE_CLIENT_EVENTS = frozenset({"conversation.item.create", "response.create"})


def _tag(event: Any) -> str:
    tag = type(event).__struct_config__.tag
    return str(tag)


class ModelSide:
    def __init__(
        self,
        ctx: CallContext,
        inbox: trio.MemoryReceiveChannel[Message],
        to_twilio: trio.MemorySendChannel[Message],
        to_tools: trio.MemorySendChannel[Message],
    ) -> None:
        self.ctx = ctx
        self.inbox = inbox
        self.to_twilio = to_twilio
        self.to_tools = to_tools
        self.audio = AssistantAudio(ctx, to_twilio)
        self.conn: ModelConnection | None = None
        self.sessions = 0
        """Sessions opened so far: every one after the first is re-seeded."""
        self.gate = ResponseGate()
        self.tool_wait = ToolWaitAnnouncer(ctx.settings.tool_wait_announce_s)
        self.unsent_outputs: list[ToolResult] = []
        self.utterance = UtteranceBuffer()
        self.audio_handled = 0
        """Caller frames taken from the inbox (sent, or kept while offline)."""
        self._audio_waiter: trio.Event | None = None

    # --- connection lifecycle --------------------------------------------------------------

    async def run(self) -> None:
        """Keep a model session open for the whole call; raises ``ModelUnavailable`` when it can't."""
        await keep_session(
            self.ctx, start=self._start_session, serve=self._serve_session, offline=self._serve_offline, lost=self._lost
        )

    def _lost(self) -> None:
        self.conn = None
        self._reset_response_state()

    async def _serve_session(self, conn: ModelConnection) -> None:
        """Read the model and serve the inbox until either ends; a link failure in either is re-raised
        bare (not wrapped in an exception group) so the reconnect logic sees it."""
        failures: list[ModelLinkError] = []

        async def guarded(serve: Callable[[], Awaitable[None]], nursery: trio.Nursery) -> None:
            try:
                await serve()
            except ModelLinkError as error:
                failures.append(error)
            nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(guarded, partial(self._read_model, conn), nursery)
            nursery.start_soon(guarded, self._serve_inbox, nursery)
            nursery.start_soon(
                guarded, partial(self.tool_wait.run, self._may_fill_silence, partial(self._fill_silence, conn)), nursery
            )
        if failures:
            raise failures[0]

    async def _start_session(self, conn: ModelConnection) -> int:
        """Configure the new session and, after a reconnect, retell the conversation so far."""
        self.conn = conn
        await self._send(conn, {"type": "session.update", "session": self._session_payload()})
        seeded = 0
        if self.sessions > 0:
            for item in self.ctx.record.memory.seed_items():
                await self._send(conn, {"type": "conversation.item.create", "item": item})
                seeded += 1
        for payload in self.utterance.take_replay():
            await conn.send_raw(oa.encode_append(payload))
        for result in self.unsent_outputs:
            await self._send_output(conn, result)
        self.unsent_outputs.clear()
        self.sessions += 1
        await self._maybe_create_response()
        return seeded

    def _session_payload(self) -> dict[str, Any]:
        config = dict(self.ctx.session_config)
        tools = {tool["name"]: tool for tool in self.ctx.settings.registry.schemas()}
        for tool in config.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name"):
                tools[tool["name"]] = tool
        config["tools"] = list(tools.values())
        return session_update_payload(config)

    def _reset_response_state(self) -> None:
        self.gate.link_lost()
        self.audio.active_items.clear()

    async def _serve_offline(self, delay: float) -> None:
        """Between reconnect attempts: keep playback accounting and tool results; drop caller audio
        (it is recorded by the Twilio task, but a model that isn't there cannot hear it)."""
        with trio.move_on_after(delay):
            async for message in self.inbox:
                if isinstance(message, CallerAudio):
                    self.utterance.arrived_offline(message.payload)
                    self._audio_done()
                elif isinstance(message, MarkEchoed):
                    self.audio.mark_echoed(message.name)
                elif isinstance(message, ToolResult):
                    self._tool_result_arrived(message)
                    self.unsent_outputs.append(message)
                elif isinstance(message, UpdateSession):
                    self._update_session(message.session)
                else:
                    log.warning("call %s: %s dropped while the model is reconnecting", self.ctx.call_id, message)

    # --- inbox: the Twilio task, the tool runner and the console ---------------------------

    async def _serve_inbox(self) -> None:
        conn = self.conn
        assert conn is not None
        async for message in self.inbox:
            if isinstance(message, CallerAudio):
                await self._send_audio(conn, message.payload)
            elif isinstance(message, MarkEchoed):
                self.audio.mark_echoed(message.name)
            elif isinstance(message, ToolResult):
                self._tool_result_arrived(message)
                await self._send_output(conn, message)
                await self._maybe_create_response()
            elif isinstance(message, UpdateSession):
                self._update_session(message.session)
                await self._send(conn, {"type": "session.update", "session": self._session_payload()})
            elif isinstance(message, ForwardClientEvent):
                await self._forward_console_event(conn, message.event)

    async def _send_audio(self, conn: ModelConnection, payload: str) -> None:
        self.utterance.sent(payload)
        await conn.send_raw(oa.encode_append(payload))
        self._audio_done()

    def _audio_done(self) -> None:
        self.audio_handled += 1
        if self._audio_waiter is not None:
            self._audio_waiter.set()

    async def wait_audio_handled(self, count: int) -> None:
        """Until ``count`` caller frames have been dealt with (the caller hung up: let the last
        words reach the model and the log before the call's tasks are cancelled)."""
        while self.audio_handled < count:
            self._audio_waiter = trio.Event()
            await self._audio_waiter.wait()
        self._audio_waiter = None

    async def _send(self, conn: ModelConnection, event: dict[str, Any]) -> None:
        text = _json_encoder.encode(event).decode()
        self._record(ModelEventSent(call_id=self.ctx.call_id, at=self.ctx.clock.now(), type=event["type"], raw=text))
        await conn.send_raw(text)

    def _update_session(self, session: dict[str, Any]) -> None:
        self.ctx.session_config = {**self.ctx.session_config, **session}
        self._record(
            CallSessionConfigChanged(
                call_id=self.ctx.call_id, at=self.ctx.clock.now(), session_config=self.ctx.session_config
            )
        )

    async def _forward_console_event(self, conn: ModelConnection, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind not in CONSOLE_CLIENT_EVENTS:
            log.warning("call %s: console event %r refused", self.ctx.call_id, kind)
            return
        if kind == "response.create":
            self.gate.asked()
            await self._maybe_create_response()
            return
        await self._send(conn, {"type": "conversation.item.create", "item": event.get("item") or {}})

    # --- tools -----------------------------------------------------------------------------

    def _tool_result_arrived(self, result: ToolResult) -> None:
        self.gate.output_arrived(result.tool_call_id)
        if not self.gate.awaiting_outputs:
            self.tool_wait.all_answered()

    def _may_fill_silence(self) -> bool:
        gate = self.gate
        return (
            bool(gate.awaiting_outputs)
            and gate.active_response is None
            and not gate.requested
            and not self.audio.is_playing
        )

    async def _fill_silence(self, conn: ModelConnection) -> None:
        self.gate.out_of_band_requested()
        await self._send(conn, {"type": "response.create", "response": TOOL_WAIT_RESPONSE})

    async def _send_output(self, conn: ModelConnection, result: ToolResult) -> None:
        item = {"type": "function_call_output", "call_id": result.tool_call_id, "output": result.output}
        await self._send(conn, {"type": "conversation.item.create", "item": item})

    async def _maybe_create_response(self) -> None:
        """``response.create`` once nothing is running and no output is still awaited."""
        conn = self.conn
        if conn is not None and self.gate.take():
            await self._send(conn, {"type": "response.create"})

    async def _function_call_done(self, event: Any, raw: str) -> None:
        tool_call_id = str(event.call_id)
        tool = self.ctx.settings.registry.get(event.name)
        handler = "backend" if tool is not None and tool.handler is not None else "human"
        self.gate.tool_requested(tool_call_id)
        self.tool_wait.tool_started()
        self._record(
            ToolCallRequested(
                call_id=self.ctx.call_id,
                at=self.ctx.clock.now(),
                tool_call_id=tool_call_id,
                name=event.name,
                arguments=event.arguments,
                response_id=event.response_id,
                item_id=event.item_id,
                handler=handler,
            )
        )
        await self.to_tools.send(
            RunTool(
                tool_call_id=tool_call_id,
                name=event.name,
                arguments=event.arguments,
                response_id=event.response_id,
                item_id=event.item_id,
            )
        )

    # --- the model's events ----------------------------------------------------------------

    async def _read_model(self, conn: ModelConnection) -> None:
        while True:
            raw = await conn.receive_raw()
            try:
                event = oa.decode_server(raw)
            except oa.RealtimeProtocolError as error:
                self._record(
                    ModelEventUnknown(
                        call_id=self.ctx.call_id,
                        at=self.ctx.clock.now(),
                        type="",
                        raw=raw[:4096],
                        error=str(error),
                    )
                )
                continue
            await self._on_server_event(event, raw)

    async def _on_server_event(self, event: Any, raw: str) -> None:
        if isinstance(event, se.ResponseOutputAudioDelta):
            await self.audio.delta(event.response_id, event.item_id, event.content_index, event.delta)
            return
        if isinstance(event, oa.UnknownServerEvent):
            self._record(
                ModelEventUnknown(
                    call_id=self.ctx.call_id,
                    at=self.ctx.clock.now(),
                    type=event.type,
                    raw=raw,
                    error=event.error,
                )
            )
            return
        kind = _tag(event)
        self._record(ModelEventReceived(call_id=self.ctx.call_id, at=self.ctx.clock.now(), type=kind, raw=raw))
        if isinstance(event, se.InputAudioBufferSpeechStarted):
            self.utterance.speech_started()
            truncate = await self.audio.barge_in()
            if truncate is not None and self.conn is not None:
                await self._send(self.conn, truncate)
        elif isinstance(event, se.InputAudioBufferCommitted):
            self.utterance.committed()
        elif isinstance(event, se.ResponseCreated):
            out_of_band = is_tool_wait_response(event.response.metadata)
            self.gate.response_created(event.response.id or "", out_of_band=out_of_band)
        elif isinstance(event, se.ResponseOutputItemAdded):
            item = event.item
            if item.type == "message" and item.id:
                self.audio.active_items.add(item.id)
        elif isinstance(event, se.ResponseFunctionCallArgumentsDone):
            await self._function_call_done(event, raw)
        elif isinstance(event, se.ResponseDone):
            self.gate.response_done(event.response.id or "")
            self.audio.active_items.clear()
            await self._maybe_create_response()
        elif isinstance(event, se.ErrorEvent):
            error = event.error
            self._record(
                ModelErrorReported(
                    call_id=self.ctx.call_id,
                    at=self.ctx.clock.now(),
                    code=error.code,
                    message=error.message,
                    error_type=error.type,
                    param=error.param,
                )
            )
            if error.code == "conversation_already_has_active_response":
                self.gate.refused_as_busy()

    def _record(self, event: Any) -> None:
        self.ctx.record(event)
