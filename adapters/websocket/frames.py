"""The media path's WebSocket frames, sans-IO: whole unfragmented data frames read and written
without wsproto's per-message machinery; everything else is left to wsproto.

Both sockets of a call carry 50 small messages a second each way, and wsproto spends most of a
call's CPU on them: a generator-driven parser, an incremental UTF-8 decoder, event objects and a
masker object per frame. Here, a whole ``FIN`` text or binary frame with no reserved bits, masked
exactly as the peer's role requires (RFC 6455 §5.1-5.3) and with its length in the fewest bytes,
is cut from the buffer and unmasked with one integer XOR; text must be valid UTF-8. Any other
frame is *not ours*: a control frame (ping, pong, close) is handed to wsproto whole, so wsproto's
state stays at a frame boundary; anything else (a fragment, a reserved bit, a wrong mask, invalid
UTF-8, a frame longer than the message limit) hands the connection's remaining bytes to wsproto
for good — it answers with the same close codes as always.

Writing: a text or binary message becomes one ``FIN`` frame; a client masks it with four bytes of
``os.urandom`` (RFC 6455 §5.3: a fresh, unpredictable key per frame), taken once per batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Final

TEXT: Final = 0x1
BINARY: Final = 0x2
_FIN_TEXT: Final = 0x80 | TEXT
_FIN_BINARY: Final = 0x80 | BINARY
_CONTROL_MIN: Final = 0x8

WHOLE: Final = 0
"""A data frame read here: its message is returned."""
CONTROL: Final = 1
"""A whole control frame: hand bytes [pos, end) to wsproto."""
HAND_OVER: Final = 2
"""Not ours: hand everything from ``pos`` on to wsproto, now and later."""
INCOMPLETE: Final = 3
"""The frame at ``pos`` has not fully arrived yet."""


def _unmask(payload: bytes, mask: bytes) -> bytes:
    size = len(payload)
    key = int.from_bytes((mask * ((size >> 2) + 1))[:size], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(size, "little")


def next_frame(buffer: bytes, pos: int, *, masked: bool, max_size: int) -> tuple[int, int, str | bytes | None]:
    """What the frame starting at ``pos`` is: ``(WHOLE, end, message)``, ``(CONTROL, end, None)``,
    ``(HAND_OVER, pos, None)`` or ``(INCOMPLETE, pos, None)``. ``masked``: the peer is a client, so
    its frames must be masked."""
    available = len(buffer) - pos
    if available < 2:
        return INCOMPLETE, pos, None
    first, second = buffer[pos], buffer[pos + 1]
    if ((second & 0x80) != 0) is not masked:
        return HAND_OVER, pos, None
    size = second & 0x7F
    start = pos + 2
    if size == 126:
        if available < 4:
            return INCOMPLETE, pos, None
        size = int.from_bytes(buffer[start : start + 2], "big")
        start += 2
        if size < 126:
            return HAND_OVER, pos, None
    elif size == 127:
        if available < 10:
            return INCOMPLETE, pos, None
        size = int.from_bytes(buffer[start : start + 8], "big")
        start += 8
        if size < 0x10000:
            return HAND_OVER, pos, None
    if size > max_size:
        return HAND_OVER, pos, None
    end = start + size + (4 if masked else 0)
    if (first & 0x0F) >= _CONTROL_MIN and (first & 0x70) == 0:
        return (CONTROL, end, None) if len(buffer) >= end else (INCOMPLETE, pos, None)
    if first != _FIN_TEXT and first != _FIN_BINARY:
        return HAND_OVER, pos, None
    if len(buffer) < end:
        return INCOMPLETE, pos, None
    payload = buffer[start + 4 : end] if masked else buffer[start:end]
    if masked and size:
        payload = _unmask(payload, buffer[start : start + 4])
    if first == _FIN_BINARY:
        return WHOLE, end, bytes(payload)
    try:
        return WHOLE, end, payload.decode("utf-8")
    except UnicodeDecodeError:
        return HAND_OVER, pos, None


def _header(opcode_byte: int, size: int, mask_bit: int) -> bytes:
    if size < 126:
        return bytes((opcode_byte, mask_bit | size))
    if size < 0x10000:
        return bytes((opcode_byte, mask_bit | 126)) + size.to_bytes(2, "big")
    return bytes((opcode_byte, mask_bit | 127)) + size.to_bytes(8, "big")


def encode_messages(messages: Sequence[str | bytes], *, mask: bool) -> bytes:
    """Each message as one ``FIN`` frame (text for ``str``), joined; ``mask``: we are the client."""
    parts: list[bytes] = []
    keys = os.urandom(4 * len(messages)) if mask else b""
    for index, message in enumerate(messages):
        if isinstance(message, str):
            payload, opcode_byte = message.encode("utf-8"), _FIN_TEXT
        else:
            payload, opcode_byte = bytes(message), _FIN_BINARY
        size = len(payload)
        if mask:
            key = keys[4 * index : 4 * index + 4]
            parts.append(_header(opcode_byte, size, 0x80))
            parts.append(key)
            parts.append(_unmask(payload, key) if size else payload)
        else:
            parts.append(_header(opcode_byte, size, 0))
            parts.append(payload)
    return b"".join(parts)
