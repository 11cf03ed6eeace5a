"""What Twilio does with the audio we send it: a playback buffer drained in real time.

Twilio queues outbound ``media`` and plays it at 8 bytes/ms (μ-law, 8 kHz); a ``mark`` is echoed
when everything queued before it has played, or at once if nothing is buffered; ``clear`` drops
the queued audio and echoes every pending mark at once, in order (docs/protocols.md A4). The bridge's
barge-in arithmetic (how much the caller actually heard) depends on exactly these rules, so the
simulated caller models them faithfully.

The model is pure: every method takes ``now`` (seconds on any monotonic clock; the caller uses
trio's) and returns the names of marks to echo at that moment, in order. ``next_deadline()`` tells
the driver when to call ``advance`` next, so marks go back exactly when their audio has played.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Final

import msgspec

BYTES_PER_SECOND: Final = 8000
_EPSILON_BYTES: Final = 1e-6  # float slack when ``now`` is exactly a computed deadline


class HeardSpan(msgspec.Struct, frozen=True):
    """One continuous stretch of assistant audio that the caller heard."""

    start: float
    end: float
    byte_count: int


class MarkEcho(msgspec.Struct, frozen=True):
    """A mark echoed back. ``at`` is when playback reached it (or the clear happened);
    ``played`` is False for marks echoed because of a ``clear``."""

    name: str
    at: float
    played: bool


class ClearRecord(msgspec.Struct, frozen=True):
    at: float
    dropped_bytes: int
    marks_echoed: int


class _Audio:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.offset


class PlaybackModel:
    """A FIFO of audio chunks and marks, drained at ``bytes_per_second`` from when audio arrives.

    Records what was heard (``heard`` spans, ``played_bytes``, and the bytes themselves when
    ``keep_audio``), every mark echo and every clear.
    """

    def __init__(self, *, bytes_per_second: int = BYTES_PER_SECOND, keep_audio: bool = False) -> None:
        self._rate = bytes_per_second
        self._queue: deque[_Audio | str] = deque()
        self._cursor = 0.0  # playback position in time; only meaningful while audio is queued
        self._buffered = 0
        self._run_start: float | None = None
        self._run_bytes = 0
        self.received_bytes = 0
        self.played_bytes = 0
        self.dropped_bytes = 0
        self.runs_started = 0
        self.last_drained_at: float | None = None
        self.heard: list[HeardSpan] = []
        self.marks: list[MarkEcho] = []
        self.clears: list[ClearRecord] = []
        self.played_audio: bytearray | None = bytearray() if keep_audio else None

    # --- inputs (each returns the marks to echo now, in order) ---------------------------------

    def push_audio(self, now: float, data: bytes) -> list[str]:
        """Queue a ``media`` payload (raw μ-law bytes)."""
        echoes = self.advance(now)
        if not data:
            return echoes
        if self._buffered == 0:
            self._cursor = now  # the line was quiet: playback starts now
            self._run_start = now
            self._run_bytes = 0
            self.runs_started += 1
        self._queue.append(_Audio(bytes(data)))
        self._buffered += len(data)
        self.received_bytes += len(data)
        return echoes

    def push_mark(self, now: float, name: str) -> list[str]:
        """Queue a ``mark``; it is echoed at once when no audio is buffered."""
        echoes = self.advance(now)
        if self._buffered == 0:
            self.marks.append(MarkEcho(name=name, at=now, played=True))
            echoes.append(name)
        else:
            self._queue.append(name)
        return echoes

    def clear(self, now: float) -> list[str]:
        """Twilio ``clear``: drop the queued audio; echo every pending mark (not played)."""
        echoes = self.advance(now)
        dropped = self._buffered
        cleared_marks = [entry for entry in self._queue if isinstance(entry, str)]
        self._queue.clear()
        self._buffered = 0
        self.dropped_bytes += dropped
        for name in cleared_marks:
            self.marks.append(MarkEcho(name=name, at=now, played=False))
        self.clears.append(ClearRecord(at=now, dropped_bytes=dropped, marks_echoed=len(cleared_marks)))
        self._end_run(now)
        return echoes + cleared_marks

    def advance(self, now: float) -> list[str]:
        """Play everything due by ``now``; return the marks reached, in order."""
        echoes: list[str] = []
        queue = self._queue
        while queue:
            head = queue[0]
            if isinstance(head, str):
                queue.popleft()
                self.marks.append(MarkEcho(name=head, at=self._cursor, played=True))
                echoes.append(head)
                continue
            playable = math.floor((now - self._cursor) * self._rate + _EPSILON_BYTES)
            if playable <= 0:
                break
            count = min(head.remaining, playable)
            self._play(head, count)
            if head.remaining:
                break
            queue.popleft()
        if self._buffered == 0 and self._run_start is not None:
            self._end_run(self._cursor)
        return echoes

    # --- what the driver and the script look at -------------------------------------------------

    def next_deadline(self) -> float | None:
        """When ``advance`` next has something to do: the next mark is reached or the audio runs
        out. None when nothing is queued."""
        pending = 0
        for entry in self._queue:
            if isinstance(entry, str):
                return self._cursor + pending / self._rate
            pending += entry.remaining
        return self._cursor + pending / self._rate if self._queue else None

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    @property
    def is_playing(self) -> bool:
        return self._buffered > 0

    @property
    def playing_since(self) -> float | None:
        """Start of the current continuous playback, None when the line is quiet."""
        return self._run_start

    def heard_spans(self) -> list[HeardSpan]:
        """``heard`` plus the stretch still playing, up to the last ``advance``."""
        if self._run_start is None:
            return list(self.heard)
        return [*self.heard, HeardSpan(start=self._run_start, end=self._cursor, byte_count=self._run_bytes)]

    # --- internals --------------------------------------------------------------------------------

    def _play(self, audio: _Audio, count: int) -> None:
        if self.played_audio is not None:
            self.played_audio += audio.data[audio.offset : audio.offset + count]
        audio.offset += count
        self._cursor += count / self._rate
        self._buffered -= count
        self.played_bytes += count
        self._run_bytes += count

    def _end_run(self, at: float) -> None:
        if self._run_start is None:
            return
        self.heard.append(HeardSpan(start=self._run_start, end=at, byte_count=self._run_bytes))
        self.last_drained_at = at
        self._run_start = None
        self._run_bytes = 0
