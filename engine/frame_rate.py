"""How fast a caller may send audio — pure.

Twilio sends one 20 ms ``media`` frame every 20 ms (50 a second), in small bursts after network
jitter. A peer that sends far faster is not a phone call: left alone, one such stream wrote 208 MB to
the store and uploaded 115 MB to the model in 9.5 s. A token bucket lets the real pace and its bursts
through and drops the excess, which the core records (``CallerAudioDropped``) once per run of drops,
and at the call's end for a run still under way.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrameRateLimit:
    frames_per_s: float = 75.0
    """1.5 times Twilio's pace."""
    burst_frames: int = 250
    """5 s of audio may arrive at once (after a network stall)."""

    def start(self) -> FrameBucket:
        return FrameBucket(self)


class FrameBucket:
    __slots__ = ("_dropped", "_last", "_limit", "_tokens")

    def __init__(self, limit: FrameRateLimit) -> None:
        self._limit = limit
        self._tokens = float(limit.burst_frames)
        self._last: float | None = None
        self._dropped = 0

    def take(self, now: float) -> int | None:
        """A frame arrived at ``now`` (seconds). None: drop it. Otherwise keep it; the number is how
        many frames were dropped since the last kept one (to record, once)."""
        limit = self._limit
        if self._last is not None:
            self._tokens = min(float(limit.burst_frames), self._tokens + (now - self._last) * limit.frames_per_s)
        self._last = now
        if self._tokens < 1.0:
            self._dropped += 1
            return None
        self._tokens -= 1.0
        return self.take_unreported()

    def take_unreported(self) -> int:
        """The frames dropped since the last kept one, forgotten here: a run of drops that no kept frame
        followed (the call ended during it) is recorded from this."""
        dropped, self._dropped = self._dropped, 0
        return dropped
