"""Making every caller frame recognisable at the far end, and fingerprinting model audio.

The bridge's added latency is measured per frame: the caller notes when it sent frame N of call C
and the simulated model notes when the ``input_audio_buffer.append`` carrying it arrived. Silence
frames are all alike, so each frame carries its (call, frame) number in its first ``TAG_BYTES``
audio bytes. Those bytes are chosen among the quietest μ-law codes (``0x70``-``0x7F`` and
``0xF0``-``0xFF``: |sample| ≤ 120 on the 16-bit scale), so a tagged silence frame stays far below
the simulated VAD's threshold (RMS ≈ 30 against 150) and a tagged speech frame barely changes.
Each such byte carries 5 bits; 9 bytes = 12 base64 characters = 45 bits.

Downlink chunks are not tagged: the model's ``delta`` strings are matched to the caller's received
``media`` payloads by fingerprint (CRC-32 and length), in order, per call.

Everything here is pure string work on the JSON text, so tagging costs the caller a few
microseconds per frame and never re-encodes a message.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Final

TAG_BYTES: Final = 9
TAG_CHARS: Final = TAG_BYTES * 4 // 3
FRAME_BITS: Final = 30
CALL_BITS: Final = TAG_BYTES * 5 - FRAME_BITS
MAX_CALLS: Final = 1 << CALL_BITS
FRAME_BYTES: Final = 160
"""A Twilio media frame: 20 ms of 8 kHz μ-law."""

_MEDIA_PREFIX: Final = '{"event":"media"'
_PAYLOAD_KEY: Final = '"payload":"'
_DELTA_KEY: Final = '"delta":"'


def tag_bytes(call: int, frame: int) -> bytes:
    """The quiet μ-law bytes that spell (``call``, ``frame``)."""
    if not (0 <= call < MAX_CALLS and 0 <= frame < 1 << FRAME_BITS):
        raise ValueError(f"cannot tag call {call} frame {frame}")
    value = (call << FRAME_BITS) | frame
    out = bytearray()
    for i in range(TAG_BYTES):
        five = (value >> (5 * i)) & 31
        out.append((0xF0 if five < 16 else 0x70) | (five & 15))
    return bytes(out)


def read_tag(audio_b64: str) -> tuple[int, int] | None:
    """(call, frame) from the start of a base64 audio payload; None when it carries no tag."""
    try:
        raw = base64.b64decode(audio_b64[:TAG_CHARS], validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != TAG_BYTES:
        return None
    value = 0
    for i, byte in enumerate(raw):
        high = byte >> 4
        if high not in (0x7, 0xF):
            return None
        value |= ((byte & 15) | (0 if high == 0xF else 16)) << (5 * i)
    return value >> FRAME_BITS, value & ((1 << FRAME_BITS) - 1)


def read_tags(audio_b64: str, frame_bytes: int = FRAME_BYTES) -> list[tuple[int, int] | None]:
    """The tag of every ``frame_bytes`` frame in an appended payload: a bridge may coalesce
    several caller frames into one ``input_audio_buffer.append``."""
    if len(audio_b64) <= frame_bytes * 4 // 3 + 4:
        return [read_tag(audio_b64)]
    try:
        audio = base64.b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError):
        return [None]
    tags: list[tuple[int, int] | None] = []
    for start in range(0, len(audio), frame_bytes):
        piece = audio[start : start + TAG_BYTES]
        tags.append(read_tag(base64.b64encode(piece).decode()) if len(piece) == TAG_BYTES else None)
    return tags


def is_media(message: str | bytes) -> bool:
    return isinstance(message, str) and message.startswith(_MEDIA_PREFIX)


def tag_media_message(message: str, call: int, frame: int) -> str:
    """A Twilio inbound ``media`` frame (JSON text) with its payload's first bytes replaced by the tag.
    The payload must hold at least ``TAG_BYTES`` bytes (a 20 ms frame holds 160)."""
    start = message.index(_PAYLOAD_KEY) + len(_PAYLOAD_KEY)
    if message.index('"', start) - start < TAG_CHARS:
        raise ValueError("media payload too short to tag")
    tag = base64.b64encode(tag_bytes(call, frame)).decode()
    return message[:start] + tag + message[start + TAG_CHARS :]


def _string_after(text: str, key: str) -> str | None:
    start = text.find(key)
    if start < 0:
        return None
    start += len(key)
    end = text.find('"', start)
    return None if end < 0 else text[start:end]


def fingerprint(audio_b64: str) -> int:
    """CRC-32 and length of a base64 audio string, as one int."""
    return (len(audio_b64) << 32) | zlib.crc32(audio_b64.encode())


def media_fingerprint(message: str) -> int | None:
    """Fingerprint of the payload of a Twilio outbound ``media`` frame (JSON text)."""
    payload = _string_after(message, _PAYLOAD_KEY)
    return None if payload is None else fingerprint(payload)


def delta_fingerprint(raw_event: str) -> int | None:
    """Fingerprint of the ``delta`` of a ``response.output_audio.delta`` event (JSON text)."""
    delta = _string_after(raw_event, _DELTA_KEY)
    return None if delta is None else fingerprint(delta)
