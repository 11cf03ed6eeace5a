"""The call core's model side: sessions, server events and operators — pure.

Part of ``CallCore`` (``engine/call_core.py``), kept in its own module because it is the larger half:

- **sessions**: a new session is configured (``session.update``) and, after the first, re-seeded
  from the call's own recorded conversation (``engine/conversation.py``), told the utterance a lost
  session cut short (``engine/utterance_buffer.py``), and given the tool outputs that arrived while
  it was away; a lost one is reopened with bounded backoff (``engine/reconnect.py``), or the call
  ends (with an apology) when it cannot be;
- **barge-in**: on ``input_audio_buffer.speech_started`` Twilio's buffer is cleared and the item
  truncated at what the caller really heard (``engine/assistant_audio.py``);
- **tools**: finished function calls go to ``engine/call_tools.py`` (each answered exactly once);
- **operators**: session changes and the console's client events.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.session import session_update_payload
from callbridge.engine.call_io import (
    ClientEventRequested,
    CoreStateError,
    Input,
    LogLine,
    ModelFrameInvalid,
    ModelServerEvent,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    SessionUpdateRequested,
    ToolRunnerLost,
    ToolSettled,
)
from callbridge.engine.call_state import LIVE, OFFLINE, CallState
from callbridge.engine.call_tools import ToolCalls
from callbridge.engine.events import (
    CallSessionConfigChanged,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelErrorReported,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
)
from callbridge.engine.model_facts import conversation_facts, response_purpose
from callbridge.engine.offered_tools import merged_tools
from callbridge.engine.response_gate import ResponseGate
from callbridge.engine.tool_wait import is_tool_wait_response
from callbridge.engine.utterance_buffer import UtteranceBuffer

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

_json = msgspec.json.Encoder()

CONSOLE_CLIENT_EVENTS = frozenset({"conversation.item.create", "response.create"})


class ModelSide:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.session = 1
        """The session the core is on, or is asking for."""
        self._last_session = 1
        self.next_response: dict[str, Any] | None = None
        """What the next ``response.create`` asks for (a greeting, a goodbye, …), when the gate allows."""
        self.purposes: dict[str, str] = {}
        """response id -> what the engine asked it for (``metadata.callbridge``), if it did."""
        self._updates: dict[str, dict[str, Any]] = {}
        """Operator session changes not answered yet: client event id -> the config before (restored if refused)."""
        self.opened = 0
        """Sessions opened so far: every one after the first (and a resumed call's first) is re-seeded."""
        self.attempt = 0
        self.failures = 0
        self.gate = ResponseGate()
        self.utterance = UtteranceBuffer()
        self.tools = ToolCalls(self)
        self._handlers: dict[type, Any] = {
            ModelSessionOpened: self._opened,
            ModelServerEvent: self._server_event,
            ModelFrameInvalid: self._frame_invalid,
            ModelSessionLost: self._lost,
            ToolSettled: self.tools.settled,
            ToolRunnerLost: self.tools.runner_lost,
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
        self.maybe_create_response()

    def maybe_create_response(self) -> None:
        if self.connected and self.gate.take():
            event: dict[str, Any] = {"type": "response.create"}
            if self.next_response is not None:
                event["response"], self.next_response = self.next_response, None
            self.send(event)

    def _session_payload(self) -> dict[str, Any]:
        config = dict(self.core.session_config)
        config["tools"] = merged_tools(self.core.config.tool_schemas, self.tools.builtins, config.get("tools"))
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
        seeded = self.configure(given.session, seed=self.opened > 0 or core.config.resumed)
        for payload in self.utterance.take_replay():
            self.out.to_model(oa.encode_append(payload), self.session)
        if self.opened == 0:  # a re-seeded session was told the outputs with the rest of the conversation
            self.tools.send_unsent()
        self.tools.unsent_outputs.clear()
        self.opened += 1
        self.maybe_create_response()
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
        self.session = self.allocate()  # never a number a recycle already took
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
        out.record(
            ModelEventReceived(call_id=call_id, at=out.now, type=str(type(event).__struct_config__.tag), raw=given.raw)
        )
        if not current:
            return
        if isinstance(event, se.ResponseCreated):
            purpose = response_purpose(event.response)
            if purpose:
                self.purposes[event.response.id or ""] = purpose
        for fact in conversation_facts(event, call_id, out.now, self.purposes):
            out.record(fact)
        if isinstance(event, se.InputAudioBufferSpeechStarted):
            self.utterance.speech_started()
            core.control.caller_speech(started=True)
            detection = core.session_config.get("turn_detection") or {}
            if detection.get("interrupt_response") is not False:
                truncate = core.assistant.barge_in(out)
                if truncate is not None and self.connected:
                    self.send(truncate)
        elif isinstance(event, se.InputAudioBufferSpeechStopped):
            core.control.caller_speech(started=False)
        elif isinstance(event, se.InputAudioBufferCommitted):
            self.utterance.committed()
        elif isinstance(event, se.ResponseCreated):
            out_of_band = is_tool_wait_response(event.response.metadata)
            self.gate.response_created(event.response.id or "", out_of_band=out_of_band)
            if not self.gate.needed:
                self.next_response = None  # a response began that answers what was waiting
            core.control.response_created(event.response.id or "", event.response.metadata)
        elif isinstance(event, se.ResponseOutputItemAdded):
            item = event.item
            if item.type == "message" and item.id:
                core.assistant.active_items.add(item.id)
        elif isinstance(event, se.ResponseFunctionCallArgumentsDone):
            self.tools.function_call(event)
        elif isinstance(event, se.ResponseDone):
            response_id = event.response.id or ""
            self.purposes.pop(response_id, "")
            self.gate.response_done(response_id)
            core.assistant.active_items.clear()
            self.maybe_create_response()
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
            self.maybe_create_response()
        elif self.connected:
            self.send({"type": "conversation.item.create", "item": given.event.get("item") or {}})
