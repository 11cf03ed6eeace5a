"""One contract, every message socket the engine is given: the real WebSocket (``adapters/websocket``,
both as the server of ``/call`` and as the client of the model) over real TCP, and the in-memory pair
the engine's own tests use instead (``tests/memory_sockets.py``). Modelled on
``trio.testing.check_two_way_stream``: the same checks run on each implementation, so the fakes are
held to what the real socket does.

What the engine relies on: messages arrive whole and in order, a batch sent with one
``send_messages`` arrives as separate messages, a close is delivered after the messages before it and
then raises ``WebSocketClosed`` with the peer's code and reason, every later read raises the same, a
lost connection reads as 1006, and sending on a closed socket raises ``WebSocketClosed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import trio
from memory_sockets import memory_socket_pair

from callbridge.adapters.websocket import WebSocket, WebSocketClosed, accept_request, connect

Pair = tuple[Any, Any]


@asynccontextmanager
async def memory_pair() -> AsyncIterator[Pair]:
    yield memory_socket_pair()


@asynccontextmanager
async def websocket_pair() -> AsyncIterator[Pair]:
    """Our server end (as ``/call`` accepts it) and our client end (as the model socket connects)."""
    accepted: list[WebSocket] = []
    ready = trio.Event()

    async def serve(stream: trio.SocketStream) -> None:
        request = await accept_request(stream)
        accepted.append(await request.accept())
        ready.set()
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, serve, 0)
        port = listeners[0].socket.getsockname()[1]
        client = await connect(f"ws://127.0.0.1:{port}/call")
        await ready.wait()
        yield accepted[0], client
        nursery.cancel_scope.cancel()


IMPLEMENTATIONS: dict[str, Callable[[], AbstractAsyncContextManager[Pair]]] = {
    "websocket over tcp": websocket_pair,
    "memory": memory_pair,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def make_pair(request: pytest.FixtureRequest) -> Callable[[], AbstractAsyncContextManager[Pair]]:
    return IMPLEMENTATIONS[request.param]


async def test_messages_arrive_whole_and_in_order_both_ways(make_pair: Any) -> None:
    async with make_pair() as (a, b):
        await a.send_messages(["one", "two"])
        await a.send_message("three" * 1000)
        assert [await b.get_message() for _ in range(3)] == ["one", "two", "three" * 1000]
        await b.send_messages(["back"])
        assert await a.get_message() == "back"


async def test_a_close_comes_after_the_messages_sent_before_it_and_then_every_read_raises(make_pair: Any) -> None:
    async with make_pair() as (a, b):
        await a.send_messages(["last words"])
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.aclose, 1000, "caller hung up")
                assert await b.get_message() == "last words"
                for _ in range(2):
                    with pytest.raises(WebSocketClosed) as closed:
                        await b.get_message()
                    assert (closed.value.code, closed.value.reason) == (1000, "caller hung up")


async def test_sending_on_a_closed_socket_raises_and_closing_twice_is_harmless(make_pair: Any) -> None:
    async with make_pair() as (a, b):
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(a.aclose, 1000, "done")
                with pytest.raises(WebSocketClosed):
                    await b.get_message()
            await a.aclose(1000, "again")
            with pytest.raises(WebSocketClosed):
                await a.send_messages(["too late"])
