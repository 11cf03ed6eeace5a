"""One port, two paths: Twilio media straight to a wsproto socket, everything else to hypercorn.

The media stream is the hot path — 50 frames a second per call in each direction. Measured on a
2-core machine (README, "Why /call is not a Quart route"), an ASGI WebSocket route costs about
twice the CPU per message of a direct WebSocket loop and its tail latency explodes near one core.
So the listener reads each new connection's request head: a WebSocket upgrade of ``/call`` is
handed, head and all, to ``media_handler`` (``adapters.websocket`` over the same stream); any other
request goes to hypercorn's own per-connection server, serving the Quart app (console, API,
``/logs``, ``/mcp``).

Every connection first passes the :class:`~web.connection_gate.ConnectionGate` (a budget of file
descriptors: calls keep their room however many other connections arrive), and must send its
whole request head within ``head_timeout_s`` (10 s; slowloris) or get 408 and be closed.
Connections refused for room get a one-line 503 (or are closed at accept beyond the overflow),
and the refusals are logged at most once every :data:`REFUSAL_LOG_INTERVAL_S`.

This replicates the few lines of ``hypercorn.trio.run.worker_serve`` that wire the lifespan and
the per-connection ``TCPServer`` (hypercorn is pinned to 0.18.x for that reason).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import wrap_app

from callbridge.web.connection_gate import ConnectionGate, ConnectionLimits
from callbridge.web.worker_board import WorkerTurns

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
REFUSAL_LOG_INTERVAL_S = 10.0
_TOO_SLOW = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_BUSY_BODY = b"server at capacity: too many connections, try again\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


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


async def read_head(stream: trio.SocketStream, timeout_s: float) -> tuple[bytes, bool]:
    """Bytes up to and including the end of the HTTP request head (or whatever came before EOF or
    the size cap — the HTTP server then answers the malformed request itself), and whether the
    time ran out first."""
    data = b""
    with trio.move_on_after(timeout_s) as waited:
        while b"\r\n\r\n" not in data and len(data) < MAX_HEAD:
            chunk = await stream.receive_some(MAX_HEAD)
            if not chunk:
                break
            data += chunk
    return data, waited.cancelled_caught


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
    limits: ConnectionLimits | None = None,
    turns: WorkerTurns | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` and the media path on ``host:port`` (or, for a worker of ``serve --workers``, on
    the socket its ``turns`` hold, bound by the parent: it accepts on its turn, ``web.worker_board``)
    until ``shutdown`` is set.

    Shutdown order: stop accepting, run ``before_close`` (end live calls, flush events), let HTTP
    connections finish within hypercorn's graceful timeout, then run the app's lifespan shutdown.
    ``task_status.started`` gets the bound port. ``limits`` default to the process's open-files limit.
    """
    app_wrapper = wrap_app(app, config.wsgi_max_body_size, None)
    lifespan_state: dict[str, Any] = {}
    lifespan = Lifespan(app_wrapper, config, lifespan_state)
    context = WorkerContext(None)
    gate = ConnectionGate(limits or ConnectionLimits.from_process())
    refusals = _RefusalLog(gate)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            with trio.CancelScope() as scope:
                evicted = gate.evicted
                admission = gate.admit(scope)
                if admission is None or gate.evicted != evicted:
                    refusals.note()
                if admission is None:
                    refusals.note()
                    return
                try:
                    await serve_connection(stream, admission)
                finally:
                    gate.leave(admission)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:  # one connection's failure must never take the listener down
            log.exception("connection handler failed")
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def serve_connection(stream: trio.SocketStream, admission: Any) -> None:
        head, timed_out = await read_head(stream, gate.head_timeout(admission))
        if not head:
            return
        if timed_out and b"\r\n\r\n" not in head:
            await stream.send_all(_TOO_SLOW)
            return
        media = is_media_upgrade(head)
        if not gate.classify(admission, media=media):
            refusals.note()
            await stream.send_all(_BUSY)
            return
        wrapped = PrefixedStream(stream, head)
        if media:
            with turns.carrying_call() if turns is not None else nullcontext():
                await media_handler(wrapped)
        else:
            await TCPServer(app_wrapper, config, context, ConnectionState(lifespan_state.copy()), wrapped).run()  # type: ignore[arg-type]

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        listeners: list[trio.abc.Listener[trio.SocketStream]]
        if turns is None:
            opened = await trio.open_tcp_listeners(port, host=host)
            listeners, bound = list(opened), opened[0].socket.getsockname()[1]
        else:
            listeners, bound = [turns.listener()], turns.socket.getsockname()[1]
        log.info("connection limits: %s", gate.limits.describe())
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                accepting.start_soon(partial(trio.serve_listeners, handle, listeners, handler_nursery=connections))
                if turns is not None:
                    accepting.start_soon(turns.publish_busy)
                task_status.started(bound)
                await shutdown.wait()
                accepting.cancel_scope.cancel()
            if before_close is not None:
                await before_close()
            await context.terminated.set()
            connections.cancel_scope.deadline = trio.current_time() + config.graceful_timeout
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


class _RefusalLog:
    """One log line per :data:`REFUSAL_LOG_INTERVAL_S` at most about connections refused for room."""

    def __init__(self, gate: ConnectionGate) -> None:
        self._gate = gate
        self._logged_at: float | None = None

    def note(self) -> None:
        now = trio.current_time()
        if self._logged_at is not None and now - self._logged_at < REFUSAL_LOG_INTERVAL_S:
            return
        gate = self._gate
        log.warning(
            "at capacity (%s): %d connection(s) refused and %d idle one(s) closed so far; "
            "raise the open-files limit (ulimit -n) for more",
            gate.limits.describe(),
            gate.refused,
            gate.evicted,
        )
        self._logged_at = now
