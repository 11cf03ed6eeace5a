"""Batching audio frames into chunk events, losslessly.

Storing one event per 20 ms frame would mean 100 events a second per call; instead consecutive
frames are gathered into one event per ``max_ms`` of audio (and on every boundary that matters:
another item, a clear, the end of the call). Pure: the caller passes the current time and records
whatever event comes back.
"""

from __future__ import annotations

import binascii

from callbridge.engine.events import AssistantAudioSent, CallerAudioReceived

CALLER_CHUNK_FRAMES = 25
"""Caller audio chunk: 25 frames = 500 ms."""

ASSISTANT_CHUNK_BYTES = 4000
"""Assistant audio chunk: 4000 bytes = 500 ms."""

CALLER_HAND_OVER_S = 0.5
"""Before each writer batch a partial caller chunk is handed over once its first frame is this old
(``CallerAudioChunker.flush_older``). Handing it over at every batch (ten times a second) made the
caller's audio two thirds of all the events a call writes, one per 100 ms; now a steady call writes
one per 500 ms of audio, and a crash still loses at most about half a second of it (plus one batch).
Measured at 100 calls: 35 % fewer events, 5-8 % less of the server's CPU."""


class CallerAudioChunker:
    """Gathers caller ``media`` frames into ``CallerAudioReceived`` events."""

    def __init__(self, call_id: str, max_frames: int = CALLER_CHUNK_FRAMES) -> None:
        self.call_id = call_id
        self.max_frames = max_frames
        self._parts: list[bytes] = []
        self._timestamps: list[int] = []
        self._sizes: list[int] = []
        self._first_chunk = 0
        self._at = 0.0

    def add(self, at: float, chunk: int, timestamp: int, payload_b64: str) -> CallerAudioReceived | None:
        data = binascii.a2b_base64(payload_b64)  # base64.b64decode's work, without its wrapper (50 a second)
        if not self._parts:
            self._first_chunk = chunk
            self._at = at
        self._parts.append(data)
        self._timestamps.append(timestamp)
        self._sizes.append(len(data))
        if len(self._parts) >= self.max_frames:
            return self.flush()
        return None

    def flush_older(self, now: float, age_s: float = CALLER_HAND_OVER_S) -> CallerAudioReceived | None:
        """The partial chunk, if its first frame arrived ``age_s`` or more before ``now``."""
        if self._parts and now - self._at >= age_s:
            return self.flush()
        return None

    def flush(self) -> CallerAudioReceived | None:
        if not self._parts:
            return None
        event = CallerAudioReceived(
            call_id=self.call_id,
            at=self._at,
            first_chunk=self._first_chunk,
            timestamps=self._timestamps,
            frame_sizes=self._sizes,
            payload=b"".join(self._parts),
        )
        self._parts, self._timestamps, self._sizes = [], [], []
        return event


class AssistantAudioChunker:
    """Gathers assistant audio sent to Twilio into ``AssistantAudioSent`` events, one item at a time."""

    def __init__(self, call_id: str, max_bytes: int = ASSISTANT_CHUNK_BYTES) -> None:
        self.call_id = call_id
        self.max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._key: tuple[str, str, int] | None = None
        self._at = 0.0
        self._offsets: dict[str, int] = {}

    def add(
        self, at: float, response_id: str, item_id: str, content_index: int, payload_b64: str
    ) -> list[AssistantAudioSent]:
        """Add one delta; returns the events completed by it (zero, one or two)."""
        done: list[AssistantAudioSent] = []
        key = (response_id, item_id, content_index)
        if self._key is not None and key != self._key:
            flushed = self.flush()
            if flushed is not None:
                done.append(flushed)
        data = binascii.a2b_base64(payload_b64)  # base64.b64decode's work, without its wrapper (50 a second)
        if not self._parts:
            self._key = key
            self._at = at
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self.max_bytes:
            flushed = self.flush()
            if flushed is not None:
                done.append(flushed)
        return done

    def flush(self) -> AssistantAudioSent | None:
        if not self._parts or self._key is None:
            return None
        response_id, item_id, content_index = self._key
        offset = self._offsets.get(item_id, 0)
        payload = b"".join(self._parts)
        self._offsets[item_id] = offset + len(payload)
        event = AssistantAudioSent(
            call_id=self.call_id,
            at=self._at,
            response_id=response_id,
            item_id=item_id,
            content_index=content_index,
            offset_bytes=offset,
            payload=payload,
        )
        self._parts, self._size, self._key = [], 0, None
        return event
