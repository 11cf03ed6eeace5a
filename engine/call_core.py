"""One phone call's decisions, as a sans-IO state machine.

``CallCore`` is the call: everything it decides comes from the inputs it is fed
(``engine/call_io.py``), and everything it wants done comes out as outputs, in order. It owns no
socket, task, clock or thread — the trio tasks in ``engine/call.py`` are thin pumps that feed it and
carry out what it returns — so the rules below are tested by feeding sequences
(``tests/engine/test_call_core.py``) and by a hypothesis state machine that checks invariants over
every interleaving (``tests/engine/test_call_core_machine.py``):

- never two ``response.create`` while one is active or requested;
- ``audio_end_ms`` of a truncate never exceeds the audio received for the item;
- exactly one ``function_call_output`` per tool call, whatever fails;
- ``CallEnded`` is recorded last, and once.

States (``CallState``): ``connecting`` to the first model session, ``active`` while one is open,
``reconnecting`` between a lost session and the next, ``apologizing`` (the model is gone for good and
the caller hears a short apology), ``ending`` once the end is decided, ``ended`` after ``CallEnded``.
An input the state does not allow raises ``CoreStateError`` naming both.

The model side (session set-up, server events, tools, response gating) is ``engine/call_model.py``;
assistant audio and barge-in are ``engine/assistant_audio.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.twilio import codec
from callbridge.engine.agent import DEFAULT_AGENT, Agent
from callbridge.engine.assistant_audio import AssistantAudio
from callbridge.engine.audio_chunks import CALLER_HAND_OVER_S, CallerAudioChunker
from callbridge.engine.call_control import CallControl
from callbridge.engine.call_io import (
    AudioFlushDue,
    CallBegan,
    CallerFramesDropped,
    CallerHungUp,
    CallerMedia,
    CallTornDown,
    ClientEventRequested,
    CoreStateError,
    DtmfPressed,
    EndCall,
    HangUpRequested,
    Input,
    LogLine,
    MachineDetectionReported,
    MarkEchoed,
    ModelFrameInvalid,
    ModelServerEvent,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    Output,
    PhoneCommandDone,
    SessionUpdateRequested,
    StartTimer,
    TaskFailed,
    Timer,
    TimerFired,
    ToolRunnerLost,
    ToolSettled,
    TransferOrdered,
    TransferPersonCalled,
    TwilioEventUnknown,
    TwilioFrameInvalid,
    TwilioSocketLost,
)
from callbridge.engine.call_keypad import Keypad
from callbridge.engine.call_model import ModelSide
from callbridge.engine.call_outbox import Outbox
from callbridge.engine.call_recycle import Recycler
from callbridge.engine.call_state import OFFLINE, CallState
from callbridge.engine.call_transfer import Transfers
from callbridge.engine.conversation import ConversationMemory
from callbridge.engine.events import (
    CallEnded,
    CallerAudioDropped,
    CallResumed,
    CallStarted,
    DtmfReceived,
    Event,
    TaskCrashed,
    TwilioEventIgnored,
    TwilioFrameRejected,
    TwilioSocketClosed,
)
from callbridge.engine.frame_rate import FrameRateLimit
from callbridge.engine.reconnect import ReconnectPolicy


@dataclass(frozen=True)
class CallConfig:
    """What one call is started with (no secrets, nothing that does I/O)."""

    call_id: str
    stream_sid: str
    session_config: dict[str, Any]
    account_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    custom_parameters: dict[str, str] = field(default_factory=dict)
    model_kind: str = "sim"
    model_url: str = ""
    tool_schemas: tuple[dict[str, Any], ...] = ()
    """The server's own tools (offered to the model besides the session's)."""
    backend_tools: frozenset[str] = frozenset()
    """Tool names answered by a backend handler; any other tool the model calls waits for an operator."""
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    tool_wait_announce_s: float | None = 2.0
    apology: tuple[str, ...] = ()
    """Base64 μ-law chunks the caller hears when the model cannot be reached (empty: none)."""
    apology_ms: int = 0
    frame_rate: FrameRateLimit = field(default_factory=FrameRateLimit)
    agent: Agent = DEFAULT_AGENT
    warm_transfers: bool = False
    """Twilio's REST API is there to hold a caller and call the person (else a warm transfer is cold)."""
    resumed: bool = False
    """A new stream of a call that was held for a warm transfer nobody answered."""
    history: tuple[Event, ...] = ()
    """The call's stored events so far (a resumed call): its conversation is folded from them."""
    direction: str = "inbound"
    """``inbound``, or ``outbound-api`` for a call we placed (it waits for answering-machine detection)."""


APOLOGY_MARK = "apology"
APOLOGY_GRACE_S = 2.0
"""How long past the apology's own length to wait for its mark before hanging up anyway."""


class CallCore:
    """The state machine of one call. ``handle(input, now)`` returns the outputs to carry out."""

    def __init__(self, config: CallConfig) -> None:
        self.config = config
        self.state = CallState.CONNECTING
        self.memory = ConversationMemory()
        self._out = Outbox(self.memory.apply)
        self.session_config = dict(config.session_config)
        self.caller_audio = CallerAudioChunker(config.call_id)
        self.assistant = AssistantAudio(config.call_id, config.stream_sid)
        for event in config.history:  # a resumed call remembers what was said before the hold
            self.memory.apply(event)
        self.control = CallControl(self)
        self.transfers = Transfers(self)
        self.keypad = Keypad(self)
        self.recycler = Recycler(self)
        self.model = ModelSide(self)
        self.frame_limit = config.frame_rate.start()
        self.end_reason: str | None = None
        self.end_detail = ""
        self.frames_in = 0

    # --- the one entry point -------------------------------------------------------------------

    def handle(self, given: Input, now: float) -> list[Output]:
        out = self._out
        out.now = now
        if self.state is CallState.ENDED:
            raise CoreStateError(self.state, given)
        if isinstance(given, CallerMedia):  # the hot path first: 50 a second
            self._caller_media(given)
            return out.take()
        handler = self._handlers.get(type(given))
        if handler is None:
            self.model.handle(given)
        else:
            handler(self, given)
        if self.state is CallState.ACTIVE:
            self.control.after_input()
            self.recycler.after_input()
        return out.take()

    @property
    def out(self) -> Outbox:
        return self._out

    # --- the call's life -----------------------------------------------------------------------

    def _began(self, _: CallBegan) -> None:
        config = self.config
        if config.resumed:  # back from a warm transfer nobody took: the call started long ago
            began: Event = CallResumed(
                call_id=config.call_id, at=self._out.now, stream_sid=config.stream_sid, reason="no_answer"
            )
        else:
            began = CallStarted(
                call_id=config.call_id,
                at=self._out.now,
                stream_sid=config.stream_sid,
                account_sid=config.account_sid,
                from_number=config.from_number,
                to_number=config.to_number,
                custom_parameters=dict(config.custom_parameters),
                model=config.model_kind,
                session_config=self.session_config,
            )
        self._out.record(began)
        self._out.emit(OpenModelSession(session=self.model.session, delay_s=0.0))
        self.control.began()

    def end(self, reason: str, detail: str = "") -> None:
        """Decide the end (the first reason wins) and ask the shell to stop the call's tasks."""
        if self.state is CallState.ENDING:
            return
        if self.end_reason is None:
            self.end_reason, self.end_detail = reason, detail
        self.state = CallState.ENDING
        self._out.emit(EndCall(reason=self.end_reason, detail=self.end_detail))

    def _torn_down(self, given: CallTornDown) -> None:
        self._flush_audio()
        flooded = self.frame_limit.take_unreported()  # a run of drops the end cut short
        if flooded:
            self._record_flood(flooded)
        if given.uplink_dropped is not None:
            self._frames_dropped(given.uplink_dropped)
        if self.end_reason is None:
            self.end_reason = given.reason or "server_shutdown"
        if self.end_reason == "held_for_transfer":  # the call goes on without us: not ended
            self.state = CallState.ENDED
            return
        self._out.record(
            CallEnded(call_id=self.config.call_id, at=self._out.now, reason=self.end_reason, detail=self.end_detail)
        )
        self.state = CallState.ENDED

    def _hang_up(self, given: HangUpRequested) -> None:
        if given.by == "operator" and self.state is CallState.ACTIVE:
            self.control.request_end("operator", given.reason, say_goodbye=False)
        else:
            self.end(given.reason)

    def _transfer(self, given: TransferOrdered) -> None:
        self.transfers.ordered(given)

    def _phone_done(self, given: PhoneCommandDone) -> None:
        self.control.phone_done(given)

    def _person_called(self, given: TransferPersonCalled) -> None:
        self.transfers.person_sid = given.sid

    def _machine(self, given: MachineDetectionReported) -> None:
        self.control.machine_detected(given)

    def _task_failed(self, given: TaskFailed) -> None:
        self._out.record(
            TaskCrashed(
                call_id=self.config.call_id,
                at=self._out.now,
                task=given.task,
                error=given.error,
                traceback=given.traceback,
                action=given.action,
            )
        )
        self._out.emit(
            LogLine(level=logging.ERROR, message=f"task {given.task} crashed ({given.action}): {given.error}")
        )
        if given.action == "ended_call":
            reason = "twilio_task_crashed" if given.task == "twilio" else "supervisor_gave_up"
            self.end(reason, f"{given.task}: {given.error}" if reason == "supervisor_gave_up" else given.error)

    def model_unavailable(self, detail: str) -> None:
        """Reconnects are exhausted: the caller hears the apology (if any), then the call ends."""
        self._out.emit(LogLine(level=logging.ERROR, message=f"the realtime model is unavailable: {detail}"))
        if not self.config.apology or self.state is CallState.ENDING:
            self.end("model_unavailable", detail)
            return
        self.end_reason, self.end_detail = "model_unavailable", detail
        self.state = CallState.APOLOGIZING
        stream_sid = self.config.stream_sid
        frames = [codec.encode_media(stream_sid, chunk) for chunk in self.config.apology]
        self._out.to_caller(codec.encode_clear(stream_sid), *frames, codec.encode_mark(stream_sid, APOLOGY_MARK))
        self._out.emit(StartTimer(timer=Timer.APOLOGY_PLAYED, delay_s=self.config.apology_ms / 1000 + APOLOGY_GRACE_S))

    # --- the caller's side ---------------------------------------------------------------------

    def _caller_media(self, given: CallerMedia) -> None:
        out = self._out
        self.frames_in += 1
        dropped = self.frame_limit.take(out.now)
        if dropped is None:
            return
        if dropped:
            self._record_flood(dropped)
        try:
            chunk = self.caller_audio.add(out.now, given.chunk, given.timestamp, given.payload)
        except ValueError as error:  # not base64: record the frame as rejected, keep the call
            out.record(
                TwilioFrameRejected(call_id=self.config.call_id, at=out.now, error=f"media payload: {error}", raw="")
            )
            return
        if chunk is not None:
            out.record(chunk)
        state = self.state
        if state is CallState.ACTIVE:
            self.model.utterance.sent(given.payload)
            out.to_model(oa.encode_append(given.payload), self.model.session, audio=True)
        elif state in OFFLINE:
            self.model.utterance.arrived_offline(given.payload)

    def _mark(self, given: MarkEchoed) -> None:
        if self.state is CallState.APOLOGIZING and given.name == APOLOGY_MARK:
            self.end("model_unavailable", self.end_detail)
            return
        if not self.keypad.mark_echoed(given.name):
            self.assistant.mark_echoed(self._out, given.name)

    def _dtmf(self, given: DtmfPressed) -> None:
        self._out.record(
            DtmfReceived(
                call_id=self.config.call_id, at=self._out.now, digit=given.digit, sequence_number=given.sequence_number
            )
        )
        if self.state is CallState.ACTIVE:
            self.keypad.pressed(given.digit)

    def _caller_hung_up(self, _: CallerHungUp) -> None:
        self._out.record(TwilioSocketClosed(call_id=self.config.call_id, at=self._out.now, code=None, reason="stop"))
        if self.control.stopped_by_phone_command():
            return  # our REST hang-up or redirect ended the stream: the call ends as decided
        self.end("caller_hangup")

    def _twilio_lost(self, given: TwilioSocketLost) -> None:
        self._out.record(
            TwilioSocketClosed(call_id=self.config.call_id, at=self._out.now, code=given.code, reason=given.reason)
        )
        self.end("twilio_disconnected")

    def _frame_invalid(self, given: TwilioFrameInvalid) -> None:
        self._out.record(
            TwilioFrameRejected(call_id=self.config.call_id, at=self._out.now, error=given.error, raw=given.raw)
        )

    def _event_unknown(self, given: TwilioEventUnknown) -> None:
        self._out.record(
            TwilioEventIgnored(call_id=self.config.call_id, at=self._out.now, event=given.event, raw=given.raw)
        )

    def _record_flood(self, dropped: int) -> None:
        """Caller frames the flood guard dropped (``engine/frame_rate.py``)."""
        reason = f"faster than {self.config.frame_rate.frames_per_s:g} frames/s"
        call_id, now = self.config.call_id, self._out.now
        self._out.record(CallerAudioDropped(call_id=call_id, at=now, count=dropped, reason=reason))

    def _frames_dropped(self, given: CallerFramesDropped) -> None:
        self._out.record(
            CallerAudioDropped(
                call_id=self.config.call_id,
                at=self._out.now,
                count=given.count,
                reason=f"model socket behind: uplink holds at most {given.queued_limit} frames",
            )
        )

    def _timer(self, given: TimerFired) -> None:
        timer = given.timer
        if timer is Timer.APOLOGY_PLAYED:
            if self.state is CallState.APOLOGIZING:
                self.end("model_unavailable", self.end_detail)
        elif self.state in (CallState.ENDING, CallState.APOLOGIZING):
            return
        elif not (
            self.control.timer_fired(timer) or self.keypad.timer_fired(timer) or self.recycler.timer_fired(timer)
        ):
            self.model.tools.timer_fired(timer)

    def _flush_audio(self, age_s: float = 0.0) -> None:
        """Record the assistant's partial chunk, the words held, and the caller's partial chunk and the
        mark echoes held if the first of each is ``age_s`` old."""
        chunk = self.caller_audio.flush_older(self._out.now, age_s)
        if chunk is not None:
            self._out.record(chunk)
        self.assistant.flush(self._out)
        self._out.release(age_s)

    def _batch_due(self, _: AudioFlushDue) -> None:
        """The writer's next batch is due: the caller's partial chunk and the mark echoes wait until
        they are half a second old (``CALLER_HAND_OVER_S``); the rest goes now."""
        self._flush_audio(CALLER_HAND_OVER_S)

    _handlers: dict[type, Any] = {
        CallBegan: _began,
        CallTornDown: _torn_down,
        HangUpRequested: _hang_up,
        TaskFailed: _task_failed,
        MarkEchoed: _mark,
        DtmfPressed: _dtmf,
        CallerHungUp: _caller_hung_up,
        TwilioSocketLost: _twilio_lost,
        TwilioFrameInvalid: _frame_invalid,
        TwilioEventUnknown: _event_unknown,
        CallerFramesDropped: _frames_dropped,
        TimerFired: _timer,
        AudioFlushDue: _batch_due,
        TransferOrdered: _transfer,
        PhoneCommandDone: _phone_done,
        TransferPersonCalled: _person_called,
        MachineDetectionReported: _machine,
    }
    """Inputs handled here; the model side's (sessions, server events, tools, operators) go to
    ``ModelSide.handle``."""


MODEL_INPUTS = (
    ModelSessionOpened,
    ModelServerEvent,
    ModelFrameInvalid,
    ModelSessionLost,
    ToolSettled,
    ToolRunnerLost,
    SessionUpdateRequested,
    ClientEventRequested,
)
