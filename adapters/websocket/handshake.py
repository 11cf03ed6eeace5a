"""WebSocket opening handshakes: ``accept_request`` on the server side (after the listener peeked
at the request head), ``connect`` on the client side (``ws://`` and ``wss://``).

Frames that arrive in the same read as the handshake are handed to the ``WebSocket``, not lost.
"""

from __future__ import annotations

import ssl
import urllib.parse
from collections.abc import Sequence
from typing import Final

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Event, RejectConnection, RejectData, Request
from wsproto.utilities import RemoteProtocolError

from callbridge.adapters.tls import websocket_tls_context
from callbridge.adapters.websocket.connection import DEFAULT_MAX_MESSAGE, RECEIVE_BYTES, WebSocket
from callbridge.adapters.websocket.errors import WebSocketHandshakeError, WebSocketHandshakeTimeout, WebSocketRejected

MAX_HANDSHAKE_BYTES: Final = 64 * 1024
MAX_REJECT_BODY: Final = 64 * 1024


async def _handshake_events(stream: trio.abc.Stream, connection: WSConnection, received: list[int]) -> list[Event]:
    """Events from the next bytes of a handshake; raises when the stream ended or ran too long."""
    try:
        data = await stream.receive_some(RECEIVE_BYTES)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
        raise WebSocketHandshakeError(f"the connection failed during the handshake: {error}") from None
    received[0] += len(data)
    if received[0] > MAX_HANDSHAKE_BYTES:
        raise WebSocketHandshakeError("handshake larger than 64 KiB")
    try:
        connection.receive_data(bytes(data) if data else None)  # None: the end, which may end a body
        events = list(connection.events())
    except RemoteProtocolError as error:
        raise WebSocketHandshakeError(f"not a WebSocket handshake: {error}") from None
    if not data and not any(isinstance(event, (RejectData, AcceptConnection, Request)) for event in events):
        raise WebSocketHandshakeError("the connection ended during the handshake")
    return events


# --- server side ----------------------------------------------------------------------------


class IncomingRequest:
    """An upgrade request read off a stream: accept it or reject it with an HTTP status."""

    def __init__(self, stream: trio.abc.Stream, connection: WSConnection, request: Request, pending: list[Event]):
        self._stream = stream
        self._ws = connection
        self._pending = pending
        self.path = request.target
        self.headers: list[tuple[bytes, bytes]] = [(bytes(n), bytes(v)) for n, v in request.extra_headers]

    async def accept(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE) -> WebSocket:
        await self._stream.send_all(self._ws.send(AcceptConnection()))
        return WebSocket(self._stream, self._ws, max_message_size=max_message_size, pending=self._pending)

    async def reject(self, status_code: int, body: bytes = b"") -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
        data = self._ws.send(RejectConnection(status_code=status_code, headers=headers, has_body=bool(body)))
        if body:
            data += self._ws.send(RejectData(data=body, body_finished=True))
        try:
            await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        await self._stream.aclose()


async def accept_request(stream: trio.abc.Stream, *, timeout_s: float = 10.0) -> IncomingRequest:
    """Read a WebSocket upgrade request from ``stream`` (the head may come from a peek)."""
    connection = WSConnection(ConnectionType.SERVER)
    received = [0]
    with trio.move_on_after(timeout_s):
        while True:
            events = await _handshake_events(stream, connection, received)
            for index, event in enumerate(events):
                if isinstance(event, Request):
                    return IncomingRequest(stream, connection, event, events[index + 1 :])
    raise WebSocketHandshakeTimeout(f"no upgrade request within {timeout_s:g}s")


# --- client side ----------------------------------------------------------------------------


def _host_header(host: str, port: int, default_port: int) -> str:
    name = f"[{host}]" if ":" in host else host
    return name if port == default_port else f"{name}:{port}"


async def connect(
    url: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    timeout_s: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE,
    ssl_context: ssl.SSLContext | None = None,
) -> WebSocket:
    """Open a client WebSocket to ``ws://`` or ``wss://`` ``url``. Raises ``ValueError`` for a URL
    that is not one, ``OSError`` when the host cannot be reached, ``WebSocketRejected`` or
    ``WebSocketHandshakeError`` when the upgrade fails (also on timeout)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL (scheme {parts.scheme!r})")
    secure = parts.scheme == "wss"
    default_port = 443 if secure else 80
    port = parts.port or default_port
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    stream: trio.abc.Stream | None = None
    with trio.move_on_after(timeout_s):
        try:
            stream = await trio.open_tcp_stream(parts.hostname, port)
            if secure:
                context = ssl_context or websocket_tls_context()
                stream = trio.SSLStream(stream, context, server_hostname=parts.hostname, https_compatible=True)
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as error:
                    raise WebSocketHandshakeError(f"TLS handshake failed: {error.__cause__ or error}") from None
            return await _client_handshake(
                stream, _host_header(parts.hostname, port, default_port), target, headers, max_message_size
            )
        except BaseException:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            raise
    raise WebSocketHandshakeTimeout(f"no WebSocket handshake within {timeout_s:g}s")


async def _client_handshake(
    stream: trio.abc.Stream, host: str, target: str, headers: Sequence[tuple[bytes, bytes]], max_message_size: int
) -> WebSocket:
    connection = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(connection.send(Request(host=host, target=target, extra_headers=list(headers))))
    received = [0]
    rejected: RejectConnection | None = None
    body = b""
    while True:
        try:
            events = await _handshake_events(stream, connection, received)
        except WebSocketHandshakeError:
            if rejected is not None:  # the refusal's body ended with the connection
                raise WebSocketRejected(rejected.status_code, body) from None
            raise
        for index, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return WebSocket(stream, connection, max_message_size=max_message_size, pending=events[index + 1 :])
            if isinstance(event, RejectConnection):
                rejected = event
                if not event.has_body:
                    raise WebSocketRejected(event.status_code, b"")
            elif isinstance(event, RejectData) and rejected is not None:
                body = (body + event.data)[:MAX_REJECT_BODY]
                if event.body_finished:
                    raise WebSocketRejected(rejected.status_code, body)
