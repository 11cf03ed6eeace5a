"""G.711 μ-law, the phone line's audio: 8 kHz, one byte per sample (pure)."""

from __future__ import annotations

from functools import cache

_SEGMENT_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)


def _encode_sample(sample: int) -> int:
    """The G.711 reference encoder (Sun's g711.c, as CPython's audioop ran it) on a 16-bit sample."""
    value = sample >> 2  # 14-bit
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + (0x84 >> 2)
    segment = next((i for i, end in enumerate(_SEGMENT_ENDS) if value <= end), 8)
    if segment >= 8:
        return 0x7F ^ mask
    return ((segment << 4) | ((value >> (segment + 1)) & 0x0F)) ^ mask


def _decode_byte(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = ((mantissa << 3) + 0x84) << exponent
    return 0x84 - magnitude if sign else magnitude - 0x84


@cache
def _encode_table() -> bytes:
    """μ-law byte for every 16-bit sample, indexed by ``sample + 32768``."""
    return bytes(_encode_sample(sample) for sample in range(-32768, 32768))


@cache
def decode_table() -> list[int]:
    """The 16-bit sample of every μ-law byte."""
    return [_decode_byte(byte) for byte in range(256)]


def encode(samples: list[int] | memoryview) -> bytes:
    """Signed 16-bit samples to μ-law bytes."""
    table = _encode_table()
    return bytes(table[sample + 32768] for sample in samples)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    return encode(memoryview(pcm).cast("h"))


def decode(data: bytes) -> list[int]:
    """μ-law bytes to signed 16-bit samples."""
    table = decode_table()
    return [table[byte] for byte in data]
