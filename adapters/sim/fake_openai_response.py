"""One simulated response, as the ordered server events of docs/protocols.md B6 (sans-IO).

A ``ResponseRun`` is stepped by its owner: ``start()`` gives the opening events, each ``step()``
the next ~100 ms audio chunk (``response.output_audio.delta`` followed by the matching slice of
``response.output_audio_transcript.delta``) and, after the last chunk, the closing events up to
``response.done``. ``cancel()`` closes it early (barge-in or ``response.cancel``) with
``status="cancelled"``. The owner decides the pace; the audio says how many ms each step carries.

The speech is syllable-modulated synthetic voice (``adapters.sim.voice``), ~65 ms per character
of the reply text, capped — something a replayed WAV and an energy VAD both notice.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from typing import Any, Final

import msgspec

from callbridge.adapters.openai import server_events as se
from callbridge.adapters.sim.fake_openai_conversation import Conversation, Ids, StoredItem, text_tokens
from callbridge.adapters.sim.voice import BYTES_PER_MS, speech

MS_PER_CHARACTER: Final = 65
MAX_SPEECH_MS: Final = 15_000
CHUNK_BYTES: Final = 800
"""100 ms of μ-law per ``response.output_audio.delta``."""


class ReplyPlan(msgspec.Struct, frozen=True, kw_only=True):
    text: str


class FunctionCallPlan(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    arguments: str
    turn: int | None = None


Plan = ReplyPlan | FunctionCallPlan


def speech_audio(text: str) -> bytes:
    """μ-law speech for ``text``: duration proportional to its length, capped."""
    duration_ms = min(MAX_SPEECH_MS, max(200, len(text) * MS_PER_CHARACTER))
    return speech(duration_ms, offset_ms=zlib.crc32(text.encode()) % 4000)


def split_transcript(text: str, parts: int) -> list[str]:
    """``text`` in ``parts`` consecutive slices cut at word ends, so each audio chunk carries the
    words spoken in it (some slices may be empty)."""
    slices: list[str] = []
    start = 0
    for index in range(1, parts + 1):
        if index == parts:
            end = len(text)
        else:
            end = max(start, -(-len(text) * index // parts))
            space = text.find(" ", end)
            end = len(text) if space < 0 else space + 1
        slices.append(text[start:end])
        start = end
    return slices


class ResponseRun:
    def __init__(
        self,
        *,
        ids: Ids,
        conversation: Conversation,
        plan: Plan,
        session: dict[str, Any],
        cached_tokens: int,
        metadata: dict[str, Any] | None = None,
        out_of_band: bool = False,
    ) -> None:
        self._ids = ids
        self.out_of_band = out_of_band
        """``response.conversation == "none"``: the reply is spoken but not added to the conversation."""
        self._conversation = conversation
        self.plan = plan
        self.response_id = ids.new("resp")
        self.item_id = ids.new("item")
        self.status = "in_progress"
        self._voice = session["audio"]["output"].get("voice", "marin")
        self._modality = (session.get("output_modalities") or ["audio"])[0]
        self._metadata = metadata
        instructions = session.get("instructions") or ""
        text_in, audio_in = conversation.input_tokens()
        self._input = (text_in + text_tokens(instructions), audio_in)
        self._cached = min(cached_tokens, sum(self._input))
        self._stored: StoredItem | None = None
        self._previous: str | None = None
        self._chunks: list[tuple[str, int]] = []
        """(base64 audio, byte count) per step; empty base64 in text mode (one word per step)."""
        self._transcript_slices: list[str] = []
        self._next_chunk = 0
        self._sent_bytes = 0
        self._spoken = ""

    @property
    def finished(self) -> bool:
        return self.status != "in_progress"

    @property
    def input_tokens(self) -> int:
        return sum(self._input)

    def _event(self, cls: Callable[..., se.ServerEventBase], **fields: Any) -> se.ServerEventBase:
        return cls(event_id=self._ids.event(), **fields)

    def _response(self, status: str, reason: str | None = None) -> se.Response:
        done = status != "in_progress"
        details = se.StatusDetails(type=status, reason=reason) if status not in ("in_progress", "completed") else None
        return se.Response(
            id=self.response_id,
            object="realtime.response",
            status=status,
            status_details=details,
            output=[self._stored.item] if done and self._stored else [],
            usage=self._usage() if done else None,
            conversation_id="conv_simulated",
            output_modalities=[self._modality],
            audio={"output": {"format": {"type": "audio/pcmu"}, "voice": self._voice}},
            max_output_tokens="inf",
            metadata=self._metadata,
        )

    def _usage(self) -> se.Usage:
        text_in, audio_in = self._input
        cached_text = min(self._cached, text_in)
        arguments = self.plan.arguments if isinstance(self.plan, FunctionCallPlan) else ""
        out_text = text_tokens(self._spoken or arguments)
        out_audio = -(-self._sent_bytes // (BYTES_PER_MS * 50))
        total_in, total_out = text_in + audio_in, out_text + out_audio
        return se.Usage(
            total_tokens=total_in + total_out,
            input_tokens=total_in,
            output_tokens=total_out,
            input_token_details=se.InputTokenDetails(
                text_tokens=text_in,
                audio_tokens=audio_in,
                cached_tokens=self._cached,
                cached_tokens_details=se.CachedTokensDetails(
                    text_tokens=cached_text, audio_tokens=self._cached - cached_text
                ),
            ),
            output_token_details=se.OutputTokenDetails(text_tokens=out_text, audio_tokens=out_audio),
        )

    # --- opening ------------------------------------------------------------------------------

    def start(self) -> list[se.ServerEventBase]:
        events = [
            self._event(se.ResponseCreated, response=self._response("in_progress")),
            self._event(
                se.RateLimitsUpdated,
                rate_limits=[
                    se.RateLimit(name="requests", limit=5000, remaining=4999, reset_seconds=0.012),
                    se.RateLimit(name="tokens", limit=40000, remaining=40000 - self.input_tokens, reset_seconds=0.3),
                ],
            ),
        ]
        if isinstance(self.plan, FunctionCallPlan):
            return events + self._function_call(self.plan)
        item = se.Item(
            id=self.item_id, type="message", object="realtime.item", status="in_progress",
            role="assistant", content=[],
        )  # fmt: skip
        self._add(item, turn=None)
        events.append(self._event(se.ResponseOutputItemAdded, response_id=self.response_id, output_index=0, item=item))
        if not self.out_of_band:
            events.append(self._event(se.ConversationItemAdded, item=item, previous_item_id=self._previous))
        text = self.plan.text
        if self._modality == "text":
            self._chunks = [("", 0)] * max(1, len(text.split(" ")))
        else:
            audio = speech_audio(text)
            self._chunks = [
                (base64.b64encode(audio[i : i + CHUNK_BYTES]).decode(), len(audio[i : i + CHUNK_BYTES]))
                for i in range(0, len(audio), CHUNK_BYTES)
            ]
        self._transcript_slices = split_transcript(text, len(self._chunks))
        part = (
            se.ContentPart(type="text", text="")
            if self._modality == "text"
            else se.ContentPart(type="audio", transcript="")
        )
        events.append(self._event(se.ResponseContentPartAdded, **self._ids_of_part(), part=part))
        return events

    def _add(self, item: se.Item, turn: int | None) -> None:
        self._stored = StoredItem(item=item, turn=turn)
        if not self.out_of_band:
            self._previous = self._conversation.insert(self._stored)

    def _ids_of_part(self) -> dict[str, Any]:
        return {
            "response_id": self.response_id, "item_id": self.item_id, "output_index": 0, "content_index": 0,
        }  # fmt: skip

    def _function_call(self, plan: FunctionCallPlan) -> list[se.ServerEventBase]:
        call_id = self._ids.new("call")
        ids = {"response_id": self.response_id, "item_id": self.item_id, "output_index": 0, "call_id": call_id}
        opened = se.Item(
            id=self.item_id, type="function_call", object="realtime.item", status="in_progress",
            call_id=call_id, name=plan.name, arguments="",
        )  # fmt: skip
        self._add(opened, turn=plan.turn)
        events = [
            self._event(se.ResponseOutputItemAdded, response_id=self.response_id, output_index=0, item=opened),
            self._event(se.ConversationItemAdded, item=opened, previous_item_id=self._previous),
        ]
        third = max(1, -(-len(plan.arguments) // 3))
        for start in range(0, len(plan.arguments), third):
            events.append(
                self._event(se.ResponseFunctionCallArgumentsDelta, **ids, delta=plan.arguments[start : start + third])
            )
        events.append(
            self._event(se.ResponseFunctionCallArgumentsDone, **ids, name=plan.name, arguments=plan.arguments)
        )
        done = msgspec.structs.replace(opened, status="completed", arguments=plan.arguments)
        return events + self._close_item(done, "completed", None)

    # --- streaming ----------------------------------------------------------------------------

    def step(self) -> tuple[list[se.ServerEventBase], int]:
        """The next chunk's events and the ms of audio they carry; the closing events after the
        last chunk. Call only while not ``finished``."""
        if self._next_chunk >= len(self._chunks):
            return self._finish("completed", None), 0
        index = self._next_chunk
        self._next_chunk += 1
        words = self._transcript_slices[index]
        self._spoken += words
        ids = self._ids_of_part()
        if self._modality == "text":
            return [self._event(se.ResponseOutputTextDelta, **ids, delta=words)] if words else [], 0
        chunk, size = self._chunks[index]
        self._sent_bytes += size
        assert self._stored is not None
        self._stored.audio_ms = self._sent_bytes // BYTES_PER_MS
        events = [self._event(se.ResponseOutputAudioDelta, **ids, delta=chunk)]
        if words:
            events.append(self._event(se.ResponseOutputAudioTranscriptDelta, **ids, delta=words))
        return events, size // BYTES_PER_MS

    def cancel(self, reason: str) -> list[se.ServerEventBase]:
        """End the response now: ``reason`` is ``turn_detected`` or ``client_cancelled``."""
        if self.finished:
            return []
        return self._finish("cancelled", reason)

    def _finish(self, status: str, reason: str | None) -> list[se.ServerEventBase]:
        stored = self._stored
        assert stored is not None
        if stored.item.type == "function_call":  # cancelled between its events: nothing streams
            return self._close_item(msgspec.structs.replace(stored.item, status="incomplete"), status, reason)
        ids = self._ids_of_part()
        spoken = self._spoken
        events: list[se.ServerEventBase]
        if self._modality == "text":
            part = se.ContentPart(type="text", text=spoken)
            content = se.ContentPart(type="output_text", text=spoken)
            events = [self._event(se.ResponseOutputTextDone, **ids, text=spoken)]
        else:
            part = se.ContentPart(type="audio", transcript=spoken)
            content = se.ContentPart(type="output_audio", transcript=spoken)
            events = [
                self._event(se.ResponseOutputAudioDone, **ids),
                self._event(se.ResponseOutputAudioTranscriptDone, **ids, transcript=spoken),
            ]
        events.append(self._event(se.ResponseContentPartDone, **ids, part=part))
        item_status = "completed" if status == "completed" else "incomplete"
        item = msgspec.structs.replace(stored.item, status=item_status, content=[content])
        return events + self._close_item(item, status, reason)

    def _close_item(self, item: se.Item, status: str, reason: str | None) -> list[se.ServerEventBase]:
        assert self._stored is not None
        self._stored.item = item
        self.status = status
        events = [self._event(se.ResponseOutputItemDone, response_id=self.response_id, output_index=0, item=item)]
        if not self.out_of_band:
            events.append(self._event(se.ConversationItemDone, item=item, previous_item_id=self._previous))
        events.append(self._event(se.ResponseDone, response=self._response(status, reason)))
        return events
