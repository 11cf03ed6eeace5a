"""Energy-based voice activity detection for the simulated realtime model (sans-IO).

The real server's VAD is a model; ours is the simplest thing that behaves the same way at the
protocol level: μ-law decoded to linear, RMS per 20 ms frame, speech after ``min_speech_ms`` of
frames at or above the threshold, end of speech after ``silence_duration_ms`` below it. Times are
positions in *all audio appended this session* (8 bytes per ms), not wall-clock time, exactly like
the real ``audio_start_ms``/``audio_end_ms``: ``audio_start_ms`` includes the prefix padding and
``audio_end_ms`` includes the trailing silence.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from callbridge.adapters.sim.voice import BYTES_PER_MS, FRAME_BYTES, FRAME_MS, rms

RMS_AT_THRESHOLD_HALF: Final = 150.0
"""RMS (linear scale) treated as speech at the session's default ``threshold`` 0.5. The simulated
caller's speech stays above ~300 inside an utterance; digital silence is 0."""


class VadSettings(msgspec.Struct, frozen=True, kw_only=True):
    rms_threshold: float = RMS_AT_THRESHOLD_HALF
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_ms: int = 40


class SpeechStarted(msgspec.Struct, frozen=True, kw_only=True):
    audio_start_ms: int


class SpeechStopped(msgspec.Struct, frozen=True, kw_only=True):
    audio_end_ms: int


VadSignal = SpeechStarted | SpeechStopped


def settings_from_turn_detection(turn_detection: dict[str, Any], rms_scale: float) -> VadSettings:
    """VAD settings for a GA ``turn_detection`` object. ``threshold`` (0-1) scales the RMS level
    (0.5 → ``rms_scale``); ``semantic_vad`` waits longer the lower its ``eagerness``."""
    if turn_detection.get("type") == "semantic_vad":
        eagerness = turn_detection.get("eagerness", "auto")
        silence = {"low": 1000, "medium": 600, "high": 300}.get(str(eagerness), 600)
        return VadSettings(rms_threshold=rms_scale, prefix_padding_ms=300, silence_duration_ms=silence)
    return VadSettings(
        rms_threshold=rms_scale * 2 * float(turn_detection.get("threshold", 0.5)),
        prefix_padding_ms=int(turn_detection.get("prefix_padding_ms", 300)),
        silence_duration_ms=int(turn_detection.get("silence_duration_ms", 500)),
    )


class EnergyVad:
    """Feed appended audio, get speech start/stop signals. Partial frames wait for the next feed."""

    def __init__(self, settings: VadSettings) -> None:
        self.settings = settings
        self._pending = b""
        self._position_ms = 0
        self._floor_ms = 0
        self.speaking = False
        self._voiced_frames = 0
        self._first_voiced_ms = 0
        self._quiet_ms = 0

    @property
    def position_ms(self) -> int:
        """Milliseconds of audio analysed so far (whole frames)."""
        return self._position_ms

    def reset(self) -> None:
        """Forget the current utterance (``input_audio_buffer.clear``); positions keep counting."""
        self._position_ms += len(self._pending) // BYTES_PER_MS
        self._pending = b""
        self._floor_ms = self._position_ms
        self.speaking = False
        self._voiced_frames = 0
        self._quiet_ms = 0

    def feed(self, audio: bytes) -> list[VadSignal]:
        data = self._pending + audio if self._pending else audio
        usable = len(data) - len(data) % FRAME_BYTES
        self._pending = data[usable:]
        signals: list[VadSignal] = []
        settings = self.settings
        for offset in range(0, usable, FRAME_BYTES):
            start_ms = self._position_ms
            self._position_ms += FRAME_MS
            loud = rms(data[offset : offset + FRAME_BYTES]) >= settings.rms_threshold
            if not self.speaking:
                if not loud:
                    self._voiced_frames = 0
                    continue
                if self._voiced_frames == 0:
                    self._first_voiced_ms = start_ms
                self._voiced_frames += 1
                if self._voiced_frames * FRAME_MS >= settings.min_speech_ms:
                    self.speaking = True
                    self._quiet_ms = 0
                    begin = max(self._floor_ms, self._first_voiced_ms - settings.prefix_padding_ms)
                    signals.append(SpeechStarted(audio_start_ms=begin))
                continue
            self._quiet_ms = 0 if loud else self._quiet_ms + FRAME_MS
            if self._quiet_ms >= settings.silence_duration_ms:
                self.speaking = False
                self._voiced_frames = 0
                self._floor_ms = self._position_ms
                signals.append(SpeechStopped(audio_end_ms=self._position_ms))
        return signals
