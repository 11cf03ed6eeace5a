"""Whether wsproto holds part of a frame: the one place that reads wsproto's internals.

After the opening handshake ``connection.WebSocket`` cuts whole data frames itself (``frames``),
which is only right when wsproto holds no partial frame or message. wsproto has no public way to
say so, so this reads its decoder's state; wsproto is pinned below 2 and
``tests/adapters/websocket/test_websocket.py`` fails if the attributes stop being found (then wsproto
simply reads every frame, as it always could)."""

from __future__ import annotations

from typing import Any

from wsproto import WSConnection


def wsproto_at_frame_boundary(connection: WSConnection) -> bool:
    """Whether wsproto holds no part of a frame (what arrived with the handshake was whole frames,
    already events), so ``frames`` may read from here on; False when its internals cannot be read."""
    proto: Any = getattr(getattr(connection, "connection", None), "_proto", None)
    decoder = getattr(proto, "_frame_decoder", None)
    message = getattr(proto, "_message_decoder", None)
    buffer = getattr(decoder, "buffer", None)
    if buffer is None or message is None:
        return False
    return len(buffer) == 0 and getattr(decoder, "header", True) is None and getattr(message, "opcode", True) is None
