"""The listener's connection budget and head deadline (``web/listener.py``, ``web/connection_gate.py``)
over real sockets, with a tiny app and tiny limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import httpx2
import trio
from hypercorn.config import Config
from quart_trio import QuartTrio

from callbridge.web.connection_gate import ConnectionGate, ConnectionLimits, Slot
from callbridge.web.listener import serve_front

WAIT_S = 10.0
"""Guard against a hang (not synchronisation)."""
UPGRADE = (
    b"GET /call HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@dataclass
class Front:
    port: int
    calls_in: trio.Semaphore
    """Released once per /call connection handed to the media handler."""
    hang_up: trio.Event

    async def connect(self) -> trio.SocketStream:
        return await trio.open_tcp_stream("127.0.0.1", self.port)


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(WAIT_S):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


@asynccontextmanager
async def front(limits: ConnectionLimits) -> AsyncIterator[Front]:
    app = QuartTrio("test")

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    calls_in = trio.Semaphore(0, max_value=1000)
    hang_up = trio.Event()

    async def media(stream: trio.abc.HalfCloseableStream) -> None:
        calls_in.release()
        await hang_up.wait()

    config = Config()
    config.accesslog = None
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(serve_front, app, config, media, host="127.0.0.1", port=0, shutdown=shutdown, limits=limits)
        )
        yield Front(port, calls_in, hang_up)
        hang_up.set()
        shutdown.set()


async def test_a_request_head_not_finished_in_time_is_answered_408_and_closed() -> None:
    limits = ConnectionLimits(http_slots=4, overflow_slots=1, call_slots=2, head_timeout_s=0.3)
    async with front(limits) as served:
        slow = await served.connect()
        await slow.send_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # ... and the rest never comes
        answer = await read_all(slow)
    assert answer.startswith(b"HTTP/1.1 408 ")


async def test_idle_connections_make_room_for_a_request_and_calls_keep_their_own_slots() -> None:
    limits = ConnectionLimits(http_slots=3, overflow_slots=1, call_slots=1)
    async with front(limits) as served:
        idle = [await served.connect() for _ in range(3)]
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{served.port}", timeout=WAIT_S) as http:
            assert (await http.get("/healthz")).text == "ok"
        assert await read_all(idle[0]) == b""  # the longest-idle one was closed to make room
        call = await served.connect()
        await call.send_all(UPGRADE)
        with trio.fail_after(WAIT_S):
            await served.calls_in.acquire()
        second = await served.connect()
        await second.send_all(UPGRADE)
        refused = await read_all(second)
        for stream in (*idle, call, second):
            await stream.aclose()
    assert refused.startswith(b"HTTP/1.1 503 ") and b"server at capacity" in refused


def test_the_gate_evicts_the_oldest_waiting_head_then_uses_overflow_then_refuses() -> None:
    gate = ConnectionGate(ConnectionLimits(http_slots=2, overflow_slots=1, call_slots=1))
    scopes = [trio.CancelScope() for _ in range(6)]
    first, second = gate.admit(scopes[0]), gate.admit(scopes[1])
    assert first and second and gate.classify(second, media=False)
    third = gate.admit(scopes[2])  # HTTP slots full: the oldest waiting head makes room
    assert third is not None and scopes[0].cancel_called and gate.evicted == 1
    assert gate.classify(third, media=False)
    overflow = gate.admit(scopes[3])  # two real requests: no one to evict
    assert overflow is not None and overflow.slot is Slot.OVERFLOW
    assert gate.admit(scopes[4]) is None and gate.refused == 1
    assert gate.classify(overflow, media=True)  # a call still gets in from the overflow
    fourth = gate.admit(scopes[5])
    assert fourth is not None and not gate.classify(fourth, media=False)  # overflow answers 503
    gate.leave(fourth)
    gate.leave(second)
    assert gate.counts == {Slot.PENDING: 0, Slot.OVERFLOW: 0, Slot.HTTP: 1, Slot.CALL: 1}


def test_limits_follow_the_open_files_limit() -> None:
    small, usual, large = (ConnectionLimits.for_fd_limit(n) for n in (160, 1024, 1 << 20))
    assert (small.http_slots, small.call_slots) == (12, 26)
    assert (usual.http_slots, usual.call_slots) == (120, 270)
    assert large.http_slots == 1024 and large.call_slots > 300_000
