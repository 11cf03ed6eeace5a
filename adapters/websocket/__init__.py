"""The media path's WebSocket: wsproto driven in the calling task (``connection``), whole frames
cut by ``frames``, its opening handshakes (``handshake``) and errors (``errors``). Import from here."""

from callbridge.adapters.websocket.connection import (
    ABNORMAL_CLOSURE,
    DEFAULT_MAX_MESSAGE,
    MESSAGE_TOO_BIG,
    NOT_SENT,
    SENT,
    SENT_IN_PART,
    WebSocket,
)
from callbridge.adapters.websocket.errors import (
    WebSocketClosed,
    WebSocketHandshakeError,
    WebSocketHandshakeTimeout,
    WebSocketRejected,
)
from callbridge.adapters.websocket.handshake import IncomingRequest, accept_request, connect
from callbridge.adapters.websocket.lock import acquire_at_once

__all__ = [
    "ABNORMAL_CLOSURE",
    "DEFAULT_MAX_MESSAGE",
    "MESSAGE_TOO_BIG",
    "NOT_SENT",
    "SENT",
    "SENT_IN_PART",
    "IncomingRequest",
    "WebSocket",
    "WebSocketClosed",
    "WebSocketHandshakeError",
    "WebSocketHandshakeTimeout",
    "WebSocketRejected",
    "accept_request",
    "acquire_at_once",
    "connect",
]
