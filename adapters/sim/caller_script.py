"""What the simulated caller does on the line: a script of steps, run in order.

Between and during steps the caller's microphone keeps sending 20 ms frames, as Twilio does:
speech while a ``Speak`` (or the speaking part of a ``BargeIn``) runs, μ-law silence otherwise.
Durations are counted in frames actually sent, so a ``Speak(1000)`` is exactly 50 speech frames.
"""

from __future__ import annotations

import base64
import math
import random

import msgspec
import trio

from callbridge.adapters import mulaw
from callbridge.adapters.sim.voice import FRAME_MS, Voice, silence


class Speak(msgspec.Struct, frozen=True, tag=True):
    """Talk for ``ms`` (synthetic voice, loud enough for an energy VAD)."""

    ms: int


class Silence(msgspec.Struct, frozen=True, tag=True):
    """Say nothing for ``ms`` (silence frames keep flowing)."""

    ms: int


class WaitForAssistant(msgspec.Struct, frozen=True, tag=True):
    """Wait until the assistant's reply has arrived and finished playing: audio started after the
    caller last spoke or pressed a key (or is playing now), then the playback buffer stayed empty for
    ``settle_ms`` (a reply may arrive in bursts). Gives up after ``timeout_s`` (an error)."""

    timeout_s: float = 15.0
    settle_ms: int = 400


class BargeIn(msgspec.Struct, frozen=True, tag=True):
    """Wait for assistant audio to start playing, then start talking ``after_ms`` later, over it,
    for ``speak_ms``. Gives up after ``timeout_s`` without assistant audio (an error)."""

    after_ms: int = 500
    speak_ms: int = 800
    timeout_s: float = 15.0


class Dtmf(msgspec.Struct, frozen=True, tag=True):
    """Press a key (``0-9``, ``*``, ``#``): Twilio sends a ``dtmf`` frame."""

    digit: str


class Beep(msgspec.Struct, frozen=True, tag=True):
    """Play a pure tone for ``ms`` (an answering machine's beep: 1 kHz). The caller notes when it
    ended (``CallReport.beep_end_s``) and how much assistant audio it had heard by then."""

    ms: int = 500
    hz: int = 1000


class Murmur(msgspec.Struct, frozen=True, tag=True):
    """Background noise for ``ms`` at ``level`` (peak, of 32767): a real line is never digitally
    silent. Far below a VAD's speech threshold, and no two frames alike (so a test can follow each
    frame to the model)."""

    ms: int
    level: int = 40
    seed: int = 1


class Play(msgspec.Struct, frozen=True, tag=True):
    """Send these 20 ms frames (base64 μ-law), in order: recorded audio replayed
    (``recorded_caller.py``). ``speech``: the caller is talking in them (reply latency is measured
    from the last frame, as after a ``Speak``)."""

    frames: list[str]
    speech: bool = True


class HangUp(msgspec.Struct, frozen=True, tag=True):
    """End the call now (Twilio sends ``stop`` and closes). A script that runs out hangs up too."""


class WaitForHangUp(msgspec.Struct, frozen=True, tag=True):
    """Stay on the line, silent, until the other side ends the call (or ``timeout_s``: an error)."""

    timeout_s: float = 30.0


Step = Speak | Silence | WaitForAssistant | BargeIn | Dtmf | Beep | Murmur | Play | WaitForHangUp | HangUp


def voicemail_script(*, greeting_ms: int = 1500, beep_ms: int = 500, listen_s: float = 30.0) -> list[Step]:
    """An answering machine: its greeting, a 1 kHz beep, then it records (stays silent) until the
    caller hangs up. Run with ``keep_audio=True``: ``CallReport.heard_after_beep`` is the message."""
    return [Speak(greeting_ms), Beep(beep_ms), WaitForHangUp(timeout_s=listen_s)]


def frames_for(ms: int) -> int:
    """Number of 20 ms frames covering ``ms`` (at least one)."""
    return max(1, math.ceil(ms / FRAME_MS))


def default_script(seconds: float, *, speak_ms: int = 1000, pause_ms: int = 400, barge_in: bool = False) -> list[Step]:
    """``callbridge simulate``'s caller: speak about a second, wait for the reply, pause, and again.
    The script is long enough to fill ``seconds`` even if replies were instant; run it with
    ``max_duration_s=seconds`` to hang up on time. ``barge_in``: the second question's reply is
    interrupted (see :func:`barge_in_turn`)."""
    turns = max(1, math.ceil(seconds * 1000 / (speak_ms + pause_ms)))
    wait = WaitForAssistant(timeout_s=max(1.0, seconds))
    steps: list[Step] = []
    for turn in range(turns):
        steps += [Speak(speak_ms), wait, Silence(pause_ms)]
        if barge_in and turn == 1:
            steps[-2:-1] = barge_in_turn(seconds)
    steps.append(HangUp())
    return steps


BARGE_IN_AFTER_MS = 1500
"""How much of a reply the caller lets play before talking over it."""


def barge_in_turn(seconds: float) -> list[Step]:
    """After asking: talk over the reply once ``BARGE_IN_AFTER_MS`` of it has played (a real
    interruption when the reply is longer, like the simulated model's story), then wait for the
    answer to the interruption."""
    timeout = max(1.0, seconds)
    return [BargeIn(after_ms=BARGE_IN_AFTER_MS, speak_ms=1200, timeout_s=timeout), WaitForAssistant(timeout_s=timeout)]


_SILENCE_B64 = base64.b64encode(silence(FRAME_MS)).decode()
TONE_AMPLITUDE = 8000


def noise_frames(ms: int, level: int, seed: int) -> list[str]:
    """Low-level pseudo-random noise as base64 μ-law 20 ms frames."""
    rng = random.Random(seed)
    audio = mulaw.encode([rng.randint(-level, level) for _ in range(frames_for(ms) * FRAME_MS * 8)])
    return [base64.b64encode(audio[i : i + FRAME_MS * 8]).decode() for i in range(0, len(audio), FRAME_MS * 8)]


def tone_frames(ms: int, hz: int) -> list[str]:
    """A pure tone as base64 μ-law 20 ms frames (phase carried across frames)."""
    count = frames_for(ms) * FRAME_MS * 8
    step = 2 * math.pi * hz / 8000
    audio = mulaw.encode([round(TONE_AMPLITUDE * math.sin(step * n)) for n in range(count)])
    return [base64.b64encode(audio[i : i + FRAME_MS * 8]).decode() for i in range(0, len(audio), FRAME_MS * 8)]


class Mouth:
    """The caller's microphone: what the next 20 ms frame carries. ``Speak`` and ``Silence`` start
    an utterance of N frames; the event returned is set once its last frame has been sent."""

    def __init__(self, voice: Voice) -> None:
        self._voice = voice
        self._remaining = 0
        self._speech = False
        self._done: trio.Event | None = None
        self._tone: list[str] | None = None

    def start(self, frames: int, *, speech: bool, tone: list[str] | None = None) -> trio.Event:
        """Say ``frames`` frames of speech (or silence); ``tone`` gives the frames' audio instead."""
        if self._done is not None:
            self._done.set()  # a new utterance replaces an unfinished one
        self._remaining, self._speech, self._done = frames, speech, trio.Event()
        self._tone = list(tone) if tone is not None else None
        return self._done

    def next_frame(self) -> tuple[str, bool, trio.Event | None]:
        """(base64 payload, is speech, event to set once this last frame has been sent)."""
        if self._remaining <= 0:
            return _SILENCE_B64, False, None
        self._remaining -= 1
        if self._tone:
            payload = self._tone.pop(0)
        else:
            payload = base64.b64encode(self._voice.frame()).decode() if self._speech else _SILENCE_B64
        finished = None
        if self._remaining == 0:
            finished, self._done = self._done, None
        return payload, self._speech, finished
