"""The media path's WebSocket (adapters/websocket/): against itself, trio-websocket and hand-built frames."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
import trustme
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, open_websocket_url
from wsproto import ConnectionState, ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Event, Ping, Pong, Request, TextMessage

from callbridge.adapters.tls import websocket_tls_context
from callbridge.adapters.websocket import (
    NOT_SENT,
    SENT,
    SENT_IN_PART,
    IncomingRequest,
    WebSocket,
    WebSocketClosed,
    WebSocketHandshakeError,
    WebSocketHandshakeTimeout,
    WebSocketRejected,
    accept_request,
    connect,
    connection,
    frames,
)

# --- servers ---------------------------------------------------------------------------------


async def hang_guard() -> None:
    """Started next to every test's servers: a bug here tends to hang a read, so fail after 10 s instead."""
    await trio.sleep(10)
    raise trio.TooSlowError("the test hung for 10 s")


async def serve_raw(nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[object]]) -> str:
    """A plain TCP server on 127.0.0.1; its ``ws://`` URL."""
    nursery.start_soon(hang_guard)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await nursery.start(trio.serve_listeners, handler, listeners)
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}"


async def serve_ours(nursery: trio.Nursery, handler: Callable[[IncomingRequest], Awaitable[object]]) -> str:
    """Our ``accept_request`` over the plain streams of ``serve_listeners``."""

    async def on_stream(stream: trio.SocketStream) -> None:
        await handler(await accept_request(stream))

    return await serve_raw(nursery, on_stream)


async def serve_trio_websocket(
    nursery: trio.Nursery, handler: Callable[[WebSocketConnection], Awaitable[object]]
) -> str:
    async def on_request(request: trio_websocket.WebSocketRequest) -> None:
        await handler(await request.accept())

    nursery.start_soon(hang_guard)
    server = await nursery.start(trio_websocket.serve_websocket, on_request, "127.0.0.1", 0, None)
    return f"ws://127.0.0.1:{server.port}"


async def echo(request: IncomingRequest) -> None:
    ws = await request.accept()
    with contextlib.suppress(WebSocketClosed):
        while True:
            await ws.send_message(await ws.get_message())


class RawPeer:
    """The far end, framed by hand with wsproto (fragments, pings, frames sent along with the 101)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.ws = WSConnection(ConnectionType.SERVER)

    async def receive(self) -> list[Event]:
        self.ws.receive_data(await self.stream.receive_some() or None)  # b"" (end of stream) -> None
        return list(self.ws.events())

    async def send(self, *events: Event) -> None:
        await self.stream.send_all(b"".join(self.ws.send(event) for event in events))

    async def accept(self, *then: Event) -> None:
        """Answer the upgrade; ``then`` goes out in the same write as the 101."""
        while not any(isinstance(event, Request) for event in await self.receive()):
            pass
        await self.send(AcceptConnection(), *then)


async def connect_to_raw_peer(
    nursery: trio.Nursery, *first: Event, max_message_size: int = 1 << 24
) -> tuple[WebSocket, RawPeer]:
    peers_in, peers_out = trio.open_memory_channel[RawPeer](1)

    async def handler(stream: trio.SocketStream) -> None:
        peer = RawPeer(stream)
        await peer.accept(*first)
        await peers_in.send(peer)
        await trio.sleep_forever()  # serve_listeners closes the stream when its handler returns

    ws = await connect(await serve_raw(nursery, handler), max_message_size=max_message_size)
    return ws, await peers_out.receive()


async def close_code_seen_by(peer: WebSocketConnection) -> int | None:
    """Read on a trio-websocket connection until it closes; the close code it saw."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await peer.get_message()
    return peer.closed.code if peer.closed else None


async def abort_once_blocked(ws: WebSocket) -> None:
    await trio.testing.wait_all_tasks_blocked()  # the test's task is waiting inside ws
    await ws.abort(1006, "keepalive")


# --- our client <-> our server ----------------------------------------------------------------


async def test_text_and_bytes_round_trip_between_our_client_and_our_server(nursery: trio.Nursery) -> None:
    ws = await connect(await serve_ours(nursery, echo))
    await ws.send_message("hello")
    assert await ws.get_message() == "hello"
    await ws.send_message(b"\x00\xff")
    assert await ws.get_message() == b"\x00\xff"
    await ws.send_messages(["a", b"b", "c"])  # one write, three messages
    assert [await ws.get_message() for _ in range(3)] == ["a", b"b", "c"]
    await ws.aclose()
    assert ws.closed is not None and ws.closed.code == 1000


async def test_the_server_sees_the_request_path_with_query_and_custom_headers(nursery: trio.Nursery) -> None:
    seen: list[IncomingRequest] = []

    async def record(request: IncomingRequest) -> None:
        seen.append(request)
        await echo(request)

    url = await serve_ours(nursery, record) + "/media?call=CA123"
    ws = await connect(url, [(b"authorization", b"Bearer sk-test"), (b"x-call", b"7")])
    [request] = seen
    assert request.path == "/media?call=CA123"
    assert (b"authorization", b"Bearer sk-test") in request.headers
    assert (b"x-call", b"7") in request.headers
    await ws.aclose()


# --- interoperability with trio-websocket -------------------------------------------------------


async def test_our_client_round_trips_with_trio_websocket_and_sees_its_close_code(nursery: trio.Nursery) -> None:
    async def echo_twice_then_bye(peer: WebSocketConnection) -> None:
        for _ in range(2):
            await peer.send_message(await peer.get_message())
        await peer.aclose(4000, "bye")

    ws = await connect(await serve_trio_websocket(nursery, echo_twice_then_bye))
    await ws.send_message("text")
    assert await ws.get_message() == "text"
    await ws.send_message(b"\x01\x02")
    assert await ws.get_message() == b"\x01\x02"
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert (closed.value.code, closed.value.reason) == (4000, "bye")


async def test_trio_websocket_sees_the_code_of_our_close(nursery: trio.Nursery) -> None:
    codes_in, codes = trio.open_memory_channel[int | None](1)

    async def wait_for_close(peer: WebSocketConnection) -> None:
        await codes_in.send(await close_code_seen_by(peer))

    ws = await connect(await serve_trio_websocket(nursery, wait_for_close))
    await ws.aclose(1000)
    assert await codes.receive() == 1000


async def test_a_trio_websocket_client_round_trips_and_pings_with_our_server(nursery: trio.Nursery) -> None:
    closes_in, closes = trio.open_memory_channel[WebSocketClosed](1)

    async def echo_and_record(request: IncomingRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except WebSocketClosed as closed:
            await closes_in.send(closed)

    async with open_websocket_url(await serve_ours(nursery, echo_and_record)) as client:
        await client.send_message("hi")
        assert await client.get_message() == "hi"
        await client.send_message(b"\x00")
        assert await client.get_message() == b"\x00"
        with trio.fail_after(5):
            await client.ping()  # answered by the server's reading task
        await client.aclose(4001, "done")
    closed = await closes.receive()
    assert (closed.code, closed.reason) == (4001, "done")


async def test_reject_gives_a_trio_websocket_client_the_status_and_body(nursery: trio.Nursery) -> None:
    async def refuse(request: IncomingRequest) -> None:
        await request.reject(403, b"no")

    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(await serve_ours(nursery, refuse)):
            pass
    assert (rejected.value.status_code, rejected.value.body) == (403, b"no")


# --- framing -------------------------------------------------------------------------------------


async def test_fragmented_messages_are_reassembled_and_pings_between_fragments_answered(nursery: trio.Nursery) -> None:
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.send(TextMessage(data="frag", message_finished=False))

    async def send_the_rest_once_the_first_part_was_read() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await peer.send(
            Ping(payload=b"p"),
            TextMessage(data="mented"),
            BytesMessage(data=b"\x00", message_finished=False),
            BytesMessage(data=b"\x01"),
        )

    nursery.start_soon(send_the_rest_once_the_first_part_was_read)
    assert await ws.get_message() == "fragmented"
    assert await ws.get_message() == b"\x00\x01"
    assert Pong(payload=b"p") in await peer.receive()
    await ws.abort(1000, "done")


async def test_a_message_over_max_message_size_closes_the_socket_with_1009(nursery: trio.Nursery) -> None:
    codes_in, codes = trio.open_memory_channel[int | None](1)

    async def send_too_much(peer: WebSocketConnection) -> None:
        await peer.send_message(b"x" * 2000)
        await codes_in.send(await close_code_seen_by(peer))

    ws = await connect(await serve_trio_websocket(nursery, send_too_much), max_message_size=1000)
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert closed.value.code == 1009
    assert await codes.receive() == 1009  # the peer was told why


async def test_a_fragmented_message_over_the_limit_is_refused_too(nursery: trio.Nursery) -> None:
    part = TextMessage(data="y" * 400, message_finished=False)
    ws, peer = await connect_to_raw_peer(nursery, part, part, part, TextMessage(data="!"), max_message_size=1000)
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert closed.value.code == 1009
    assert [event.code for event in await peer.receive() if isinstance(event, CloseConnection)] == [1009]


async def test_messages_queued_before_an_oversized_one_are_still_delivered(nursery: trio.Nursery) -> None:
    ws, peer = await connect_to_raw_peer(nursery, max_message_size=1000)
    await peer.send(TextMessage(data="fits"), TextMessage(data="z" * 1001))
    assert await ws.get_message() == "fits"
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert closed.value.code == 1009


async def test_the_first_frame_sent_along_with_the_101_is_not_lost(nursery: trio.Nursery) -> None:
    ws, _ = await connect_to_raw_peer(nursery, TextMessage(data="first"))
    with trio.fail_after(5):
        assert await ws.get_message() == "first"
    await ws.abort(1000, "done")


# --- pings, aborts and endings --------------------------------------------------------------------


async def test_our_ping_returns_once_the_pong_arrives_while_another_task_reads(nursery: trio.Nursery) -> None:
    ws = await connect(await serve_trio_websocket(nursery, close_code_seen_by))

    async def read_until_closed() -> None:
        with contextlib.suppress(WebSocketClosed):
            await ws.get_message()

    async with trio.open_nursery() as readers:
        readers.start_soon(read_until_closed)
        with trio.fail_after(5):
            await ws.ping()
            await ws.ping()
        await ws.aclose()
    assert ws.closed is not None and ws.closed.code == 1000


@pytest.mark.parametrize("blocked_in", ["get_message", "ping"])
async def test_abort_fails_a_blocked_read_or_ping_and_later_sends(nursery: trio.Nursery, blocked_in: str) -> None:
    """No task reads in the ping case, so its pong never gets through."""
    ws, _ = await connect_to_raw_peer(nursery)
    nursery.start_soon(abort_once_blocked, ws)
    with trio.fail_after(5), pytest.raises(WebSocketClosed) as closed:
        await (ws.get_message() if blocked_in == "get_message" else ws.ping())
    assert (closed.value.code, closed.value.reason) == (1006, "keepalive")
    with pytest.raises(WebSocketClosed) as later:
        await ws.send_message("too late")
    assert later.value.code == 1006


async def test_a_dropped_connection_reads_as_1006_and_later_sends_fail(nursery: trio.Nursery) -> None:
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.stream.aclose()
    with trio.fail_after(5), pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert closed.value.code == 1006
    with pytest.raises(WebSocketClosed):
        await ws.send_message("anyone?")


async def test_a_socket_waited_for_after_a_short_read_is_still_aborted_and_dropped(nursery: trio.Nursery) -> None:
    """After a read that emptied the buffer the next read waits for the socket first (``_receive``):
    it still gets the next message, fails at once when aborted, and reads a dropped peer as 1006."""
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.send(TextMessage(data="one"))
    assert await ws.get_message() == "one"  # a short read: the next one waits first
    await peer.send(TextMessage(data="two"))
    assert await ws.get_message() == "two"
    nursery.start_soon(abort_once_blocked, ws)
    with trio.fail_after(5), pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert (closed.value.code, closed.value.reason) == (1006, "keepalive")

    other, far = await connect_to_raw_peer(nursery)
    await far.send(TextMessage(data="hello"))
    assert await other.get_message() == "hello"
    await far.stream.aclose()
    with trio.fail_after(5), pytest.raises(WebSocketClosed) as dropped:
        await other.get_message()
    assert dropped.value.code == 1006


async def test_ping_after_the_connection_dropped_raises_websocket_closed(nursery: trio.Nursery) -> None:
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.stream.aclose()
    with pytest.raises(WebSocketClosed):
        await ws.get_message()
    with pytest.raises(WebSocketClosed) as closed:  # not wsproto's LocalProtocolError
        await ws.ping()
    assert closed.value.code == 1006


async def test_messages_before_the_peers_close_frame_are_delivered_first(nursery: trio.Nursery) -> None:
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.send(TextMessage(data="one"), BytesMessage(data=b"two"), CloseConnection(code=4000, reason="bye"))
    assert await ws.get_message() == "one"
    assert await ws.get_message() == b"two"
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert (closed.value.code, closed.value.reason) == (4000, "bye")
    assert [event.code for event in await peer.receive() if isinstance(event, CloseConnection)] == [4000]


async def test_aclose_does_not_raise_when_the_peer_pings_during_the_closing_handshake(nursery: trio.Nursery) -> None:
    """Once our close frame is out, wsproto refuses to send a pong: the ping must go unanswered."""
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.send(Ping(payload=b"late"), CloseConnection(code=1000))
    with trio.fail_after(5):
        await ws.aclose()
    assert ws.closed is not None and ws.closed.code == 1000


async def test_two_tasks_reading_at_once_share_one_read_and_each_gets_a_message(nursery: trio.Nursery) -> None:
    """One task reads the socket; the other waits for that read and takes the second message it
    brought, rather than reading the stream too (or waiting for a third message that never comes)."""
    ws, peer = await connect_to_raw_peer(nursery)
    got: list[str | bytes] = []
    both = trio.Event()

    async def read() -> None:
        got.append(await ws.get_message())
        if len(got) == 2:
            both.set()

    nursery.start_soon(read)
    nursery.start_soon(read)
    await trio.testing.wait_all_tasks_blocked()  # one in the socket's read, one waiting for it
    await peer.send(TextMessage(data="one"), TextMessage(data="two"))  # one write: one read brings both
    with trio.fail_after(5):
        await both.wait()
    assert sorted(got) == ["one", "two"]  # type: ignore[type-var]


async def test_a_reader_that_comes_back_while_aclose_waits_for_the_close_frame_is_told_closed(
    nursery: trio.Nursery,
) -> None:
    """One task reads between messages; another closes (and so reads, for the peer's close frame):
    the reader waits its turn and then sees the close, instead of two tasks reading one stream."""
    ws, peer = await connect_to_raw_peer(nursery)
    await peer.send(TextMessage(data="one"))
    assert await ws.get_message() == "one"  # the reader is now between two reads
    closing = trio.Event()

    async def close() -> None:
        closing.set()
        await ws.aclose(1000, "done")

    nursery.start_soon(close)
    await closing.wait()
    await trio.testing.wait_all_tasks_blocked()  # aclose is reading, waiting for the peer's close frame
    outcome: list[BaseException] = []
    read = trio.Event()

    async def read_again() -> None:
        try:
            await ws.get_message()
        except Exception as error:  # the test looks at what it was
            outcome.append(error)
        finally:
            read.set()

    nursery.start_soon(read_again)
    await trio.testing.wait_all_tasks_blocked()
    await peer.send(CloseConnection(code=1000, reason="done"))
    with trio.fail_after(5):
        await read.wait()
    assert len(outcome) == 1 and isinstance(outcome[0], WebSocketClosed), outcome


async def test_a_peer_that_is_slow_to_answer_our_close_still_reads_our_code_and_reason(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer keeps sending and reads nothing for ten times the close timeout. Closing the socket
    then would send it a reset, which its next write meets before it reads our close frame (a
    connection lost, 1006). Our end of stream and the frames read and dropped meanwhile let it read
    the close frame once it comes back."""
    monkeypatch.setattr(connection, "CLOSE_TIMEOUT_S", 0.05)
    monkeypatch.setattr(connection, "LINGER_S", 10.0)  # far longer than the peer is slow
    closed = trio.Event()

    async def say_last_words_and_close(request: IncomingRequest) -> None:
        ws = await request.accept()
        await ws.send_message("last words")
        await ws.aclose(1000, "bye")
        closed.set()

    url = await serve_ours(nursery, say_last_words_and_close)
    async with open_websocket_url(url, message_queue_size=0) as peer:

        async def keep_talking() -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await peer.send_message("still talking")
                    await trio.sleep(0.01)

        nursery.start_soon(keep_talking)
        await trio.sleep(10 * connection.CLOSE_TIMEOUT_S)  # slow: reads nothing meanwhile
        assert await peer.get_message() == "last words"
        with pytest.raises(ConnectionClosed) as seen:
            await peer.get_message()
        assert (seen.value.reason.code, seen.value.reason.reason) == (1000, "bye")
    with trio.fail_after(5):
        await closed.wait()  # and the server's side finished too


async def test_a_write_cancelled_halfway_is_finished_before_the_close_frame(nursery: trio.Nursery) -> None:
    """The peer reads nothing while a big message is written, and the write is cancelled with part of
    it in the kernel. What is left goes out first with the next write, so the close frame that
    follows is read as a close frame, not as the rest of the message's payload."""
    ws, peer = await connect_to_raw_peer(nursery)
    big = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the kernel's buffers hold

    async def cancel_once_blocked(scope: trio.CancelScope) -> None:
        await trio.testing.wait_all_tasks_blocked()  # the write waits for the peer to read
        scope.cancel()

    with trio.CancelScope() as writing:
        nursery.start_soon(cancel_once_blocked, writing)
        await ws.send_message(big)
    assert writing.cancelled_caught
    nursery.start_soon(ws.aclose, 1000, "bye")
    received, close = 0, None
    while close is None:
        for event in await peer.receive():
            if isinstance(event, BytesMessage):
                received += len(event.data)
            elif isinstance(event, CloseConnection):
                close = event
                if peer.ws.state is ConnectionState.REMOTE_CLOSING:  # not after the end of the stream
                    await peer.send(event.response())
    assert (received, close.code, close.reason) == (len(big), 1000, "bye")


async def test_aclose_in_a_cancelled_scope_still_sends_the_close_frame_and_closes_the_stream(
    nursery: trio.Nursery,
) -> None:
    """A call closed while its server stops (its scope cancelled): the peer still reads our code and
    reason, not a lost connection (1006), and the stream is closed, not left to a later ``aclose``."""
    ws, peer = await connect_to_raw_peer(nursery)
    with trio.CancelScope() as stopping:
        stopping.cancel()
        await ws.aclose(1001, "the server is stopping")
    assert stopping.cancelled_caught
    assert ws.closed is not None
    events: list[Event] = []
    while not any(isinstance(event, CloseConnection) for event in events):
        events += await peer.receive()
    close = next(event for event in events if isinstance(event, CloseConnection))
    assert (close.code, close.reason) == (1001, "the server is stopping")
    assert await peer.stream.receive_some() == b""  # and then the end of the stream


# --- handshake failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        pytest.param(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\n\r\nforbidden", id="content-length"),
        pytest.param(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\nforbidden", id="body-ends-with-connection"),
    ],
)
async def test_a_403_answer_raises_websocket_rejected_with_status_and_body(
    nursery: trio.Nursery, response: bytes
) -> None:
    async def forbid(stream: trio.SocketStream) -> None:
        await stream.receive_some()  # the request head (one read on loopback)
        await stream.send_all(response)
        await stream.aclose()

    with pytest.raises(WebSocketRejected) as rejected:
        await connect(await serve_raw(nursery, forbid))
    assert (rejected.value.status_code, rejected.value.body) == (403, b"forbidden")


async def test_a_server_that_hangs_up_at_once_is_a_handshake_error(nursery: trio.Nursery) -> None:
    async def hang_up(stream: trio.SocketStream) -> None:
        await stream.aclose()

    with pytest.raises(WebSocketHandshakeError) as failed:
        await connect(await serve_raw(nursery, hang_up))
    assert not isinstance(failed.value, WebSocketRejected)


async def test_a_server_that_never_answers_is_a_handshake_error_after_timeout_s(nursery: trio.Nursery) -> None:
    async def say_nothing(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await trio.sleep_forever()

    url = await serve_raw(nursery, say_nothing)
    with trio.fail_after(5), pytest.raises(WebSocketHandshakeTimeout, match=r"within 0\.2s"):
        await connect(url, timeout_s=0.2)


async def test_a_url_that_is_not_ws_or_wss_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        await connect("http://x")


# --- wss:// ------------------------------------------------------------------------------------


async def serve_ours_over_tls(nursery: trio.Nursery, ca: trustme.CA) -> str:
    """Our server behind TLS with a certificate for 127.0.0.1 from ``ca``, echoing; its ``wss://`` URL."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)

    async def on_stream(stream: trio.SocketStream) -> None:
        with contextlib.suppress(WebSocketHandshakeError, trio.BrokenResourceError):
            await echo(await accept_request(trio.SSLStream(stream, context, server_side=True)))

    return (await serve_raw(nursery, on_stream)).replace("ws://", "wss://")


async def test_wss_round_trips_when_the_servers_certificate_is_trusted(nursery: trio.Nursery) -> None:
    ca = trustme.CA()
    url = await serve_ours_over_tls(nursery, ca)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    ws = await connect(url + "/v1/realtime?model=m", ssl_context=client_context)
    await ws.send_message("over TLS")
    assert await ws.get_message() == "over TLS"
    await ws.aclose()


async def test_wss_to_an_untrusted_certificate_is_a_handshake_error_naming_tls(nursery: trio.Nursery) -> None:
    url = await serve_ours_over_tls(nursery, trustme.CA())
    with pytest.raises(WebSocketHandshakeError) as error:
        await connect(url, timeout_s=5)  # the system's trust store: this CA is not in it
    assert "TLS handshake failed" in str(error.value) and "certificate" in str(error.value)


async def test_wss_sockets_share_one_tls_context_made_once(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every call opens a ``wss://`` socket to the model; making a TLS context loads the certificate
    store (~20 ms in which no call's audio moves), so it is made once, not per socket."""
    ca = trustme.CA()
    url = await serve_ours_over_tls(nursery, ca)
    made: list[ssl.SSLContext] = []
    make = ssl.create_default_context

    def trusting_our_ca(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        context = make(*args, **kwargs)
        ca.configure_trust(context)
        made.append(context)
        return context

    monkeypatch.setattr(ssl, "create_default_context", trusting_our_ca)
    websocket_tls_context.cache_clear()
    try:
        for text in ("one", "two", "three"):
            ws = await connect(url)  # no context given: the process's own, as the model link does
            await ws.send_message(text)
            assert await ws.get_message() == text
            await ws.aclose()
    finally:
        websocket_tls_context.cache_clear()  # the next user makes a real one
    assert len(made) == 1


# --- the fast frame reader (adapters/websocket/frames.py) and wsproto behind it ------------------


async def raw_client_of_our_server(nursery: trio.Nursery) -> tuple[trio.SocketStream, WebSocket]:
    """A TCP client that did the upgrade with wsproto and then writes bytes by hand; our server's socket."""
    sockets_in, sockets_out = trio.open_memory_channel[WebSocket](1)

    async def keep(request: IncomingRequest) -> None:
        await sockets_in.send(await request.accept())
        await trio.sleep_forever()

    url = await serve_ours(nursery, keep)
    stream = await trio.open_tcp_stream("127.0.0.1", int(url.rsplit(":", 1)[1]))
    client = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(client.send(Request(host="127.0.0.1", target="/")))
    response = b""
    while b"\r\n\r\n" not in response:
        response += await stream.receive_some()
    return stream, await sockets_out.receive()


def client_frame(first: int, payload: bytes) -> bytes:
    """A masked client frame (key 1 2 3 4), first byte as given."""
    key = b"\x01\x02\x03\x04"
    return bytes([first, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def test_our_sockets_read_whole_frames_themselves_and_keep_doing_so_past_pings(nursery: trio.Nursery) -> None:
    stream, ws = await raw_client_of_our_server(nursery)
    assert ws.reads_frames_itself  # fails if wsproto's internals moved: the fast path would be off
    whole = client_frame(0x81, b'{"event":"media"}')
    await stream.send_all(whole + client_frame(0x89, b"p") + whole[:5])

    async def finish_the_cut_frame() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(whole[5:] + client_frame(0x82, b"\x00\xff"))

    nursery.start_soon(finish_the_cut_frame)
    assert [await ws.get_message() for _ in range(3)] == ['{"event":"media"}', '{"event":"media"}', b"\x00\xff"]
    assert ws.reads_frames_itself
    pong = await stream.receive_some()
    assert pong[:3] == b"\x8a\x01p"  # the ping was answered (unmasked, by wsproto)
    await ws.abort(1000, "done")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(0x81, b"\xff\xfe"), 1007),  # text that is not UTF-8
        (bytes([0x81, 2]) + b"hi", 1002),  # an unmasked client frame
        (client_frame(0xC1, b"hi"), 1002),  # a reserved bit without an extension
    ],
)
async def test_a_bad_frame_after_good_ones_is_refused_by_wsproto_with_its_code(
    nursery: trio.Nursery, frame: bytes, code: int
) -> None:
    stream, ws = await raw_client_of_our_server(nursery)
    await stream.send_all(client_frame(0x81, b"fine") + frame)
    assert await ws.get_message() == "fine"
    with pytest.raises(WebSocketClosed) as closed:
        await ws.get_message()
    assert closed.value.code == code
    assert not ws.reads_frames_itself
    close = await stream.receive_some()
    assert close[0] == 0x88 and int.from_bytes(close[2:4], "big") == code  # the peer was told why


async def whole_messages_from_server(stream: trio.SocketStream, size: int) -> list[str | bytes | None]:
    """Read ``size`` bytes from our server's socket and cut them into frames, each a whole message."""
    data = b""
    while len(data) < size:
        data += await stream.receive_some()
    texts, pos = [], 0
    while pos < len(data):
        kind, pos, message = frames.next_frame(data, pos, masked=False, max_size=1 << 20)
        assert kind == frames.WHOLE
        texts.append(message)
    return texts


async def test_a_write_cancelled_before_it_starts_still_leaves_the_held_rest_for_the_next(
    nursery: trio.Nursery,
) -> None:
    """``send_now`` left part of a frame held; a write cancelled before anything went out sends none
    of its own message, but what was held still goes first with the next write."""
    stream, ws = await raw_client_of_our_server(nursery)
    big = "x" * 60_000
    results = []
    while SENT_IN_PART not in results:  # the client does not read: the kernel's buffer fills up
        results.append(ws.send_now([big]))
    with trio.CancelScope() as abandoned:
        abandoned.cancel()
        await ws.send_messages(["abandoned"])
    nursery.start_soon(ws.send_messages, ["last"])
    texts = await whole_messages_from_server(stream, len(results) * (4 + 60_000) + 2 + 4)
    assert texts == [big] * len(results) + ["last"]
    await ws.abort(1000, "done")


async def test_send_now_writes_at_once_and_a_part_taken_is_finished_by_the_next_write(nursery: trio.Nursery) -> None:
    stream, ws = await raw_client_of_our_server(nursery)
    assert ws.send_now(["first", "second"]) == SENT
    received = b""
    while len(received) < 2 + 5 + 2 + 6:
        received += await stream.receive_some()
    assert received == b"\x81\x05first\x81\x06second"  # our frames, unmasked from a server
    big = "x" * 60_000
    results = []
    while SENT_IN_PART not in results:  # the client does not read: the kernel's buffer fills up
        results.append(ws.send_now([big]))
        assert results[-1] != NOT_SENT
    assert ws.send_now(["later"]) == NOT_SENT  # nothing overtakes the rest still held

    async def write_the_rest() -> None:
        await ws.send_messages([])  # the rest of the last frame
        await ws.send_messages(["last"])

    nursery.start_soon(write_the_rest)
    texts = await whole_messages_from_server(stream, len(results) * (4 + 60_000) + 2 + 4)
    assert texts == [big] * len(results) + ["last"]
    await ws.abort(1000, "done")
