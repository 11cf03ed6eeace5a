"""The peers' sockets: the simulated model and callers over ``adapters.websocket``.

The simulated peers are written against trio-websocket (a reader task and a channel hop per
message). In the benchmark both of them, for every call, live in one process whose own delays
are part of every latency it measures, so that process must be as light as the protocol allows.
These adapters give the unchanged peer logic (``FakeOpenAI``'s handler, ``run_stream``) the
cheaper sockets callbridge's media path uses — wsproto driven in the reading task — with the
trio-websocket surface they expect (``ConnectionClosed`` with a ``CloseReason``). Only the
socket layer differs; every message is the same.
"""

from __future__ import annotations

import socket
from typing import Any

import trio
from trio_websocket import CloseReason, ConnectionClosed

from callbridge.adapters.sim.fake_openai import FakeOpenAI, FakeOpenAIOptions
from callbridge.adapters.websocket import (
    SENT,
    SENT_IN_PART,
    IncomingRequest,
    WebSocket,
    WebSocketClosed,
    WebSocketHandshakeError,
    accept_request,
    connect,
)


def _closed(error: WebSocketClosed) -> ConnectionClosed:
    return ConnectionClosed(CloseReason(error.code or 1006, error.reason or None))


class PeerSocket:
    """An ``adapters.websocket`` socket with trio-websocket's surface (what the peers call).

    The simulated caller closes its socket (``aclose``, after ``stop``) from one task while its
    receiving task keeps reading, as trio-websocket allows. ``WebSocket.aclose`` then reads the
    peer's close itself unless the other task is waiting in a read at that very moment, so the
    receiving task's next read can find the socket busy (``trio.BusyResourceError``, raised before
    anything is read). That task then waits for the close to finish and takes what it read; and
    should the receiving task win the race instead, ``aclose`` stops waiting for the peer's close.
    (A fix belongs in ``WebSocket``: one reader at a time, ``aclose`` waiting for the other.)"""

    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws
        self._closing_done = trio.Event()

    @property
    def closed(self) -> CloseReason | None:
        closed = self._ws.closed
        return None if closed is None else CloseReason(closed.code or 1006, closed.reason or None)

    async def get_message(self) -> str | bytes:
        while True:
            try:
                return await self._ws.get_message()
            except WebSocketClosed as error:
                raise _closed(error) from None
            except trio.BusyResourceError:  # aclose() in another task is reading: see the class docstring
                await self._closing_done.wait()

    async def send_message(self, message: str | bytes) -> None:
        """Written at once when the kernel has room (``WebSocket.send_now``: no checkpoint, no trip
        through the scheduler, as callbridge's media path sends); otherwise the waiting way."""
        sent = self._ws.send_now((message,))
        if sent == SENT:
            return
        try:
            await self._ws.send_messages(() if sent == SENT_IN_PART else (message,))
        except WebSocketClosed as error:
            raise _closed(error) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        try:
            await self._ws.aclose(code, reason or "")
        except trio.BusyResourceError:  # the receiving task read first this time (our close frame is
            await self._ws.abort(code, reason or "")  # sent): it sees the end; stop waiting for it
        finally:
            self._closing_done.set()


async def open_peer_socket(url: str) -> PeerSocket:
    """A caller's Media Streams socket to ``url``."""
    return PeerSocket(await connect(url))


class _Request:
    """An upgrade request as ``FakeOpenAI.handle`` reads it (trio-websocket's ``WebSocketRequest``)."""

    def __init__(self, request: IncomingRequest) -> None:
        self._request = request
        self.path = request.path
        self.headers = request.headers

    async def accept(self) -> PeerSocket:
        return PeerSocket(await self._request.accept(max_message_size=16 * 1024 * 1024))

    async def reject(self, status_code: int, *, extra_headers: Any = None, body: bytes = b"") -> None:
        await self._request.reject(status_code, body)


async def serve_fake_model(
    options: FakeOpenAIOptions, port: int = 0, *, task_status: trio.TaskStatus[FakeOpenAI] = trio.TASK_STATUS_IGNORED
) -> None:
    """The simulated model (``FakeOpenAI``, unchanged) on 127.0.0.1:``port`` (0: any free one) over
    ``adapters.websocket``, until cancelled; ``task_status.started`` gets its handle (``.url``,
    ``.sessions``). The port is bound with ``SO_REUSEPORT``: several peer processes (``bridge.py
    --peer-processes``) listen on one port, and the kernel spreads the bridge's model sessions over them."""
    fake = FakeOpenAI(options, "127.0.0.1")

    async def one(stream: trio.SocketStream) -> None:
        try:
            request = await accept_request(stream)
        except WebSocketHandshakeError:
            await stream.aclose()
            return
        try:
            await fake.handle(_Request(request))  # type: ignore[arg-type]  # duck-typed: what handle() uses
        finally:
            await stream.aclose()

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    await sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, one, [trio.SocketListener(sock)])
        fake.port = sock.getsockname()[1]
        task_status.started(fake)
