"""Assistant audio on its way to the caller: forwarding, mark accounting and barge-in — pure.

The call core hands every audio delta, mark echo and ``speech_started`` here. Deltas become a Twilio
``media`` and a named ``mark`` (or are dropped, and recorded, when their item was interrupted), sent
in one write; the audio is recorded losslessly in chunks; echoes become ``AssistantAudioPlayed``; a
barge-in becomes ``BargeInDecided``, a Twilio ``clear`` and the ``conversation.item.truncate`` to send
the model. The arithmetic lives in ``playback.py``.
"""

from __future__ import annotations

from typing import Any

from callbridge.adapters.twilio import codec
from callbridge.engine.audio_chunks import AssistantAudioChunker
from callbridge.engine.call_outbox import Outbox
from callbridge.engine.events import AssistantAudioDiscarded, AssistantAudioPlayed, BargeInDecided, PlaybackCleared
from callbridge.engine.playback import Playback


def b64_size(text: str) -> int:
    """Bytes in a base64 string, without decoding it."""
    padding = text.endswith("=") + text.endswith("==")
    return len(text) * 3 // 4 - padding


class AssistantAudio:
    def __init__(self, call_id: str, stream_sid: str) -> None:
        self.call_id = call_id
        self.stream_sid = stream_sid
        self.playback = Playback()
        self.chunker = AssistantAudioChunker(call_id)
        self.active_items: set[str] = set()
        """Assistant message items of the response being generated (silenced on barge-in)."""

    @property
    def is_playing(self) -> bool:
        return self.playback.is_playing

    def delta(self, out: Outbox, response_id: str, item_id: str, content_index: int, audio: str) -> None:
        size = b64_size(audio)
        mark = self.playback.audio_received(response_id, item_id, size)
        if mark is None:
            out.record(
                AssistantAudioDiscarded(
                    call_id=self.call_id,
                    at=out.now,
                    response_id=response_id,
                    item_id=item_id,
                    byte_count=size,
                    reason="late delta of an interrupted item",
                )
            )
            return
        for chunk in self.chunker.add(out.now, response_id, item_id, content_index, audio):
            out.record(chunk)
        out.to_caller(codec.encode_media(self.stream_sid, audio), codec.encode_mark(self.stream_sid, mark))

    def mark_echoed(self, out: Outbox, name: str) -> None:
        played = self.playback.mark_echoed(name)
        if played is not None:
            out.record(
                AssistantAudioPlayed(
                    call_id=self.call_id,
                    at=out.now,
                    item_id=played.item_id,
                    marks=1,
                    played_bytes=played.played_bytes,
                    total_played_bytes=played.total_played_bytes,
                )
            )

    def barge_in(self, out: Outbox) -> dict[str, Any] | None:
        """The caller started speaking: clear Twilio's buffer if something is playing, record the
        decision, and return the ``conversation.item.truncate`` to send (None: nothing to cut)."""
        decision = self.playback.barge_in(frozenset(self.active_items))
        out.record(
            BargeInDecided(
                call_id=self.call_id,
                at=out.now,
                item_id=decision.item_id,
                played_ms=decision.played_ms,
                received_ms=decision.received_ms,
                audio_end_ms=decision.audio_end_ms,
                action=decision.action,
            )
        )
        if decision.clear:
            out.to_caller(codec.encode_clear(self.stream_sid))
            self.flush(out)
            out.record(
                PlaybackCleared(
                    call_id=self.call_id, at=out.now, item_id=decision.item_id, unplayed_bytes=decision.unplayed_bytes
                )
            )
        if decision.audio_end_ms is None or not decision.item_id:
            return None
        return {
            "type": "conversation.item.truncate",
            "item_id": decision.item_id,
            "content_index": 0,
            "audio_end_ms": decision.audio_end_ms,
        }

    def flush(self, out: Outbox) -> None:
        """Record the audio held in a partial chunk."""
        chunk = self.chunker.flush()
        if chunk is not None:
            out.record(chunk)
