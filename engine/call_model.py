"""The call core's model side: sessions, server events, tools and operators — pure.

Part of ``CallCore`` (``engine/call_core.py``), kept in its own module because it is the larger half:

- **sessions**: a new session is configured (``session.update``) and, after the first, re-seeded
  from the call's own recorded conversation (``engine/conversation.py``), told the utterance a lost
  session cut short (``engine/utterance_buffer.py``), and given the tool outputs that arrived while
  it was away; a lost one is reopened with bounded backoff (``engine/reconnect.py``), or the call
  ends (with an apology) when it cannot be;
- **barge-in**: on ``input_audio_buffer.speech_started`` Twilio's buffer is cleared and the item
  truncated at what the caller really heard (``engine/assistant_audio.py``);
- **tools**: each finished function call is handed to the tool runner, as a backend call or one
  an operator answers (a session tool without a backend); its output goes to the model exactly once;
  ``response.create`` follows only when nothing is running and every output is in
  (``engine/response_gate.py``); a slow tool gets a short "one moment" instead of silence
  (``engine/tool_wait.py``);
- **operators**: session changes and the console's client events.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.session import session_update_payload
from callbridge.engine.builtin_tools import NAMES as BUILTIN_NAMES
from callbridge.engine.builtin_tools import SEND_DTMF, builtin_schemas
from callbridge.engine.call_io import (
    CancelTimer,
    ClientEventRequested,
    CoreStateError,
    Input,
    LogLine,
    ModelFrameInvalid,
    ModelServerEvent,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    RunTool,
    SessionUpdateRequested,
    StartTimer,
    Timer,
    ToolRunnerLost,
    ToolSettled,
)
from callbridge.engine.call_state import LIVE, OFFLINE, CallState
from callbridge.engine.events import (
    AssistantSaid,
    CallerSaid,
    CallerSpeechDetected,
    CallSessionConfigChanged,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelErrorReported,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
    ResponseFinished,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.response_gate import ResponseGate
from callbridge.engine.tool_wait import RETRY_S, TOOL_WAIT_RESPONSE, TOOL_WAIT_TAG, ToolWait, is_tool_wait_response
from callbridge.engine.tools import error_output
from callbridge.engine.usage import TOKEN_KINDS, usage_tokens
from callbridge.engine.utterance_buffer import UtteranceBuffer

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

_json = msgspec.json.Encoder()

CONSOLE_CLIENT_EVENTS = frozenset({"conversation.item.create", "response.create"})
RUNNER_LOST_ERROR = "the tool runner crashed; the call was not completed"


def _tag(event: Any) -> str:
    return str(type(event).__struct_config__.tag)


class ModelSide:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.session = 1
        """The session the core is on, or is asking for."""
        self._last_session = 1
        self.next_response: dict[str, Any] | None = None
        self.purposes: dict[str, str] = {}
        """response id -> what the engine asked it for (``metadata.callbridge``), for responses that had one."""
        self._updates: dict[str, dict[str, Any]] = {}
        """Operator session changes the model has not answered yet: client event id -> the config
        before the change (restored if the model refuses it)."""
        """What the next ``response.create`` asks for (a greeting, a goodbye, …), when the gate allows."""
        self.opened = 0
        """Sessions opened so far: every one after the first is re-seeded."""
        self.attempt = 0
        self.failures = 0
        self.gate = ResponseGate()
        self.tool_wait = ToolWait(core.config.tool_wait_announce_s)
        self.utterance = UtteranceBuffer()
        self.unsent_outputs: list[tuple[str, str]] = []
        """(tool_call_id, output) settled while no session was open."""
        self.answered: set[str] = set()
        """Tool calls whose output has been decided (each gets exactly one)."""
        self.requested: dict[str, str] = {}
        """tool_call_id -> name, for every call the model asked for."""
        self.builtins = builtin_schemas(core.config.agent)
        self.builtin_names = BUILTIN_NAMES & {tool["name"] for tool in self.builtins}
        self._handlers: dict[type, Any] = {
            ModelSessionOpened: self._opened,
            ModelServerEvent: self._server_event,
            ModelFrameInvalid: self._frame_invalid,
            ModelSessionLost: self._lost,
            ToolSettled: self._tool_settled,
            ToolRunnerLost: self._runner_lost,
            SessionUpdateRequested: self._update_session,
            ClientEventRequested: self._client_event,
        }

    def handle(self, given: Input) -> None:
        handler = self._handlers.get(type(given))
        if handler is None:
            raise TypeError(f"the call core has no handler for {type(given).__name__}")
        handler(given)

    # --- sending ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self.core.state is CallState.ACTIVE

    def send(self, event: dict[str, Any], session: int | None = None) -> None:
        """A client event for the open session (or ``session``), recorded verbatim."""
        text = _json.encode(event).decode()
        self.out.record(ModelEventSent(call_id=self.core.config.call_id, at=self.out.now, type=event["type"], raw=text))
        self.out.to_model(text, self.session if session is None else session)

    def allocate(self) -> int:
        """A new session number."""
        self._last_session += 1
        return self._last_session

    def request_response(self, payload: dict[str, Any] | None) -> None:
        """Ask for a response (with ``payload`` as its ``response`` object) as soon as the gate allows."""
        self.gate.asked()
        if payload is not None:
            self.next_response = payload
        self._maybe_create_response()

    def _maybe_create_response(self) -> None:
        if self.connected and self.gate.take():
            event: dict[str, Any] = {"type": "response.create"}
            if self.next_response is not None:
                event["response"], self.next_response = self.next_response, None
            self.send(event)

    def _session_payload(self) -> dict[str, Any]:
        config = dict(self.core.session_config)
        tools = {tool["name"]: tool for tool in (*self.core.config.tool_schemas, *self.builtins)}
        for tool in config.get("tools") or []:
            if isinstance(tool, dict) and tool.get("name"):
                tools[tool["name"]] = tool
        config["tools"] = list(tools.values())
        return session_update_payload(config)

    # --- sessions --------------------------------------------------------------------------------

    def configure(self, session: int, *, seed: bool) -> int:
        """Send a new session its configuration and (``seed``) the conversation so far; returns how
        many items were seeded."""
        self.send({"type": "session.update", "session": self._session_payload()}, session)
        seeded = 0
        if seed:
            for item in self.core.memory.seed_items():
                self.send({"type": "conversation.item.create", "item": item}, session)
                seeded += 1
        return seeded

    def _opened(self, given: ModelSessionOpened) -> None:
        core = self.core
        if given.session == core.recycler.pending and core.state is CallState.ACTIVE:
            core.recycler.opened(given.session)
            return
        if core.state not in OFFLINE or given.session != self.session:
            raise CoreStateError(core.state, given)
        core.state = CallState.ACTIVE
        seeded = self.configure(given.session, seed=self.opened > 0 or core.config.resumed)  # resumed: the talk so far
        for payload in self.utterance.take_replay():
            self.out.to_model(oa.encode_append(payload), self.session)
        if self.opened == 0:  # a re-seeded session was told the outputs with the rest of the conversation
            for tool_call_id, output in self.unsent_outputs:
                self._send_output(tool_call_id, output)
        self.unsent_outputs.clear()
        self.opened += 1
        self._maybe_create_response()
        self.out.record(
            ModelConnected(
                call_id=core.config.call_id,
                at=self.out.now,
                url=core.config.model_url,
                attempt=self.attempt,
                seeded_items=seeded,
            )
        )
        self.failures = 0
        if self.opened == 1:
            core.control.first_session_opened()
        core.recycler.session_became_current()

    def _lost(self, given: ModelSessionLost) -> None:
        core = self.core
        if given.session == core.recycler.pending and core.state in LIVE:
            core.recycler.lost(given.error)
            return
        if given.session != self.session or core.state not in LIVE:
            raise CoreStateError(core.state, given)
        core.recycler.abandon()
        was_active = core.state is CallState.ACTIVE
        if not was_active and core.state not in OFFLINE:
            return  # ending or apologizing: the session is no longer wanted
        self.gate.link_lost()
        core.assistant.active_items.clear()
        call_id, now = core.config.call_id, self.out.now
        if given.connected:
            self.out.record(
                ModelDisconnected(call_id=call_id, at=now, code=given.code, reason=given.reason, error=given.error)
            )
        self.failures += 1
        self.attempt += 1
        delay = core.config.reconnect.next_delay(self.failures, retryable=given.retryable)
        if not given.connected or delay is None:
            self.out.record(
                ModelConnectionFailed(
                    call_id=call_id, at=now, attempt=self.attempt - 1, error=given.error, retry_in_s=delay
                )
            )
        if delay is None:
            core.model_unavailable(f"model unreachable after {self.failures} attempts: {given.error}")
            return
        self.out.emit(
            LogLine(level=logging.WARNING, message=f"model session lost ({given.error}); retry in {delay:g} s")
        )
        core.state = CallState.RECONNECTING
        self.session += 1
        self.out.emit(OpenModelSession(session=self.session, delay_s=delay))

    # --- the model's events ----------------------------------------------------------------------

    def _check_current(self, given: ModelServerEvent | ModelFrameInvalid) -> bool:
        """True for events of the open session (still read while the call ends), False for those of a
        session being readied to take over (recorded, not acted on); anything else is a bug in the
        code that feeds the core."""
        state = self.core.state
        if state in (CallState.ACTIVE, CallState.ENDING):
            if given.session == self.session:
                return True
            if given.session == self.core.recycler.pending:
                return False
        raise CoreStateError(state, given)

    def _frame_invalid(self, given: ModelFrameInvalid) -> None:
        self._check_current(given)  # recorded whichever session sent it
        self.out.record(
            ModelEventUnknown(
                call_id=self.core.config.call_id, at=self.out.now, type="", raw=given.raw[:4096], error=given.error
            )
        )

    def _server_event(self, given: ModelServerEvent) -> None:
        current = self._check_current(given)
        core, out, event = self.core, self.out, given.event
        if isinstance(event, se.ResponseOutputAudioDelta) and current:
            core.assistant.delta(out, event.response_id, event.item_id, event.content_index, event.delta)
            core.control.audio_sent(event.response_id)
            return
        call_id = core.config.call_id
        if isinstance(event, oa.UnknownServerEvent):
            out.record(
                ModelEventUnknown(call_id=call_id, at=out.now, type=event.type, raw=given.raw, error=event.error)
            )
            return
        out.record(ModelEventReceived(call_id=call_id, at=out.now, type=_tag(event), raw=given.raw))
        if not current:
            return
        if isinstance(event, se.InputAudioBufferSpeechStarted):
            out.record(
                CallerSpeechDetected(
                    call_id=call_id, at=out.now, item_id=event.item_id, started=True, audio_ms=event.audio_start_ms
                )
            )
            self.utterance.speech_started()
            core.control.caller_speech(started=True)
            detection = core.session_config.get("turn_detection") or {}
            if detection.get("interrupt_response") is not False:
                truncate = core.assistant.barge_in(out)
                if truncate is not None and self.connected:
                    self.send(truncate)
        elif isinstance(event, se.InputAudioBufferSpeechStopped):
            out.record(
                CallerSpeechDetected(
                    call_id=call_id, at=out.now, item_id=event.item_id, started=False, audio_ms=event.audio_end_ms
                )
            )
            core.control.caller_speech(started=False)
        elif isinstance(event, se.InputAudioBufferCommitted):
            self.utterance.committed()
        elif isinstance(event, se.InputAudioTranscriptionCompleted):
            out.record(CallerSaid(call_id=call_id, at=out.now, item_id=event.item_id, text=event.transcript))
        elif isinstance(event, se.ResponseOutputAudioTranscriptDone | se.ResponseOutputTextDone):
            text = event.transcript if isinstance(event, se.ResponseOutputAudioTranscriptDone) else event.text
            purpose = self.purposes.get(event.response_id, "")
            out.record(
                AssistantSaid(
                    call_id=call_id,
                    at=out.now,
                    item_id=event.item_id,
                    response_id=event.response_id,
                    text=text,
                    purpose=purpose,
                    out_of_band=purpose == TOOL_WAIT_TAG,
                )
            )
        elif isinstance(event, se.ResponseCreated):
            metadata = event.response.metadata
            if isinstance(metadata, dict) and isinstance(metadata.get("callbridge"), str):
                self.purposes[event.response.id or ""] = metadata["callbridge"]
            out_of_band = is_tool_wait_response(metadata)
            self.gate.response_created(event.response.id or "", out_of_band=out_of_band)
            if not self.gate.needed:
                self.next_response = None  # a response began that answers what was waiting
            core.control.response_created(event.response.id or "", event.response.metadata)
        elif isinstance(event, se.ResponseOutputItemAdded):
            item = event.item
            if item.type == "message" and item.id:
                core.assistant.active_items.add(item.id)
        elif isinstance(event, se.ResponseFunctionCallArgumentsDone):
            self._function_call(event)
        elif isinstance(event, se.ResponseDone):
            response_id = event.response.id or ""
            purpose = self.purposes.pop(response_id, "")
            out.record(
                ResponseFinished(
                    call_id=call_id,
                    at=out.now,
                    response_id=response_id,
                    status=event.response.status or "",
                    tokens=dict(zip(TOKEN_KINDS, usage_tokens(event.response.usage), strict=True)),
                    purpose=purpose,
                    out_of_band=purpose == TOOL_WAIT_TAG,
                )
            )
            self.gate.response_done(response_id)
            core.assistant.active_items.clear()
            self._maybe_create_response()
        elif isinstance(event, se.ErrorEvent):
            error = event.error
            out.record(
                ModelErrorReported(
                    call_id=call_id,
                    at=out.now,
                    code=error.code,
                    message=error.message,
                    error_type=error.type,
                    param=error.param,
                )
            )
            if error.code == "conversation_already_has_active_response":
                self.gate.refused_as_busy()
            elif error.event_id in self._updates:
                self._session_answered(error.event_id)
        elif isinstance(event, se.SessionUpdated):
            self._session_answered(None)

    # --- tools -----------------------------------------------------------------------------------

    def _handler_of(self, name: str) -> str:
        if name in self.builtin_names:
            return "builtin"
        return "backend" if name in self.core.config.backend_tools else "human"

    def _function_call(self, event: Any) -> None:
        tool_call_id = str(event.call_id)
        if tool_call_id in self.requested:
            self.out.emit(LogLine(level=logging.WARNING, message=f"duplicate function call {tool_call_id} ignored"))
            return
        handler = self._handler_of(event.name)
        self.requested[tool_call_id] = event.name
        if handler == "builtin":
            self.out.record(
                ToolCallRequested(
                    call_id=self.core.config.call_id,
                    at=self.out.now,
                    tool_call_id=tool_call_id,
                    name=event.name,
                    arguments=event.arguments,
                    response_id=event.response_id,
                    item_id=event.item_id,
                    handler=handler,
                )
            )
            if event.name == SEND_DTMF:
                self.core.keypad.send(tool_call_id, str(_arguments(event.arguments).get("digits") or ""))
            else:
                self.core.control.builtin_call(tool_call_id, event.name, event.arguments, event.response_id)
            return
        self.gate.tool_requested(tool_call_id)
        delay = self.tool_wait.tool_started()
        if delay is not None:
            self.out.emit(StartTimer(timer=Timer.TOOL_WAIT, delay_s=delay))
        self.out.record(
            ToolCallRequested(
                call_id=self.core.config.call_id,
                at=self.out.now,
                tool_call_id=tool_call_id,
                name=event.name,
                arguments=event.arguments,
                response_id=event.response_id,
                item_id=event.item_id,
                handler=handler,
            )
        )
        self.out.emit(RunTool(tool_call_id=tool_call_id, name=event.name, arguments=event.arguments, handler=handler))

    def _tool_settled(self, given: ToolSettled) -> None:
        tool_call_id = given.tool_call_id
        if tool_call_id in self.answered or tool_call_id not in self.requested:
            why = "already answered" if tool_call_id in self.answered else "never requested"
            self.out.emit(LogLine(level=logging.WARNING, message=f"tool result for {tool_call_id} dropped: {why}"))
            return
        self.answered.add(tool_call_id)
        self.out.record(given.event)
        self.gate.output_arrived(tool_call_id)
        if not self.gate.awaiting_outputs and self.tool_wait.all_answered():
            self.out.emit(CancelTimer(timer=Timer.TOOL_WAIT))
        if self.connected:
            self._send_output(tool_call_id, given.output)
            self._maybe_create_response()
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
        if self.connected:
            self._send_output(tool_call_id, output)

    def _send_output(self, tool_call_id: str, output: str) -> None:
        self.send(
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": tool_call_id, "output": output},
            }
        )

    def _runner_lost(self, given: ToolRunnerLost) -> None:
        """The crashed runner took its pending calls with it: each still gets one (error) output."""
        for tool_call_id in sorted(self.gate.awaiting_outputs):
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
            self._tool_settled(ToolSettled(tool_call_id=tool_call_id, output=output, event=failed))

    def timer_fired(self, timer: Timer) -> None:
        if timer is not Timer.TOOL_WAIT:
            return
        gate = self.gate
        may_speak = (
            self.connected
            and bool(gate.awaiting_outputs)
            and gate.active_response is None
            and not gate.requested
            and not self.core.assistant.is_playing
        )
        decision = self.tool_wait.fired(may_speak)
        if decision == "announce":
            gate.out_of_band_requested()
            self.send({"type": "response.create", "response": TOOL_WAIT_RESPONSE})
        elif decision == "retry":
            self.out.emit(StartTimer(timer=Timer.TOOL_WAIT, delay_s=RETRY_S))

    # --- operators -------------------------------------------------------------------------------

    def _update_session(self, given: SessionUpdateRequested) -> None:
        core = self.core
        before = core.session_config
        core.session_config = {**before, **given.session}
        self.out.record(
            CallSessionConfigChanged(
                call_id=core.config.call_id, at=self.out.now, session_config=core.session_config, source=given.source
            )
        )
        if self.connected:
            event_id = f"callbridge_session_{len(self._updates) + 1}_{self.out.now:.3f}"
            self._updates[event_id] = before
            self.send({"type": "session.update", "event_id": event_id, "session": self._session_payload()})

    def _session_answered(self, refused_event_id: str | None) -> None:
        """The model answered an operator's session change: ``session.updated`` (the oldest change is
        in force) or an ``error`` naming the change, which is then undone — the call's config stays
        what the model really runs (a refused voice must not ride along with every later change)."""
        if refused_event_id is None:
            if self._updates:
                del self._updates[next(iter(self._updates))]
            return
        before = self._updates.pop(refused_event_id, None)
        if before is None:
            return
        core = self.core
        core.session_config = before
        self.out.record(
            CallSessionConfigChanged(
                call_id=core.config.call_id, at=self.out.now, session_config=before, source="model_refused"
            )
        )

    def _client_event(self, given: ClientEventRequested) -> None:
        kind = given.event.get("type")
        if kind not in CONSOLE_CLIENT_EVENTS:
            self.out.emit(LogLine(level=logging.WARNING, message=f"console event {kind!r} refused"))
            return
        if kind == "response.create":
            self.gate.asked()
            self._maybe_create_response()
        elif self.connected:
            self.send({"type": "conversation.item.create", "item": given.event.get("item") or {}})


def _arguments(text: str) -> dict[str, Any]:
    try:
        value = msgspec.json.decode(text or "{}")
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}
