"""The realtime model socket: ``adapters.websocket`` (wsproto) at the edge, the sans-IO codec inside.

``open_realtime`` connects (``Authorization: Bearer``, no ``OpenAI-Beta`` header: GA only), yields a
``RealtimeConnection`` and keeps it honest with a keepalive: a half-open TCP connection (NAT
timeout, a dead peer) would otherwise leave ``receive()`` waiting forever while the caller talks to
nobody. When a ping goes unanswered, the connection is aborted: pending and later
``receive()``/``send()`` calls raise ``RealtimeConnectionClosed(1006, …)`` and the engine reconnects.

The API key goes into one header and nowhere else: not into errors, logs or ``repr``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

from callbridge.adapters.openai.client_events import ClientEventBase
from callbridge.adapters.openai.codec import decode_server, encode_client
from callbridge.adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from callbridge.adapters.openai.server_events import ServerEvent, UnknownServerEvent
from callbridge.adapters.websocket import (
    ABNORMAL_CLOSURE,
    WebSocket,
    WebSocketClosed,
    WebSocketHandshakeError,
    WebSocketHandshakeTimeout,
    WebSocketRejected,
    connect,
)

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
"""Audio deltas can be large (a 1 MiB limit would close the socket with 1009)."""


def redact_url(url: str) -> str:
    """``url`` without user info, safe for logs and errors (the key never travels in the URL, but a
    misconfigured ``OPENAI_REALTIME_URL`` might carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _closed(closed: WebSocketClosed) -> RealtimeConnectionClosed:
    return RealtimeConnectionClosed(closed.code, closed.reason or "closed")


class RealtimeConnection:
    """One open realtime socket. Use only inside ``open_realtime``'s context."""

    def __init__(self, ws: WebSocket, url: str) -> None:
        self._ws = ws
        self.url = redact_url(url)
        self.pongs = 0
        """Keepalive pings answered so far (a liveness signal for metrics and tests)."""

    def __repr__(self) -> str:
        return f"RealtimeConnection({self.url!r}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        return self._ws.closed is not None

    async def send(self, event: ClientEventBase) -> None:
        """Encode and send one client event."""
        await self.send_raw(encode_client(event))

    async def send_raw(self, text: str) -> None:
        """Send an already-encoded client event (one JSON text frame)."""
        try:
            await self._ws.send_message(text)
        except WebSocketClosed as closed:
            raise _closed(closed) from None

    async def send_raw_many(self, texts: list[str]) -> None:
        """Send already-encoded client events, in order, with one write (each its own frame)."""
        try:
            await self._ws.send_messages(texts)
        except WebSocketClosed as closed:
            raise _closed(closed) from None

    def send_now(self, texts: list[str]) -> int:
        """Write already-encoded client events at once if the socket takes them without waiting
        (``WebSocket.send_now``: ``NOT_SENT``, ``SENT`` or ``SENT_IN_PART``)."""
        return self._ws.send_now(texts)

    async def receive_raw(self) -> str:
        """The next server frame as text, undecoded (the engine records it verbatim). Raises
        ``RealtimeConnectionClosed`` once the socket is closed (after delivering what arrived
        before the close) or the peer stopped answering pings."""
        try:
            message = await self._ws.get_message()
        except WebSocketClosed as closed:
            raise _closed(closed) from None
        return message if isinstance(message, str) else message.decode("utf-8", errors="replace")

    async def receive(self) -> ServerEvent | UnknownServerEvent:
        """The next server event, decoded (see ``receive_raw`` for closing); raises
        ``RealtimeProtocolError`` for a frame that is not an event at all."""
        return decode_server(await self.receive_raw())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket (idempotent)."""
        await self._ws.aclose(code, reason)

    async def keepalive(self, interval: float, pong_timeout: float) -> None:
        """Ping every ``interval`` s; no pong within ``pong_timeout`` s aborts the connection.
        Returns when the socket is closed; never raises (a background task)."""
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(pong_timeout) as ping_scope:
                try:
                    await self._ws.ping()
                except WebSocketClosed:
                    return
                self.pongs += 1
            if ping_scope.cancelled_caught:
                logger.warning("realtime peer %s did not answer a ping within %.1fs", self.url, pong_timeout)
                await self._ws.abort(
                    ABNORMAL_CLOSURE, f"keepalive: no pong within {pong_timeout:g}s, the peer is unresponsive"
                )
                return


def _connect_error(exc: BaseException, url: str, connect_timeout: float) -> RealtimeConnectError:
    where = redact_url(url)
    if isinstance(exc, WebSocketRejected):
        status = exc.status_code
        if status in (401, 403):
            return RealtimeConnectError(
                f"OPENAI_API_KEY was rejected by the realtime endpoint {where} (HTTP {status}); "
                "check the key, or unset it to use the simulated model",
                status=status,
                retryable=False,
            )
        body = exc.body[:300].decode("utf-8", errors="replace")
        return RealtimeConnectError(
            f"realtime endpoint {where} refused the WebSocket upgrade with HTTP {status}: {body}",
            status=status,
            retryable=status in (408, 425, 429) or status >= 500,
        )
    if isinstance(exc, WebSocketHandshakeTimeout):
        return RealtimeConnectError(
            f"no answer from the realtime endpoint {where} within {connect_timeout:g}s; "
            "check OPENAI_REALTIME_URL and the network"
        )
    return RealtimeConnectError(
        f"could not connect to the realtime endpoint {where}: {exc}; "
        "check OPENAI_REALTIME_URL and that the endpoint is reachable"
    )


def realtime_url_for_model(url: str, model: str) -> str:
    """``url`` (``wss://…/v1/realtime?model=…``) opening ``model`` instead: the model is chosen when
    the socket opens, so an agent with its own model needs its own URL. Other query keys are kept."""
    parts = urllib.parse.urlsplit(url)
    query = [(key, value) for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    query = [(key, value) for key, value in query if key != "model"] + [("model", model)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


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
        ws = await connect(url, headers, timeout_s=connect_timeout, max_message_size=max_message_size)
    except ValueError as exc:
        raise RealtimeConnectError(
            f"OPENAI_REALTIME_URL {redact_url(url)!r} is not a usable ws:// or wss:// URL: {exc}",
            retryable=False,
        ) from None
    except (WebSocketHandshakeError, OSError) as exc:
        raise _connect_error(exc, url, connect_timeout) from None
    connection = RealtimeConnection(ws, url)
    block_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(connection.keepalive, ping_interval, ping_timeout)
            try:
                yield connection
            except BaseException as exc:
                # Re-raised below, outside the nursery, so it is not wrapped in an ExceptionGroup
                # nor mistaken for a connection error.
                block_error = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(close_timeout):
            await ws.aclose()
    if block_error is not None:
        raise block_error
