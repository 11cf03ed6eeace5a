"""One port, two paths: Twilio media straight to a wsproto socket, everything else to hypercorn.

The media stream is the hot path — 50 frames a second per call in each direction. Measured on
our machines (stack-notes.md §9), an ASGI WebSocket route costs about twice the CPU per message of
a direct WebSocket loop and its tail latency explodes near one core. So the listener
reads each new connection's request head: a WebSocket upgrade of ``/call`` is handed, head and
all, to ``media_handler`` (``adapters.websocket`` over the same stream); any other request goes to
hypercorn's own per-connection server, serving the Quart app (console, API, ``/logs``, ``/mcp``).

This replicates the few lines of ``hypercorn.trio.run.worker_serve`` that wire the lifespan and
the per-connection ``TCPServer`` (hypercorn is pinned to 0.18.x for that reason).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
HEAD_TIMEOUT_S = 10.0


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A socket stream whose first bytes (the request head we peeked at) are read again."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    @property
    def socket(self) -> Any:
        return self._stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._prefix:
            if max_bytes is None or max_bytes >= len(self._prefix):
                data, self._prefix = self._prefix, b""
            else:
                data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


async def read_head(stream: trio.SocketStream) -> bytes:
    """Bytes up to and including the end of the HTTP request head (or whatever came before EOF,
    the size cap or the timeout — the HTTP server then answers the malformed request itself)."""
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT_S):
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            chunk = await stream.receive_some(MAX_HEAD)
            if not chunk:
                break
            data += chunk
    return data


def is_media_upgrade(head: bytes, path: bytes = b"/call") -> bool:
    """True for ``GET /call[?…] HTTP/1.1`` with ``Upgrade: websocket``."""
    line_end = head.find(b"\r\n")
    if line_end < 0:
        return False
    parts = head[:line_end].split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return False
    target = parts[1].split(b"?", 1)[0]
    if target != path:
        return False
    for line in head[line_end + 2 :].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and value.strip().lower() == b"websocket":
            return True
    return False


MediaHandler = Callable[[trio.abc.HalfCloseableStream], Awaitable[None]]


async def serve_front(
    app: Any,
    config: Config,
    media_handler: MediaHandler,
    *,
    host: str,
    port: int,
    shutdown: trio.Event,
    before_close: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` and the media path on ``host:port`` until ``shutdown`` is set.

    Shutdown order: stop accepting, run ``before_close`` (end live calls, flush events), let HTTP
    connections finish within hypercorn's graceful timeout, then run the app's lifespan shutdown.
    ``task_status.started`` gets the bound port.
    """
    app_wrapper = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app_wrapper, config, lifespan_state)
    context = WorkerContext(None)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            head = await read_head(stream)
            if not head:
                await stream.aclose()
                return
            wrapped = PrefixedStream(stream, head)
            if is_media_upgrade(head):
                await media_handler(wrapped)
            else:
                await TCPServer(app_wrapper, config, context, ConnectionState(lifespan_state.copy()), wrapped).run()  # type: ignore[arg-type]
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # one connection's failure must never take the listener down
            log.exception("connection handler failed")

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(partial(trio.serve_listeners, handle, listeners, handler_nursery=connections))
                task_status.started(bound)
                await shutdown.wait()
                accepting.cancel_scope.cancel()
            if before_close is not None:
                await before_close()
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
