"""Synthetic call logs: the events a real call would have recorded, built on a virtual clock.

Tests and benchmarks need stores full of calls without running calls: golden logs for the
projections, a thousand calls for a rebuild benchmark, an hour-long call for replay. ``CallLog``
writes the same event types, with the same raw model events, that the engine records — caller
audio as continuous 500 ms chunks (Twilio streams silence too), assistant audio as sent chunks with
mark echoes, barge-ins with their decision, tool calls, reconnects and the end.
``tests/engine/test_synthetic_honest.py`` holds it to that: each golden scenario, run through the real
engine with the simulated peers, must record the same event types in the same order with the same
fields set (the audio streams' counts and the transcript's pieces aside).

    log = CallLog("CA1").start().caller_says("Hi").assistant_says("Hello!").end()
    log.write(store)
"""

from __future__ import annotations

from typing import Any

import msgspec

from callbridge.engine.events import (
    AgentRouted,
    AssistantAudioPlayed,
    AssistantAudioSent,
    BargeInDecided,
    CallEnded,
    CallerAudioCommitted,
    CallerAudioReceived,
    CallerSaid,
    CallerSpeechDetected,
    CallStarted,
    DtmfForwarded,
    DtmfReceived,
    ModelConnected,
    PlaybackCleared,
    TranscriptDelta,
    TwilioSocketClosed,
)
from callbridge.engine.synthetic_session import ModelSessionLog

FRAME_MS = 20
FRAME_BYTES = 160
CHUNK_FRAMES = 25
SILENCE = 0xFF
VOICE = 0x20

_encode = msgspec.json.Encoder()


class CallLog(ModelSessionLog):
    """Builds one call's events. Every method returns ``self`` so a call reads as a script."""

    def __init__(
        self,
        call_id: str = "CA00000000000000000000000000000001",
        *,
        start_at: float = 1_767_225_600.0,
        from_number: str = "+15550100001",
        to_number: str = "+15550109999",
        model: str = "sim",
        session_config: dict[str, Any] | None = None,
        engine_id: str = "engine-sim",
        agent: str = "default",
    ) -> None:
        super().__init__(call_id, start_at)
        self.from_number = from_number
        self.to_number = to_number
        self.model = model
        self.session_config = session_config or {"instructions": "You are a helpful phone assistant.", "voice": "marin"}
        self._audio_ms = 0
        self._frame_chunk = 1
        self._speaking = False
        self.engine_id = engine_id
        self.agent = agent
        self._last_answer: tuple[str, int, int] | None = None  # (item id, played ms, received ms)
        self._barged_in_by: str | None = None  # the caller's item that talked over the last answer

    # --- the clock ------------------------------------------------------------------------

    def wait(self, ms: int) -> CallLog:
        """Let ``ms`` pass; caller audio keeps streaming (silence unless the caller speaks)."""
        end = self.ms + ms
        while self._audio_ms + CHUNK_FRAMES * FRAME_MS <= end:
            at = self.start_at + self._audio_ms / 1000
            byte = VOICE if self._speaking else SILENCE
            self._add(
                CallerAudioReceived(
                    call_id=self.call_id,
                    at=at,
                    first_chunk=self._frame_chunk,
                    timestamps=[self._audio_ms + i * FRAME_MS for i in range(CHUNK_FRAMES)],
                    frame_sizes=[FRAME_BYTES] * CHUNK_FRAMES,
                    payload=bytes([byte]) * (FRAME_BYTES * CHUNK_FRAMES),
                )
            )
            self._frame_chunk += CHUNK_FRAMES
            self._audio_ms += CHUNK_FRAMES * FRAME_MS
        self.ms = end
        return self

    # --- the call's story ----------------------------------------------------------------

    def start(self) -> CallLog:
        self._add(AgentRouted(call_id=self.call_id, at=self._at(), agent=self.agent, version=1, reason="default"))
        self._add(
            CallStarted(
                call_id=self.call_id,
                at=self._at(),
                stream_sid="MZ" + self.call_id[2:],
                account_sid="AC" + "0" * 32,
                from_number=self.from_number,
                to_number=self.to_number,
                custom_parameters={"From": self.from_number, "To": self.to_number, "CallSid": self.call_id},
                model=self.model,
                session_config=self.session_config,
                engine_id=self.engine_id,
                agent_name=self.agent,
                agent_version=1,
            )
        )
        self._sent("session.update", session={"type": "realtime", **self.session_config})
        self.wait(40)
        self._add(ModelConnected(call_id=self.call_id, at=self._at(), url="ws://sim/v1/realtime", attempt=0))
        self._received("session.created", session={"id": self._id("sess"), "type": "realtime"})
        self._received("session.updated", session={"id": "sess", "type": "realtime"})
        return self

    def caller_says(self, text: str, ms: int | None = None) -> CallLog:
        duration = ms if ms is not None else max(600, 60 * len(text))
        if self._barged_in_by is not None:  # already talking since the barge-in
            item_id, self._barged_in_by = self._barged_in_by, None
        else:
            item_id = self._id("item")
            self._speech_started(item_id)
        self._speaking = True
        self.wait(duration)
        self._speaking = False
        self.wait(500)
        self._received("input_audio_buffer.speech_stopped", item_id=item_id, audio_end_ms=self.ms)
        self._add(
            CallerSpeechDetected(call_id=self.call_id, at=self._at(), item_id=item_id, started=False, audio_ms=self.ms)
        )
        previous = self._placed(item_id)
        placed = {} if previous is None else {"previous_item_id": previous}
        self._received("input_audio_buffer.committed", item_id=item_id, **placed)
        self._add(CallerAudioCommitted(call_id=self.call_id, at=self._at(), item_id=item_id))
        user_item = {"id": item_id, "type": "message", "role": "user", "status": "completed", "content": []}
        self._conversation_item("conversation.item.added", user_item, previous)
        self.wait(120)
        words = text.split(" ")
        half = max(1, len(words) // 2)
        pieces = [piece for piece in (" ".join(words[:half]), " " + " ".join(words[half:])) if piece.strip()]
        for piece in pieces:
            self._received(
                "conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0, delta=piece
            )
        if pieces:  # one writer window's words: one event (engine/transcript_words.py)
            self._add(
                TranscriptDelta(
                    call_id=self.call_id, at=self._at(), item_id=item_id, role="user", delta="".join(pieces)
                )
            )
        usage = {"type": "tokens", "input_tokens": duration // 100, "output_tokens": len(text) // 4}
        self._received(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=text,
            usage=usage,
        )
        self._add(CallerSaid(call_id=self.call_id, at=self._at(), item_id=item_id, text=text))
        self._conversation_item("conversation.item.done", user_item, previous)
        return self

    def _speech_started(self, item_id: str) -> None:
        """The model hears the caller start; the engine decides about barge-in each time (here
        nothing is playing: the last answer, if any, was heard to its end)."""
        self._received("input_audio_buffer.speech_started", item_id=item_id, audio_start_ms=self.ms)
        self._add(
            CallerSpeechDetected(call_id=self.call_id, at=self._at(), item_id=item_id, started=True, audio_ms=self.ms)
        )
        last, played, received = self._last_answer or (None, 0, 0)
        action = "skipped_nothing_playing" if last is None else "skipped_fully_played"
        self._add(
            BargeInDecided(
                call_id=self.call_id,
                at=self._at(),
                item_id=last,
                played_ms=played,
                received_ms=received,
                audio_end_ms=None,
                action=action,
            )
        )

    def assistant_says(
        self, text: str, ms: int | None = None, *, interrupted_at_ms: int | None = None, first_audio_ms: int = 350
    ) -> CallLog:
        """The model answers. With ``interrupted_at_ms`` the caller barges in after that much of the
        reply was played; the engine's decision, clear and truncate follow."""
        duration = ms if ms is not None else max(800, 65 * len(text))
        response_id, item_id = self._id("resp"), self._id("item")
        self._response_started(response_id)
        item = {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        previous = self._item_added(response_id, item)
        self._content("response.content_part.added", response_id, item_id, part={"type": "audio", "transcript": ""})
        self.wait(first_audio_ms)
        total = duration * 8
        heard_ms = duration if interrupted_at_ms is None else min(duration, interrupted_at_ms)
        generated = total if interrupted_at_ms is None else min(total, (heard_ms + 1000) * 8)
        interrupted = interrupted_at_ms is not None and heard_ms < duration
        # the model's transcript covers what it generated (received), not what the caller heard
        partial = text[: max(1, int(len(text) * min(1.0, generated / 8 / max(1, duration))))]
        offset = 0
        while offset < generated:
            size = min(4000, generated - offset)
            self._add(
                AssistantAudioSent(
                    call_id=self.call_id,
                    at=self._at(),
                    response_id=response_id,
                    item_id=item_id,
                    offset_bytes=offset,
                    payload=bytes([0x55]) * size,
                )
            )
            offset += size
        if interrupted:  # the transcript streams with the audio, before the caller hears it
            self._transcript_deltas(response_id, item_id, partial)
        played = marks = run_ms = 0
        while played < heard_ms:  # an echo per 100 ms, recorded five at a time (engine/played_marks.py)
            chunk = min(100, heard_ms - played)
            self.wait(chunk)
            played, marks, run_ms = played + chunk, marks + 1, run_ms + chunk
            if marks == 5 or played >= heard_ms:
                self._add(
                    AssistantAudioPlayed(
                        call_id=self.call_id,
                        at=self._at(),
                        item_id=item_id,
                        marks=marks,
                        played_bytes=run_ms * 8,
                        total_played_bytes=played * 8,
                    )
                )
                marks = run_ms = 0
        self._last_answer = (item_id, heard_ms, generated // 8)
        if interrupted:
            return self._barge_in(partial, response_id, item, previous, heard_ms, generated // 8)
        self._transcript_deltas(response_id, item_id, text)
        self._answer_done(response_id, item, previous, text, "completed")
        self._response_done(response_id, "completed", duration, len(text))
        return self

    def _barge_in(
        self,
        partial: str,
        response_id: str,
        item: dict[str, Any],
        previous: str | None,
        heard_ms: int,
        received_ms: int,
    ) -> CallLog:
        """The caller talks over the answer: the engine clears and truncates, the model cancels.
        The caller's speech goes on: the next ``caller_says`` is this utterance."""
        item_id = str(item["id"])
        caller_item = self._id("item")
        self._received("input_audio_buffer.speech_started", item_id=caller_item, audio_start_ms=self.ms)
        self._add(
            CallerSpeechDetected(
                call_id=self.call_id, at=self._at(), item_id=caller_item, started=True, audio_ms=self.ms
            )
        )
        self._barged_in_by = caller_item
        self._speaking = True
        self._add(
            BargeInDecided(
                call_id=self.call_id,
                at=self._at(),
                item_id=item_id,
                played_ms=heard_ms,
                received_ms=received_ms,
                audio_end_ms=min(heard_ms, received_ms),
                action="truncated",
            )
        )
        self._add(
            PlaybackCleared(
                call_id=self.call_id, at=self._at(), item_id=item_id, unplayed_bytes=(received_ms - heard_ms) * 8
            )
        )
        self._sent("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=heard_ms)
        self._answer_done(response_id, item, previous, partial, "incomplete")
        self._response_done(response_id, "cancelled", heard_ms, len(partial), reason="turn_detected")
        self.wait(20)
        self._received("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=heard_ms)
        return self

    def dtmf(self, digit: str, *, forward: bool = False) -> CallLog:
        """The caller presses a key. ``forward``: the engine tells the model, as the agent's ``dtmf``
        mode ``model`` does, and asks for a response (follow with ``assistant_says``); without it only
        the key is recorded (``engine/synthetic_call_control.py``'s ``caller_pressed`` records the
        forwarding by mode)."""
        sequence = self._frame_chunk + 1  # Twilio numbers every frame: start, the media, this one
        self._add(DtmfReceived(call_id=self.call_id, at=self._at(), digit=digit, sequence_number=sequence))
        if not forward:
            return self
        self._add(DtmfForwarded(call_id=self.call_id, at=self._at(), digits=digit, mode="model"))
        text = f"(The caller pressed {digit} on the keypad.)"
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        self._sent("conversation.item.create", item=item)
        self._sent("response.create")
        self._created(item)
        return self

    def end(self, reason: str = "caller_hangup") -> CallLog:
        self.wait(200)
        if reason == "caller_hangup":  # Twilio's ``stop``, then its socket closes
            self._add(TwilioSocketClosed(call_id=self.call_id, at=self._at(), reason="stop"))
        self._add(CallEnded(call_id=self.call_id, at=self._at(), reason=reason))
        return self

    def write(self, store: Any) -> int:
        """Append this call's events to an ``EventStore``; returns the last position."""
        position: int = store.append(self.events)
        return position
