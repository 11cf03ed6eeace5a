"""Pressing keys on a phone line: DTMF tones as μ-law audio (pure).

Twilio Media Streams take only ``media``, ``mark`` and ``clear`` from us, so an agent navigating an
IVR must press keys *in-band*: each key is the sum of two sine waves, one from the low (row) group
and one from the high (column) group of ITU-T Q.23, played for ``tone_ms`` and followed by
``gap_ms`` of silence. ``w`` waits 500 ms (the usual dial-string pause).
"""

from __future__ import annotations

import math

from callbridge.adapters import mulaw

SAMPLE_RATE = 8000
PAUSE_MS = 500
FREQUENCIES: dict[str, tuple[int, int]] = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
AMPLITUDE = 7000
"""Per tone, of 32767: the pair peaks near -7 dBFS, loud enough for any detector, never clipped."""
SILENCE = b"\xff"


def tone(key: str, ms: int) -> bytes:
    low, high = FREQUENCIES[key]
    count = SAMPLE_RATE * ms // 1000
    step_low, step_high = 2 * math.pi * low / SAMPLE_RATE, 2 * math.pi * high / SAMPLE_RATE
    samples = [round(AMPLITUDE * (math.sin(step_low * n) + math.sin(step_high * n))) for n in range(count)]
    return mulaw.encode(samples)


def dial(keys: str, *, tone_ms: int = 100, gap_ms: int = 80) -> bytes:
    """μ-law audio pressing ``keys`` (digits, ``*``, ``#``, ``A``-``D``; ``w``: a 500 ms pause)."""
    parts: list[bytes] = []
    for key in keys:
        if key in "wW":
            parts.append(SILENCE * (SAMPLE_RATE * PAUSE_MS // 1000))
            continue
        parts.append(tone(key.upper(), tone_ms))
        parts.append(SILENCE * (SAMPLE_RATE * gap_ms // 1000))
    return b"".join(parts)
