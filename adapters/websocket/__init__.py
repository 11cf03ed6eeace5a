"""The media path's WebSocket: wsproto driven in the calling task (``connection``), with its
opening handshakes (``handshake``). Import from here."""

from callbridge.adapters.websocket.connection import (
    ABNORMAL_CLOSURE,
    DEFAULT_MAX_MESSAGE,
    MESSAGE_TOO_BIG,
    NOT_SENT,
    SENT,
    SENT_IN_PART,
    WebSocket,
    WebSocketClosed,
    WebSocketHandshakeError,
    WebSocketHandshakeTimeout,
    WebSocketRejected,
)
from callbridge.adapters.websocket.handshake import IncomingRequest, accept_request, connect

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
    "connect",
]
