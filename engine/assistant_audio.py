"""Assistant audio on its way to the caller: forwarding, mark accounting and barge-in, recorded.

The model task hands every audio delta, mark echo and ``speech_started`` here. Deltas go to the
Twilio task with a mark each (or are dropped, and recorded, when their item was interrupted); echoes
become ``AssistantAudioPlayed``; a barge-in becomes ``BargeInDecided``, a Twilio ``clear`` and the
``conversation.item.truncate`` the model task must send. The arithmetic lives in ``playback.py``.
"""

from __future__ import annotations

from typing import Any

import trio

from callbridge.engine.context import CallContext
from callbridge.engine.events import AssistantAudioDiscarded, AssistantAudioPlayed, BargeInDecided
from callbridge.engine.messages import ClearPlayback, Message, PlayAudio
from callbridge.engine.playback import Playback


def b64_size(text: str) -> int:
    """Bytes in a base64 string, without decoding it."""
    padding = text.endswith("=") + text.endswith("==")
    return len(text) * 3 // 4 - padding


class AssistantAudio:
    def __init__(self, ctx: CallContext, to_twilio: trio.MemorySendChannel[Message]) -> None:
        self.ctx = ctx
        self.to_twilio = to_twilio
        self.playback = Playback()
        self.active_items: set[str] = set()
        """Assistant message items of the response being generated (silenced on barge-in)."""

    @property
    def is_playing(self) -> bool:
        return self.playback.is_playing

    async def delta(self, response_id: str, item_id: str, content_index: int, audio: str) -> None:
        size = b64_size(audio)
        mark = self.playback.audio_received(response_id, item_id, size)
        if mark is None:
            self.ctx.record(
                AssistantAudioDiscarded(
                    call_id=self.ctx.call_id,
                    at=self.ctx.clock.now(),
                    response_id=response_id,
                    item_id=item_id,
                    byte_count=size,
                    reason="late delta of an interrupted item",
                )
            )
            return
        await self.to_twilio.send(
            PlayAudio(response_id=response_id, item_id=item_id, content_index=content_index, payload=audio, mark=mark)
        )

    def mark_echoed(self, name: str) -> None:
        played = self.playback.mark_echoed(name)
        if played is not None:
            self.ctx.record(
                AssistantAudioPlayed(
                    call_id=self.ctx.call_id,
                    at=self.ctx.clock.now(),
                    item_id=played.item_id,
                    marks=1,
                    played_bytes=played.played_bytes,
                    total_played_bytes=played.total_played_bytes,
                )
            )

    async def barge_in(self) -> dict[str, Any] | None:
        """The caller started speaking: clear Twilio's buffer if something is playing, record the
        decision, and return the ``conversation.item.truncate`` to send (None: nothing to cut)."""
        detection = self.ctx.session_config.get("turn_detection") or {}
        if detection.get("interrupt_response") is False:
            return None
        decision = self.playback.barge_in(frozenset(self.active_items))
        self.ctx.record(
            BargeInDecided(
                call_id=self.ctx.call_id,
                at=self.ctx.clock.now(),
                item_id=decision.item_id,
                played_ms=decision.played_ms,
                received_ms=decision.received_ms,
                audio_end_ms=decision.audio_end_ms,
                action=decision.action,
            )
        )
        if decision.clear:
            await self.to_twilio.send(ClearPlayback(item_id=decision.item_id, unplayed_bytes=decision.unplayed_bytes))
        if decision.audio_end_ms is None or not decision.item_id:
            return None
        return {
            "type": "conversation.item.truncate",
            "item_id": decision.item_id,
            "content_index": 0,
            "audio_end_ms": decision.audio_end_ms,
        }
