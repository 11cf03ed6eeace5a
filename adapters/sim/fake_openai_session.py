"""The simulated realtime model's brain for one session (sans-IO).

``handle(client_event)`` returns a ``Reaction``: the server events to send now, maybe a response
that started (the I/O layer then streams it by calling ``advance``), maybe a close. Everything the
real server does that the bridge depends on is here: server VAD turns, scripted transcripts and
replies, function calls, barge-in cancelling the active response, truncation bounds, and the
error answers of docs/protocols.md B7.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from callbridge.adapters.openai import client_events as ce
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.sim.fake_openai_config import (
    BetaShapeRejected,
    ConfigRejected,
    apply_session_update,
    default_session,
)
from callbridge.adapters.sim.fake_openai_conversation import Conversation, Ids, StoredItem, error_event, text_tokens
from callbridge.adapters.sim.fake_openai_items import ItemRejected, item_from_client, user_audio_item
from callbridge.adapters.sim.fake_openai_response import FunctionCallPlan, Plan, ReplyPlan, ResponseRun
from callbridge.adapters.sim.fake_openai_script import Script, instructed_reply
from callbridge.adapters.sim.fake_openai_vad import (
    RMS_AT_THRESHOLD_HALF,
    EnergyVad,
    SpeechStarted,
    VadSignal,
    settings_from_turn_detection,
)
from callbridge.adapters.sim.voice import BYTES_PER_MS

BETA_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
_SUPPORTED = ", ".join(f"'{cls.__struct_config__.tag}'" for cls in ce.CLIENT_EVENT_TYPES)


class Reaction(msgspec.Struct, kw_only=True):
    events: list[se.ServerEventBase] = []
    started: ResponseRun | None = None
    close: tuple[int, str] | None = None


OUT_OF_BAND_REPLY = "One moment, I'm still working on that."
CALL_CONTROL_TOOLS = frozenset({"end_call", "transfer_call", "send_dtmf"})
"""Scripted calls of these are made only when the session offers them (the agent decides which)."""


class FakeRealtimeSession:
    def __init__(
        self,
        *,
        script: Script,
        ids: Ids | None = None,
        model: str = "gpt-realtime",
        rms_scale: float = RMS_AT_THRESHOLD_HALF,
    ) -> None:
        self.ids = ids or Ids()
        self.script = script
        self.config = default_session(self.ids.new("sess"), model)
        self.conversation = Conversation()
        self.active: ResponseRun | None = None
        self._rms_scale = rms_scale
        self._vad = EnergyVad(settings_from_turn_detection(self._turn_detection or {}, rms_scale))
        self._appended_bytes = 0
        self._buffer_start_bytes = 0
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0
        self._last_input_tokens = 0
        self._has_audio_output = False

    # --- helpers ------------------------------------------------------------------------------

    @property
    def _turn_detection(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.config["audio"]["input"].get("turn_detection")
        return value

    def _error(self, message: str, event: Any = None, **fields: Any) -> se.ErrorEvent:
        client_event_id = getattr(event, "event_id", None)
        return error_event(self.ids, message, client_event_id=client_event_id, **fields)

    def opening(self) -> list[se.ServerEventBase]:
        """The first events of a session."""
        return [se.SessionCreated(event_id=self.ids.event(), session=self.config)]

    def beta_rejection(self) -> Reaction:
        """The answer to a beta handshake or a beta-shaped session (docs/protocols.md B1)."""
        error = error_event(self.ids, BETA_MESSAGE, code="beta_api_shape_disabled")
        return Reaction(events=[error], close=(4000, "beta_api_shape_disabled"))

    def expire(self) -> Reaction:
        """The 60-minute cap: ``session_expired``, then close 1001."""
        message = "Your session hit the maximum duration of 60 minutes."
        return Reaction(events=[error_event(self.ids, message, code="session_expired")], close=(1001, message))

    def reject_frame(self, problem: str) -> Reaction:
        """A frame that is not an event at all (not JSON, no type)."""
        return Reaction(events=[self._error(f"Invalid client event: {problem}", code="invalid_json")])

    # --- dispatch -----------------------------------------------------------------------------

    def handle(self, event: ce.ClientEvent | ce.UnknownClientEvent) -> Reaction:
        match event:
            case ce.InputAudioBufferAppend():
                return self._append(event)
            case ce.SessionUpdate():
                return self._session_update(event)
            case ce.InputAudioBufferCommit():
                return self._commit(event)
            case ce.InputAudioBufferClear():
                self._vad.reset()
                self._buffer_start_bytes = self._appended_bytes
                self._speech_item_id = None
                return Reaction(events=[se.InputAudioBufferCleared(event_id=self.ids.event())])
            case ce.ConversationItemCreate():
                return self._item_create(event)
            case ce.ConversationItemTruncate():
                return self._truncate(event)
            case ce.ConversationItemDelete():
                if not self.conversation.delete(event.item_id):
                    return self._missing_item(event, event.item_id)
                return Reaction(events=[se.ConversationItemDeleted(event_id=self.ids.event(), item_id=event.item_id)])
            case ce.ConversationItemRetrieve():
                stored = self.conversation.get(event.item_id)
                if stored is None:
                    return self._missing_item(event, event.item_id)
                return Reaction(events=[se.ConversationItemRetrieved(event_id=self.ids.event(), item=stored.item)])
            case ce.ResponseCreate():
                return self._response_create(event)
            case ce.ResponseCancel():
                return self._response_cancel(event)
            case ce.OutputAudioBufferClear():
                message = "output_audio_buffer.clear is only supported for WebRTC and SIP sessions."
                return Reaction(events=[self._error(message, event, param="type")])
            case ce.UnknownClientEvent():
                return Reaction(events=[self._unknown(event)])
        raise AssertionError(f"unhandled client event {event!r}")  # pragma: no cover

    def _unknown(self, event: ce.UnknownClientEvent) -> se.ErrorEvent:
        if event.error.startswith("unknown client event type"):
            message = f"Invalid value: '{event.type}'. Supported values are: {_SUPPORTED}."
            return self._error(message, code="invalid_value", param="type")
        return self._error(f"Invalid '{event.type}' event: {event.error}")

    def _missing_item(self, event: Any, item_id: str) -> Reaction:
        message = f"Item with item_id '{item_id}' does not exist."
        return Reaction(events=[self._error(message, event, code="item_not_found", param="item_id")])

    # --- session ------------------------------------------------------------------------------

    def _session_update(self, event: ce.SessionUpdate) -> Reaction:
        try:
            config = apply_session_update(self.config, event.session, has_audio_output=self._has_audio_output)
        except BetaShapeRejected:
            return self.beta_rejection()
        except ConfigRejected as exc:
            return Reaction(events=[self._error(exc.message, event, code=exc.code, param=exc.param)])
        self.config = config
        self._vad.settings = settings_from_turn_detection(self._turn_detection or {}, self._rms_scale)
        return Reaction(events=[se.SessionUpdated(event_id=self.ids.event(), session=self.config)])

    # --- input audio --------------------------------------------------------------------------

    def _append(self, event: ce.InputAudioBufferAppend) -> Reaction:
        try:
            audio = base64.b64decode(event.audio, validate=True)
        except (binascii.Error, ValueError):
            message = "Invalid 'audio'. Expected base64-encoded audio bytes."
            return Reaction(events=[self._error(message, event, code="invalid_value", param="audio")])
        self._appended_bytes += len(audio)
        if self._turn_detection is None:
            return Reaction()
        reaction = Reaction(events=[])
        for signal in self._vad.feed(audio):
            self._on_vad(signal, reaction)
        return reaction

    def _on_vad(self, signal: VadSignal, reaction: Reaction) -> None:
        turn_detection = self._turn_detection or {}
        if isinstance(signal, SpeechStarted):
            self._speech_item_id = self.ids.new("item")
            self._speech_start_ms = signal.audio_start_ms
            reaction.events.append(
                se.InputAudioBufferSpeechStarted(
                    event_id=self.ids.event(), item_id=self._speech_item_id, audio_start_ms=signal.audio_start_ms
                )
            )
            if self.active is not None and turn_detection.get("interrupt_response", True):
                reaction.events += self._end_active("turn_detected")
            return
        item_id = self._speech_item_id or self.ids.new("item")
        self._speech_item_id = None
        reaction.events.append(
            se.InputAudioBufferSpeechStopped(
                event_id=self.ids.event(), item_id=item_id, audio_end_ms=signal.audio_end_ms
            )
        )
        self._buffer_start_bytes = self._appended_bytes
        reaction.events += self._commit_user_audio(item_id, signal.audio_end_ms - self._speech_start_ms)
        if turn_detection.get("create_response", True) and self.active is None:
            reaction.events += self._start(self._plan(), reaction)

    def _commit(self, event: ce.InputAudioBufferCommit) -> Reaction:
        buffered_ms = (self._appended_bytes - self._buffer_start_bytes) / BYTES_PER_MS
        if buffered_ms < 100:
            message = (
                "Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                f"audio, but buffer only has {buffered_ms:.2f}ms of audio."
            )
            return Reaction(events=[self._error(message, event, code="input_audio_buffer_commit_empty")])
        self._buffer_start_bytes = self._appended_bytes
        self._vad.reset()
        item_id = self._speech_item_id or self.ids.new("item")
        self._speech_item_id = None
        return Reaction(events=self._commit_user_audio(item_id, int(buffered_ms)))

    def _commit_user_audio(self, item_id: str, audio_ms: int) -> list[se.ServerEventBase]:
        turn = self.conversation.user_turns()
        transcript = self.script.turn(turn).transcript
        item = user_audio_item(item_id, transcript=None)
        stored = StoredItem(item=item, audio_ms=audio_ms, turn=turn)
        previous = self.conversation.insert(stored)
        events: list[se.ServerEventBase] = [
            se.InputAudioBufferCommitted(event_id=self.ids.event(), item_id=item_id, previous_item_id=previous),
            se.ConversationItemAdded(event_id=self.ids.event(), item=item, previous_item_id=previous),
        ]
        transcription = self.config["audio"]["input"].get("transcription")
        if transcription:
            words = transcript.split(" ")
            half = max(1, len(words) // 2)
            for piece in (" ".join(words[:half]), " " + " ".join(words[half:])):
                if piece.strip():
                    events.append(
                        se.InputAudioTranscriptionDelta(
                            event_id=self.ids.event(), item_id=item_id, content_index=0, delta=piece
                        )
                    )
            tokens = text_tokens(transcript)
            audio_tokens = -(-audio_ms // 100)
            usage = {
                "type": "tokens", "input_tokens": audio_tokens, "output_tokens": tokens,
                "total_tokens": audio_tokens + tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            }  # fmt: skip
            events.append(
                se.InputAudioTranscriptionCompleted(
                    event_id=self.ids.event(), item_id=item_id, content_index=0, transcript=transcript, usage=usage
                )
            )
            stored.item = item = user_audio_item(item_id, transcript=transcript)
        events.append(se.ConversationItemDone(event_id=self.ids.event(), item=item, previous_item_id=previous))
        return events

    # --- conversation items -------------------------------------------------------------------

    def _item_create(self, event: ce.ConversationItemCreate) -> Reaction:
        try:
            stored = item_from_client(event.item, self.conversation, self.ids)
            previous = self.conversation.insert(stored, event.previous_item_id)
        except ItemRejected as exc:
            return Reaction(events=[self._error(exc.message, event, code=exc.code, param=exc.param)])
        except KeyError:
            message = f"Previous item with item_id '{event.previous_item_id}' does not exist."
            return Reaction(events=[self._error(message, event, code="item_not_found", param="previous_item_id")])
        return Reaction(
            events=[
                se.ConversationItemAdded(event_id=self.ids.event(), item=stored.item, previous_item_id=previous),
                se.ConversationItemDone(event_id=self.ids.event(), item=stored.item, previous_item_id=previous),
            ]
        )

    def _truncate(self, event: ce.ConversationItemTruncate) -> Reaction:
        stored = self.conversation.get(event.item_id)
        if stored is None:
            return self._missing_item(event, event.item_id)
        item = stored.item
        if item.type != "message" or item.role != "assistant" or stored.audio_ms <= 0:
            message = "Only model output audio messages can be truncated"
            return Reaction(events=[self._error(message, event, param="item_id")])
        if event.content_index != 0:
            message = f"Invalid content_index {event.content_index}: the item has one audio part."
            return Reaction(events=[self._error(message, event, param="content_index")])
        if event.audio_end_ms < 0 or event.audio_end_ms > stored.audio_ms:
            message = f"Audio content of {stored.audio_ms}ms is already shorter than {event.audio_end_ms}ms"
            return Reaction(events=[self._error(message, event, param="audio_end_ms")])
        if item.content:
            part = item.content[0]
            transcript = part.transcript or ""
            kept = transcript[: len(transcript) * event.audio_end_ms // stored.audio_ms]
            stored.item = msgspec.structs.replace(item, content=[msgspec.structs.replace(part, transcript=kept)])
        stored.audio_ms = event.audio_end_ms
        truncated = se.ConversationItemTruncated(
            event_id=self.ids.event(), item_id=event.item_id, content_index=0, audio_end_ms=event.audio_end_ms
        )
        return Reaction(events=[truncated])

    # --- responses ----------------------------------------------------------------------------

    def _plan(self) -> Plan:
        """What the model says next, from the conversation and the script."""
        items = self.conversation.items
        last = items[-1] if items else None
        if last is not None and last.item.type == "function_call_output":
            call = self.conversation.function_call(last.item.call_id or "")
            turn = call.turn if call is not None and call.turn is not None else self.conversation.user_turns() - 1
            return ReplyPlan(text=self.script.turn(turn).tool_reply(last.item.output or ""))
        if last is None or self.conversation.user_turns() == 0:
            return ReplyPlan(text=self.script.greeting)
        if last.item.type == "message" and last.item.role == "user" and last.turn is not None:
            said = "".join(part.text or "" for part in last.item.content or [])
            keyed = self.script.keypad_turn(said) if said else None
            turn = last.turn if keyed is None else keyed
            scripted = self.script.turn(turn)
            if scripted.function_call is not None:
                wanted = scripted.function_call
                if wanted.name in CALL_CONTROL_TOOLS and wanted.name not in self._offered_tools():
                    return ReplyPlan(text=scripted.after_tool_error)  # a model calls only what it is offered
                return FunctionCallPlan(name=wanted.name, arguments=wanted.arguments_json, turn=turn)
            return ReplyPlan(text=scripted.reply or "")
        return ReplyPlan(text=self.script.fallback_reply)

    def _offered_tools(self) -> set[str]:
        return {str(tool.get("name")) for tool in self.config.get("tools") or [] if isinstance(tool, dict)}

    def _start(
        self, plan: Plan, reaction: Reaction, metadata: dict[str, Any] | None = None, *, out_of_band: bool = False
    ) -> list[se.ServerEventBase]:
        run = ResponseRun(
            out_of_band=out_of_band,
            ids=self.ids,
            conversation=self.conversation,
            plan=plan,
            session=self.config,
            cached_tokens=self._last_input_tokens,
            metadata=metadata,
        )
        self._last_input_tokens = run.input_tokens
        events = run.start()
        if run.finished:
            return events
        self.active = run
        reaction.started = run
        if isinstance(plan, ReplyPlan) and self.config.get("output_modalities") != ["text"]:
            self._has_audio_output = True
        return events

    def _response_create(self, event: ce.ResponseCreate) -> Reaction:
        if self.active is not None:
            message = (
                f"Conversation already has an active response in progress: {self.active.response_id}. "
                "Wait until the response is finished before creating a new one."
            )
            return Reaction(events=[self._error(message, event, code="conversation_already_has_active_response")])
        options = event.response or {}
        metadata = options.get("metadata") if isinstance(options.get("metadata"), dict) else None
        reaction = Reaction(events=[])
        if options.get("conversation") == "none":
            # An out-of-band response (e.g. "still looking that up"): spoken, not remembered.
            plan: Plan = ReplyPlan(text=OUT_OF_BAND_REPLY)
            reaction.events += self._start(plan, reaction, metadata, out_of_band=True)
            return reaction
        instructions = options.get("instructions")
        said = instructed_reply(instructions) if isinstance(instructions, str) else None
        plan = ReplyPlan(text=said) if said is not None else self._plan()
        reaction.events += self._start(plan, reaction, metadata)
        return reaction

    def _response_cancel(self, event: ce.ResponseCancel) -> Reaction:
        active = self.active
        if active is None or (event.response_id is not None and event.response_id != active.response_id):
            message = "Cancellation failed: no active response found"
            return Reaction(events=[self._error(message, event, code="response_cancel_not_active")])
        return Reaction(events=self._end_active("client_cancelled"))

    def _end_active(self, reason: str) -> list[se.ServerEventBase]:
        assert self.active is not None
        events = self.active.cancel(reason)
        self.active = None
        return events

    def advance(self, run: ResponseRun) -> tuple[list[se.ServerEventBase], int] | None:
        """The next step of ``run`` (events, audio ms), or None once it is over or was replaced."""
        if run is not self.active or run.finished:
            return None
        events, audio_ms = run.step()
        if run.finished:
            self.active = None
        return events, audio_ms
