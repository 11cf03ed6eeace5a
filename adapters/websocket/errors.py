"""What the media path's WebSocket raises: the socket closed (with its code), or the opening
handshake failed. Kept apart from ``connection`` so the handshake and the engine name them without
the socket's machinery; import them from ``callbridge.adapters.websocket``."""

from __future__ import annotations


class WebSocketClosed(Exception):
    """The socket is closed: by the peer (its code and reason), by us, or lost (1006)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"WebSocket closed ({self.code}{': ' + self.reason if self.reason else ''})"


class WebSocketHandshakeError(Exception):
    """The opening handshake failed (timeout, a connection that ended, not a WebSocket peer)."""


class WebSocketHandshakeTimeout(WebSocketHandshakeError):
    """The opening handshake did not finish within its time limit."""


class WebSocketRejected(WebSocketHandshakeError):
    """The server answered the upgrade with an HTTP status instead of 101."""

    def __init__(self, status_code: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status_code}")
        self.status_code = status_code
        self.body = body
