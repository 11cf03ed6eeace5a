"""G.711 μ-law helpers and a synthetic voice for the simulated peers.

Twilio and the OpenAI ``audio/pcmu`` format both carry μ-law at 8 kHz, one byte per sample, so
**1 ms = 8 bytes** and a 20 ms frame is 160 bytes. ``audioop`` is gone in Python 3.13, hence the
small tables here (G.711 as specified, byte for byte what ``audioop`` produced).

The synthetic voice exists so an energy VAD reacts to the simulated caller (and the fake model's
speech sounds like *something* in a replayed WAV): a harmonic "vowel" with a wandering pitch, a
little breath noise, and a syllable envelope (~4 syllables/s, short dips between them that never
reach silence, so a 500 ms end-of-speech timer does not fire mid-utterance). It is rendered once
(``LOOP_MS`` long) and then sliced, because 100 calls x 8000 samples/s of per-sample Python would
cost a core.

Levels, for choosing a VAD threshold over ``rms()`` of 20 ms frames: silence (``0xFF``) is 0;
speech frames average about 3000-4000 and never drop below about 300 inside an utterance.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable
from typing import Final

SAMPLE_RATE: Final = 8000
BYTES_PER_MS: Final = 8
FRAME_MS: Final = 20
FRAME_BYTES: Final = FRAME_MS * BYTES_PER_MS
SILENCE_BYTE: Final = 0xFF
LOOP_MS: Final = 4000

_BIAS: Final = 0x84
_BIAS14: Final = 0x21
_CLIP14: Final = 8159


def _decode_one(byte: int) -> int:
    u = ~byte & 0xFF
    magnitude = (((u & 0x0F) << 3) + _BIAS) << ((u >> 4) & 0x07)
    return _BIAS - magnitude if u & 0x80 else magnitude - _BIAS


_DECODE: Final[tuple[int, ...]] = tuple(_decode_one(b) for b in range(256))
_SQUARES: Final[tuple[int, ...]] = tuple(v * v for v in _DECODE)
_ZERO_BYTES: Final = bytes(b for b in range(256) if _DECODE[b] == 0)
"""The μ-law bytes that decode to 0 (0x7F and 0xFF)."""


def ulaw_encode_sample(sample: int) -> int:
    """One 16-bit linear sample as a μ-law byte (G.711 on the top 14 bits, as ``audioop`` does)."""
    pcm = sample >> 2
    mask = 0xFF
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    pcm = min(pcm, _CLIP14) + _BIAS14
    segment = max(0, pcm.bit_length() - 6)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0F)) ^ mask


def ulaw_encode(samples: Iterable[int]) -> bytes:
    """16-bit linear PCM samples as μ-law bytes."""
    return bytes(ulaw_encode_sample(int(s)) for s in samples)


def ulaw_decode(data: bytes) -> list[int]:
    """μ-law bytes as 16-bit linear samples."""
    table = _DECODE
    return [table[b] for b in data]


def silence(ms: int) -> bytes:
    """``ms`` of μ-law digital silence."""
    return bytes([SILENCE_BYTE]) * (ms * BYTES_PER_MS)


def rms(data: bytes) -> float:
    """Root mean square of μ-law audio on the linear scale (0 for silence, at most ~32000)."""
    if not data.strip(_ZERO_BYTES):  # digital silence (most of a call's frames): no sum in Python
        return 0.0
    squares = _SQUARES
    return math.sqrt(sum(squares[b] for b in data) / len(data))


@functools.cache
def _speech_loop() -> bytes:
    """``LOOP_MS`` of synthetic speech, rendered once (deterministic)."""
    rng = random.Random(20240611)
    total = LOOP_MS * BYTES_PER_MS
    envelope = [0.0] * total
    position = 0
    while position < total:
        length = rng.randint(140, 320) * BYTES_PER_MS  # one syllable
        peak = rng.uniform(0.6, 1.0)
        for i in range(min(length, total - position)):
            envelope[position + i] = max(0.08, peak * math.sin(math.pi * i / length) ** 0.7)
        position += length
        gap = min(rng.randint(20, 60) * BYTES_PER_MS, total - position)
        for i in range(gap):
            envelope[position + i] = 0.08
        position += gap
    samples = []
    phase = 0.0
    for n in range(total):
        t = n / SAMPLE_RATE
        f0 = 135.0 + 25.0 * math.sin(2 * math.pi * 0.7 * t) + 10.0 * math.sin(2 * math.pi * 3.1 * t)
        phase += 2 * math.pi * f0 / SAMPLE_RATE
        voiced = sum(math.sin(k * phase) / k for k in range(1, 7))
        value = envelope[n] * (7000.0 * voiced + rng.gauss(0.0, 600.0))
        samples.append(int(max(-32000.0, min(32000.0, value))))
    return ulaw_encode(samples)


def warm_up() -> None:
    """Render the voice now (~70 ms of CPU, once per process) rather than inside the first reply or
    utterance, where it would stall every other call this peer serves."""
    _speech_loop()


def speech(ms: int, *, offset_ms: int = 0) -> bytes:
    """``ms`` of synthetic speech starting ``offset_ms`` into the (looping) rendered voice.
    Different offsets give different-sounding utterances of the same voice."""
    loop = _speech_loop()
    start = (offset_ms * BYTES_PER_MS) % len(loop)
    size = ms * BYTES_PER_MS
    end = start + size
    if end <= len(loop):
        return loop[start:end]
    repeats = end // len(loop) + 1
    return (loop * repeats)[start : start + size]


class Voice:
    """A continuous speaker: successive ``frame()`` calls continue the same voice, so consecutive
    utterances do not all start with the same syllable."""

    def __init__(self, offset_ms: int = 0) -> None:
        self._loop = _speech_loop()
        self._position = (offset_ms * BYTES_PER_MS) % len(self._loop)

    def frame(self) -> bytes:
        """The next 20 ms (160 bytes) of speech."""
        return self.read(FRAME_MS)

    def read(self, ms: int) -> bytes:
        size = ms * BYTES_PER_MS
        loop = self._loop
        if self._position + size <= len(loop):
            chunk = loop[self._position : self._position + size]
        else:
            chunk = speech(ms, offset_ms=self._position // BYTES_PER_MS)
        self._position = (self._position + size) % len(loop)
        return chunk
