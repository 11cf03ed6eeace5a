"""The phone keypad in the call core, both ways — pure.

**In**: what the caller presses reaches the model as the agent's ``dtmf`` mode says — ``model``: each
key as a line of conversation; ``collect``: the whole entry, once, when ``#`` is pressed or the
caller pauses ``dtmf_collect_timeout_s``; ``ignore``: only recorded (``DtmfReceived`` always is).
**Out**: ``send_dtmf(digits)`` plays in-band tones (``engine/dtmf.py``) to the caller's line, after
whatever the agent is saying, followed by a mark, so an IVR on the other end hears real keys; the
tones are recorded as assistant audio (``AssistantAudioSent``), so the recording has them too.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING

from callbridge.adapters.twilio import codec
from callbridge.engine import dtmf
from callbridge.engine.agent import DTMF_KEYS
from callbridge.engine.call_io import CancelTimer, LogLine, StartTimer, Timer
from callbridge.engine.events import AssistantAudioPlayed, AssistantAudioSent, DtmfForwarded, DtmfSent

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

CHUNK_BYTES = 1600


class Keypad:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.agent = core.config.agent
        self.entry = ""
        self.sent = 0
        self._pending: dict[str, tuple[str, int]] = {}
        """mark name -> (item id, bytes) of tones not yet played."""

    @property
    def playing(self) -> bool:
        return bool(self._pending)

    # --- in ------------------------------------------------------------------------------------

    def pressed(self, digit: str) -> None:
        mode = self.agent.dtmf
        if mode == "model":
            self._forward(digit, "model", f"(The caller pressed {digit} on the keypad.)")
        elif mode == "collect":
            if digit == "#":
                self._end_entry()
                return
            self.entry += digit
            self.out.emit(StartTimer(timer=Timer.DTMF_COLLECT, delay_s=self.agent.dtmf_collect_timeout_s))

    def _end_entry(self) -> None:
        self.out.emit(CancelTimer(timer=Timer.DTMF_COLLECT))
        entry, self.entry = self.entry, ""
        if entry:
            self._forward(entry, "collect", f"(The caller entered {entry} on the keypad.)")

    def _forward(self, digits: str, mode: str, text: str) -> None:
        model = self.core.model
        if not model.connected:
            self.out.emit(LogLine(level=logging.WARNING, message=f"keys {digits!r} not forwarded: no model session"))
            return
        self.out.record(DtmfForwarded(call_id=self.core.config.call_id, at=self.out.now, digits=digits, mode=mode))
        item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        model.send({"type": "conversation.item.create", "item": item})
        model.request_response(None)

    def timer_fired(self, timer: Timer) -> bool:
        if timer is not Timer.DTMF_COLLECT:
            return False
        self._end_entry()
        return True

    # --- out -----------------------------------------------------------------------------------

    def send(self, tool_call_id: str, digits: str) -> None:
        """``send_dtmf``: play the tones and answer the model."""
        model = self.core.model
        if not DTMF_KEYS.match(digits):
            model.tools.settle_builtin(
                tool_call_id,
                "send_dtmf",
                {"error": "digits: use 0-9, * and # (w waits half a second), 1-64 keys"},
                ok=False,
            )
            return
        tone_ms, gap_ms = self.agent.dtmf_tone_ms, self.agent.dtmf_gap_ms
        audio = dtmf.dial(digits, tone_ms=tone_ms, gap_ms=gap_ms)
        self.sent += 1
        item_id = f"dtmf_{self.sent}"
        call_id, stream_sid, now = self.core.config.call_id, self.core.config.stream_sid, self.out.now
        frames = [
            codec.encode_media(stream_sid, base64.b64encode(audio[offset : offset + CHUNK_BYTES]).decode())
            for offset in range(0, len(audio), CHUNK_BYTES)
        ]
        mark = f"dtmf-{self.sent}"
        self._pending[mark] = (item_id, len(audio))
        self.out.to_caller(*frames, codec.encode_mark(stream_sid, mark))
        audio_ms = len(audio) // 8
        self.out.record(
            AssistantAudioSent(
                call_id=call_id, at=now, response_id="dtmf", item_id=item_id, offset_bytes=0, payload=audio
            )
        )
        self.out.record(
            DtmfSent(call_id=call_id, at=now, digits=digits, tone_ms=tone_ms, gap_ms=gap_ms, audio_ms=audio_ms)
        )
        model.tools.settle_builtin(tool_call_id, "send_dtmf", {"ok": True, "sent": digits, "audio_ms": audio_ms})

    def mark_echoed(self, name: str) -> bool:
        """True when ``name`` was one of ours (the tones were played)."""
        entry = self._pending.pop(name, None)
        if entry is None:
            return False
        item_id, size = entry
        self.out.record(
            AssistantAudioPlayed(
                call_id=self.core.config.call_id,
                at=self.out.now,
                item_id=item_id,
                marks=1,
                played_bytes=size,
                total_played_bytes=size,
            )
        )
        return True
