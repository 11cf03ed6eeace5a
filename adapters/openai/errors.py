"""Exceptions of the OpenAI Realtime adapter.

Each says what went wrong *and* what to do next, because they end up in call records and on the
operator's terminal. None of them ever carries the API key.
"""

from __future__ import annotations

from callbridge.adapters.websocket import WebSocketClosed


class RealtimeError(Exception):
    """Base of every error raised by ``adapters.openai``."""


class RealtimeProtocolError(RealtimeError):
    """Input that is not a realtime event at all: not JSON, not an object, or no string ``type``.

    A well-formed event of an unknown type, or a known type with a broken body, is *not* an error:
    the codec returns an ``Unknown…Event`` so the bridge can record it and carry on.
    """


class RealtimeConnectError(RealtimeError):
    """The realtime WebSocket could not be opened.

    ``status`` is the HTTP status of a rejected upgrade (None when no HTTP answer came back);
    ``retryable`` is False when trying again cannot help (a rejected key, a malformed URL).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class RealtimeConnectionClosed(RealtimeError, WebSocketClosed):
    """The realtime socket is closed: by the peer, by us, by a network drop, or because the peer
    stopped answering keepalive pings. ``code`` is the WebSocket close code (1006 for an abnormal
    closure or a dead peer); the engine reconnects and re-seeds the conversation. It is a
    ``WebSocketClosed``, the one way both of a call's sockets say their peer is gone."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        WebSocketClosed.__init__(self, code, reason)

    def __str__(self) -> str:
        return f"realtime connection closed (code {self.code}): {self.reason or 'no reason given'}"
