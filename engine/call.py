"""One phone call as a supervised trio actor: thin pumps around the call's core.

Every decision is the core's (``engine/call_core.py``, sans-IO). This module is the I/O around it:
``run_call`` owns a nursery whose children turn what happens into core inputs and carry out the
core's outputs, without ever waiting in between (so outputs are carried out in the order decided):

- the **Twilio pump** reads the media stream (a malformed frame is recorded and skipped);
- the **model link** (``engine/model_link.py``) opens the session the core asks for, reads it, and
  reports its loss;
- the **writers** send what waits in each socket's ``Outlet`` — everything waiting in one write;
  caller audio to the model is bounded (100 ms) and dropped oldest-first, never queued for seconds;
- the **tool runner** runs function calls and settles each once;
- the **timers** and the **operator inbox** (console commands) feed the core too.

Supervision: a crashed child is recorded (``TaskCrashed``) and restarted, up to
``max_task_restarts``; a crash of the Twilio pump, or one restart too many, ends the call. When the
core decides the end (``EndCall``) the caller's last frames may still reach the model (bounded),
then the children are cancelled and the core records ``CallEnded`` — last, and once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from callbridge.adapters.twilio import codec
from callbridge.adapters.websocket import WebSocketClosed
from callbridge.engine.call_core import CallConfig, CallCore
from callbridge.engine.call_io import (
    AudioFlushDue,
    CallBegan,
    CallerHungUp,
    CallerMedia,
    CallTornDown,
    CancelTimer,
    CloseModelSession,
    DtmfPressed,
    EndCall,
    HangUpPhone,
    HoldForTransfer,
    Input,
    LogLine,
    MarkEchoed,
    ModelSessionLost,
    OpenModelSession,
    PhoneCommandDone,
    Record,
    RedirectPhone,
    RunTool,
    SendToCaller,
    SendToModel,
    StartTimer,
    TaskFailed,
    Timer,
    TimerFired,
    ToolRunnerLost,
    TransferPersonCalled,
    TwilioEventUnknown,
    TwilioFrameInvalid,
    TwilioSocketLost,
)
from callbridge.engine.call_state import OFFLINE, CallState
from callbridge.engine.context import CallClock, CallSettings, MessageSocket, TelephonyError
from callbridge.engine.events import Event
from callbridge.engine.live_calls import LiveCall, LiveCalls
from callbridge.engine.model_link import ModelLink
from callbridge.engine.outlet import Outlet, SendNow
from callbridge.engine.timers import Timers
from callbridge.engine.tool_runner import ToolMessage, run_tool_runner
from callbridge.engine.tools import ToolContext

log = logging.getLogger(__name__)

HANGUP_DRAIN_S = 0.5
"""After the end is decided, how long the caller's last frames still waiting may take to reach the model."""
RAW_LIMIT = 2048


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
    params = info.custom_parameters
    config = CallConfig(
        call_id=info.call_sid or start.stream_sid,
        stream_sid=start.stream_sid,
        session_config=dict(session_config),
        account_sid=info.account_sid,
        from_number=params.get("From", ""),
        to_number=params.get("To", ""),
        custom_parameters=dict(params),
        model_kind=settings.model_kind,
        model_url=settings.model_url,
        tool_schemas=tuple(settings.registry.schemas()),
        backend_tools=settings.registry.backend_names(),
        reconnect=settings.reconnect,
        tool_wait_announce_s=settings.tool_wait_announce_s,
        apology=settings.apology.chunks,
        apology_ms=settings.apology.duration_ms,
        agent=settings.agent,
        warm_transfers=settings.telephony is not None,
        resumed=settings.resumed_history is not None,
        history=settings.resumed_history or (),
        direction=params.get("Direction", "inbound") or "inbound",
    )
    call = CallShell(CallCore(config), socket, settings, sink)
    with trio.CancelScope() as scope:
        handle = LiveCall(
            call_id=config.call_id,
            stream_sid=config.stream_sid,
            started_at=call.clock.now(),
            from_number=config.from_number,
            to_number=config.to_number,
            _operator=call.operator_send,
            _tools=call.tools_send,
            _scope=scope,
        )
        if live is not None:
            live.add(handle)
        try:
            await call.run()
        finally:
            if live is not None:
                live.remove(config.call_id)
    return call.finish()


class CallShell:
    """The trio side of one call. ``feed`` is the only way anything reaches the core."""

    def __init__(self, core: CallCore, socket: MessageSocket, settings: CallSettings, sink: Callable[[Event], None]):
        self.core = core
        self.socket = socket
        self.settings = settings
        self.sink = sink
        self.clock = CallClock()
        self.call_id = core.config.call_id
        self.model_link = ModelLink(settings.open_model, self.feed)
        self.outlets = self.model_link.outlets
        """The model link's, read here for each frame (``ModelLink.outlets``)."""
        self._model_send_now = self.model_link.send_now
        self.downlink = Outlet()
        self._caller_send_now: SendNow | None = getattr(socket, "send_now", None)
        self.timers: Timers[Timer] = Timers()
        self.operator_send, self.operator_recv = trio.open_memory_channel[Input](100)
        self.tools_send, self.tools_recv = trio.open_memory_channel[ToolMessage](100)
        self._ending = trio.Event()
        self._nursery: trio.Nursery | None = None

    # --- the core ------------------------------------------------------------------------------

    def feed(self, given: Input) -> None:
        """Hand ``given`` to the core and carry out what it decides, without waiting."""
        for output in self.core.handle(given, self.clock.now()):
            kind = type(output)
            if kind is SendToModel:
                outlet = self.outlets.get(output.session)  # type: ignore[attr-defined]
                if outlet is not None:  # else the session is gone: the core hears of it next
                    send_now = self._model_send_now.get(output.session)  # type: ignore[attr-defined]
                    outlet.send_or_push(send_now, output.text, audio=output.audio)  # type: ignore[attr-defined]
            elif kind is Record:
                self.sink(output.event)  # type: ignore[attr-defined]
            elif kind is SendToCaller:
                self.downlink.send_or_push_many(self._caller_send_now, output.frames)  # type: ignore[attr-defined]
            else:
                self._carry_out(output)

    def _carry_out(self, output: Any) -> None:
        if isinstance(output, StartTimer):
            self.timers.start(output.timer, output.delay_s)
        elif isinstance(output, CancelTimer):
            self.timers.cancel(output.timer)
        elif isinstance(output, RunTool):
            try:
                self.tools_send.send_nowait(output)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                log.error("call %s: tool call %s could not be started", self.call_id, output.tool_call_id)
        elif isinstance(output, OpenModelSession):
            self.model_link.open(output)
        elif isinstance(output, CloseModelSession):
            self.model_link.close(output.session)
        elif isinstance(output, EndCall):
            self._ending.set()
        elif isinstance(output, LogLine):
            log.log(output.level, "call %s: %s", self.call_id, output.message)
        elif isinstance(output, HangUpPhone | RedirectPhone | HoldForTransfer):
            self._tell_phone(output)
        else:
            raise TypeError(f"no way to carry out {type(output).__name__}")

    # --- the actor -----------------------------------------------------------------------------

    async def run(self) -> None:
        self.feed(CallBegan())
        hook = self.settings.before_each_batch
        remove_hook = hook(self._hand_over_audio) if hook is not None else None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._end_when_decided, nursery)
                nursery.start_soon(self._run_twilio)
                nursery.start_soon(self._supervise, "model", self.model_link.run)
                nursery.start_soon(self._supervise, "tools", self._run_tools)
                nursery.start_soon(self._write_caller)
                nursery.start_soon(self.timers.run, self._timer_fired)
                nursery.start_soon(self._serve_operators)
        finally:
            if remove_hook is not None:
                remove_hook()
            with trio.CancelScope(shield=True), trio.move_on_after(2):
                try:
                    await self.socket.aclose(1000, self.core.end_reason or "call ended")
                except Exception:  # the socket is already gone: nothing left to tell the caller
                    log.debug("call %s: closing the Twilio socket failed", self.call_id, exc_info=True)

    def _hand_over_audio(self) -> None:
        if self.core.state is not CallState.ENDED:
            self.feed(AudioFlushDue())

    def finish(self, reason: str = "") -> str:
        """Record the end (the core writes ``CallEnded`` last); returns the end reason."""
        self.feed(CallTornDown(reason=reason, uplink_dropped=self.model_link.take_unreported_drops()))
        assert self.core.end_reason is not None
        return self.core.end_reason

    async def _end_when_decided(self, nursery: trio.Nursery) -> None:
        await self._ending.wait()
        outlet = self.outlets.get(self.core.model.session)
        if outlet is not None:
            with trio.move_on_after(HANGUP_DRAIN_S):
                await outlet.wait_drained()
        nursery.cancel_scope.cancel()

    def _tell_phone(self, output: HangUpPhone | RedirectPhone | HoldForTransfer) -> None:
        """Through Twilio's REST API when there are credentials (in the background: the call's other
        tasks go on), else by ending the stream, whose ``<Connect action>`` then answers what the core
        recorded."""
        kind = {HangUpPhone: "hang_up", RedirectPhone: "redirect", HoldForTransfer: "hold"}[type(output)]
        telephony = self.settings.telephony
        if telephony is None or self._nursery is None:
            self.feed(PhoneCommandDone(kind=kind, method="stream"))
            return

        async def tell() -> None:
            try:
                if isinstance(output, HangUpPhone):
                    await telephony.hang_up(self.call_id)
                elif isinstance(output, RedirectPhone):
                    await telephony.redirect(self.call_id, output.twiml)
                else:
                    await telephony.hold_for_transfer(
                        self.call_id,
                        room=output.room,
                        label=output.label,
                        to=output.to,
                        caller_id=output.caller_id,
                        timeout_s=output.timeout_s,
                        summary=output.summary,
                        person_called=self._person_called,
                    )
            except TelephonyError as error:
                self.feed(PhoneCommandDone(kind=kind, method="rest", ok=False, error=str(error)))
                return
            self.feed(PhoneCommandDone(kind=kind, method="rest"))

        self._nursery.start_soon(tell)

    def _person_called(self, sid: str) -> None:
        if self.core.state is not CallState.ENDED:
            self.feed(TransferPersonCalled(sid=sid))

    def _timer_fired(self, timer: Timer) -> None:
        self.feed(TimerFired(timer=timer))

    async def _serve_operators(self) -> None:
        async for command in self.operator_recv:
            self.feed(command)

    # --- the caller's side ---------------------------------------------------------------------

    async def _run_twilio(self) -> None:
        try:
            await self._read_twilio()
        except Exception as error:
            self._crashed("twilio", error, "ended_call")

    async def _read_twilio(self) -> None:
        feed = self.feed
        while True:
            try:
                data = await self.socket.get_message()
            except WebSocketClosed as closed:
                feed(TwilioSocketLost(code=closed.code, reason=closed.reason))
                return
            try:
                frame = codec.decode_inbound(data)
            except codec.TwilioFrameError as error:
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                feed(TwilioFrameInvalid(error=str(error), raw=text[:RAW_LIMIT]))
                continue
            if isinstance(frame, codec.Media):
                media = frame.media
                feed(
                    CallerMedia(
                        payload=media.payload,
                        timestamp=codec.parse_int(media.timestamp, 0),
                        chunk=codec.parse_int(media.chunk, 0),
                    )
                )
            elif isinstance(frame, codec.Mark):
                feed(MarkEchoed(name=frame.mark.name))
            elif isinstance(frame, codec.Stop):
                feed(CallerHungUp())
                return
            elif isinstance(frame, codec.Dtmf):
                feed(DtmfPressed(digit=frame.dtmf.digit, sequence_number=codec.parse_int(frame.sequence_number, 0)))
            elif isinstance(frame, codec.UnknownTwilioEvent):
                feed(TwilioEventUnknown(event=frame.event, raw=frame.raw[:RAW_LIMIT]))
            # ``connected`` and a repeated ``start`` carry nothing new once the call runs.

    async def _write_caller(self) -> None:
        while True:
            frames = await self.downlink.take()
            try:
                await self.socket.send_messages(frames)
            except WebSocketClosed:
                # The Twilio pump sees the same closure and ends the call; nothing more to play.
                self.downlink.clear()
                return
            self.downlink.written()

    # --- tools and supervision -----------------------------------------------------------------

    async def _run_tools(self) -> None:
        settings = self.settings
        await run_tool_runner(
            self.tools_recv,
            self.feed,
            registry=settings.registry,
            ctx=ToolContext(
                call_id=self.call_id,
                http=settings.tool_context_http,
                call={
                    "from": self.core.config.from_number,
                    "to": self.core.config.to_number,
                    "direction": self.core.config.direction,
                },
            ),
            clock=self.clock.now,
            human_timeout_s=settings.human_tool_timeout_s,
        )

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        restarts = 0
        while True:
            try:
                await run()
                return
            except Exception as error:
                restarts += 1
                give_up = restarts > self.settings.max_task_restarts
                self._crashed(name, error, "ended_call" if give_up else "restarted")
                if give_up:
                    return
                if name == "tools":
                    self.feed(ToolRunnerLost(error=repr(error)))
                elif name == "model" and self.core.state in OFFLINE | {CallState.ACTIVE}:
                    self.model_link.forget_all()
                    connected = self.core.state is CallState.ACTIVE
                    error_text = f"model task crashed: {error!r}"
                    self.feed(ModelSessionLost(session=self.core.model.session, connected=connected, error=error_text))

    def _crashed(self, task: str, error: BaseException, action: str) -> None:
        self.feed(
            TaskFailed(
                task=task,
                error=repr(error),
                traceback="".join(traceback.format_exception(error))[-8000:],
                action=action,
            )
        )
