"""The realtime model socket: trio-websocket at the edge, the sans-IO codec inside.

``open_realtime`` connects (``Authorization: Bearer``, no ``OpenAI-Beta`` header: GA only), yields a
``RealtimeConnection`` and keeps it honest with a keepalive: trio-websocket has none, and a
half-open TCP connection (NAT timeout, a dead peer) would otherwise leave ``receive()`` waiting
forever while the caller talks to nobody. When a ping goes unanswered, the connection is marked
dead: pending and later ``receive()``/``send()`` calls raise ``RealtimeConnectionClosed(1006, …)``
and the engine reconnects.

The API key goes into one header and nowhere else: not into errors, logs or ``repr``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Final, TypeVar

import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    DisconnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

from adapters.openai.client_events import ClientEventBase
from adapters.openai.codec import decode_server, encode_client
from adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from adapters.openai.server_events import ServerEvent, UnknownServerEvent

T = TypeVar("T")

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""Audio deltas can be large; trio-websocket's 1 MiB default would close the socket with 1009."""

ABNORMAL_CLOSURE: Final = 1006


def redact_url(url: str) -> str:
    """``url`` without user info, safe for logs and errors (the key never travels in the URL, but a
    misconfigured ``OPENAI_REALTIME_URL`` might carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


class RealtimeConnection:
    """One open realtime socket. Use only inside ``open_realtime``'s context."""

    def __init__(self, ws: WebSocketConnection, url: str) -> None:
        self._ws = ws
        self.url = redact_url(url)
        self._failure: RealtimeConnectionClosed | None = None
        self._scopes: set[trio.CancelScope] = set()
        self.pongs = 0
        """Keepalive pings answered so far (a liveness signal for metrics and tests)."""

    def __repr__(self) -> str:
        return f"RealtimeConnection({self.url!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        return self._failure is not None or self._ws.closed is not None

    def _closed_error(self, exc: ConnectionClosed | None = None) -> RealtimeConnectionClosed:
        if self._failure is not None:
            return self._failure
        reason = exc.reason if exc is not None else self._ws.closed
        if reason is None:
            return RealtimeConnectionClosed(None, "closed")
        return RealtimeConnectionClosed(int(reason.code), reason.reason or reason.name)

    async def send(self, event: ClientEventBase) -> None:
        """Encode and send one client event."""
        await self.send_raw(encode_client(event))

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one socket operation so that a closed socket, or a peer the keepalive found dead
        (``_mark_dead`` cancels the scope), raises ``RealtimeConnectionClosed``."""
        if self._failure is not None:
            raise self._failure
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                return await operation()
            except ConnectionClosed as exc:
                raise self._closed_error(exc) from None
            finally:
                self._scopes.discard(scope)
        raise self._closed_error()

    async def send_raw(self, text: str) -> None:
        """Send an already-encoded client event (one JSON text frame)."""
        await self._guarded(partial(self._ws.send_message, text))

    async def receive_raw(self) -> str:
        """The next server frame as text, undecoded (the engine records it verbatim). Raises
        ``RealtimeConnectionClosed`` once the socket is closed (after delivering what arrived
        before the close) or the peer stopped answering pings."""
        message = await self._guarded(self._ws.get_message)
        return message if isinstance(message, str) else message.decode("utf-8", errors="replace")

    async def receive(self) -> ServerEvent | UnknownServerEvent:
        """The next server event, decoded (see ``receive_raw`` for closing); raises
        ``RealtimeProtocolError`` for a frame that is not an event at all."""
        return decode_server(await self.receive_raw())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (idempotent)."""
        await self._ws.aclose(code, reason or None)

    def _mark_dead(self, reason: str) -> None:
        """Fail every pending and future send/receive with ``RealtimeConnectionClosed``."""
        if self._failure is None:
            self._failure = RealtimeConnectionClosed(ABNORMAL_CLOSURE, reason)
        for scope in list(self._scopes):
            scope.cancel()

    async def keepalive(self, interval: float, pong_timeout: float, close_timeout: float) -> None:
        """Ping every ``interval`` s; no pong within ``pong_timeout`` s marks the connection dead
        and closes it. Returns when the socket is closed; never raises (a background task)."""
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(pong_timeout) as ping_scope:
                try:
                    await self._ws.ping()
                except ConnectionClosed:
                    return
                self.pongs += 1
            if ping_scope.cancelled_caught:
                logger.warning("realtime peer %s did not answer a ping within %.1fs", self.url, pong_timeout)
                self._mark_dead(f"keepalive: no pong within {pong_timeout:g}s, the peer is unresponsive")
                with trio.move_on_after(close_timeout):
                    await self._ws.aclose(1011, "keepalive timeout")
                return


def _connect_error(exc: BaseException, url: str, connect_timeout: float) -> RealtimeConnectError:
    where = redact_url(url)
    if isinstance(exc, ConnectionRejected):
        status = exc.status_code
        if status in (401, 403):
            return RealtimeConnectError(
                f"OPENAI_API_KEY was rejected by the realtime endpoint {where} (HTTP {status}); "
                "check the key, or unset it to use the simulated model",
                status=status,
                retryable=False,
            )
        body = (exc.body or b"")[:300].decode("utf-8", errors="replace")
        return RealtimeConnectError(
            f"realtime endpoint {where} refused the WebSocket upgrade with HTTP {status}: {body}",
            status=status,
            retryable=status in (408, 425, 429) or status >= 500,
        )
    if isinstance(exc, ConnectionTimeout):
        return RealtimeConnectError(
            f"no answer from the realtime endpoint {where} within {connect_timeout:g}s; "
            "check OPENAI_REALTIME_URL and the network"
        )
    cause = exc.__cause__ or exc
    return RealtimeConnectError(
        f"could not connect to the realtime endpoint {where}: {cause}; "
        "check OPENAI_REALTIME_URL and that the endpoint is reachable"
    )


@asynccontextmanager
async def open_realtime(
    url: str,
    api_key: str | None,
    *,
    connect_timeout: float = 10.0,
    ping_interval: float = 15.0,
    ping_timeout: float = 10.0,
    close_timeout: float = 2.0,
    max_message_size: int = MAX_MESSAGE_SIZE,
) -> AsyncIterator[RealtimeConnection]:
    """Open the realtime socket at ``url`` (``wss://…/v1/realtime?model=…``; ``ws://`` for local
    peers) and keep it alive until the block exits.

    Raises ``RealtimeConnectError`` when the socket cannot be opened (``retryable`` False for a
    rejected key or a malformed URL). Exceptions from the block pass through unchanged.
    """
    headers: list[tuple[bytes, bytes]] = []
    if api_key:
        headers.append((b"Authorization", b"Bearer " + api_key.encode()))
    try:
        websocket = open_websocket_url(
            url,
            extra_headers=headers,
            max_message_size=max_message_size,
            connect_timeout=connect_timeout,
            disconnect_timeout=close_timeout,
        )
    except ValueError as exc:
        raise RealtimeConnectError(
            f"OPENAI_REALTIME_URL {redact_url(url)!r} is not a usable ws:// or wss:// URL: {exc}",
            retryable=False,
        ) from None
    connection: RealtimeConnection | None = None
    block_error: BaseException | None = None
    try:
        async with websocket as ws:
            connection = RealtimeConnection(ws, url)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connection.keepalive, ping_interval, ping_timeout, close_timeout)
                try:
                    yield connection
                except BaseException as exc:
                    # Re-raised below, outside the nursery, so it is not wrapped in an ExceptionGroup
                    # nor mistaken for a connection error.
                    block_error = exc
                finally:
                    nursery.cancel_scope.cancel()
    except (HandshakeError, OSError) as exc:
        if connection is None:
            raise _connect_error(exc, url, connect_timeout) from None
        if not isinstance(exc, DisconnectionTimeout):
            raise
        # The close handshake timed out: the socket is closed anyway.
    if block_error is not None:
        raise block_error
