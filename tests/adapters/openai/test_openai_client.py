"""The realtime client over real sockets: against the simulated model, a pausable TCP proxy (a peer
that stops answering pings), a peer that sends frames bigger than 1 MiB, and endpoints that
refuse or are not there. Errors must say what to do next and never show the key."""

from __future__ import annotations

import base64
import math
from collections.abc import AsyncIterator

import pytest
import trio
from trio_websocket import WebSocketRequest, serve_websocket

from callbridge.adapters.openai import codec
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.client import open_realtime
from callbridge.adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG, session_update_payload
from callbridge.adapters.sim.fake_openai import FakeOpenAI, serve_fake_openai
from callbridge.adapters.sim.voice import silence, speech

KEY = "sk-test-very-secret-key"


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeOpenAI]:
    handle: FakeOpenAI = await nursery.start(
        lambda task_status: serve_fake_openai(audio_speed=math.inf, task_status=task_status)
    )
    yield handle


async def receive_until(conn: object, cls: type[se.ServerEventBase]) -> list[object]:
    events = []
    while True:
        event = await conn.receive()  # type: ignore[attr-defined]
        events.append(event)
        if isinstance(event, cls):
            return events


async def test_session_update_and_audio_round_trip_against_the_fake(fake: FakeOpenAI) -> None:
    async with open_realtime(fake.url, KEY) as conn:
        assert isinstance(await conn.receive(), se.SessionCreated)
        await conn.send(codec.SessionUpdate(session=session_update_payload(DEFAULT_SESSION_CONFIG)))
        updated = await conn.receive()
        assert isinstance(updated, se.SessionUpdated)
        assert updated.session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        audio = speech(800) + silence(700)
        for start in range(0, len(audio), 160):
            await conn.send_raw(codec.encode_append(base64.b64encode(audio[start : start + 160]).decode()))
        events = await receive_until(conn, se.ResponseDone)
    assert isinstance(events[0], se.InputAudioBufferSpeechStarted)
    assert any(isinstance(e, se.ResponseFunctionCallArgumentsDone) for e in events)
    record = fake.sessions[0]
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert "openai-beta" not in record.headers
    assert record.path == "/v1/realtime?model=gpt-realtime"


async def test_receive_raw_gives_the_frame_verbatim(fake: FakeOpenAI) -> None:
    async with open_realtime(fake.url, KEY) as conn:
        raw = await conn.receive_raw()
    assert raw == fake.sessions[0].server_events[0].raw
    assert isinstance(codec.decode_server(raw), se.SessionCreated)


async def test_receive_raises_connection_closed_when_the_peer_drops(fake: FakeOpenAI) -> None:
    async with open_realtime(fake.url, KEY) as conn:
        await conn.receive()
        await fake.drop_all()
        with pytest.raises(RealtimeConnectionClosed) as closed:
            await conn.receive()
        assert closed.value.code == 1006
        assert conn.closed
        with pytest.raises(RealtimeConnectionClosed):
            await conn.send(codec.ResponseCreate())


async def test_close_ends_the_socket_and_later_calls_raise(fake: FakeOpenAI) -> None:
    async with open_realtime(fake.url, KEY) as conn:
        await conn.receive()
        await conn.close()
        with pytest.raises(RealtimeConnectionClosed):
            await conn.receive()
    await fake.sessions[0].closed.wait()
    assert fake.sessions[0].close_code == 1000


async def test_errors_inside_the_block_pass_through_unwrapped(fake: FakeOpenAI) -> None:
    with pytest.raises(KeyError):
        async with open_realtime(fake.url, KEY) as conn:
            await conn.receive()
            raise KeyError("engine bug")


# --- keepalive ---------------------------------------------------------------------------------


class PausableProxy:
    """Forwards TCP both ways until paused; then holds every byte (a peer gone silent)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.running = trio.Event()
        self.running.set()
        self.port = 0

    def pause(self) -> None:
        self.running = trio.Event()

    async def _pump(self, source: trio.abc.Stream, sink: trio.abc.Stream) -> None:
        try:
            while data := await source.receive_some(65536):
                await self.running.wait()
                await sink.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream)
            nursery.start_soon(self._pump, upstream, client)

    async def serve(self, *, task_status: trio.TaskStatus[PausableProxy] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)


async def test_keepalive_detects_a_peer_that_stops_answering(fake: FakeOpenAI, nursery: trio.Nursery) -> None:
    proxy: PausableProxy = await nursery.start(PausableProxy(fake.port).serve)
    url = fake.url.replace(f":{fake.port}/", f":{proxy.port}/")
    async with open_realtime(url, KEY, ping_interval=0.05, ping_timeout=0.2, close_timeout=0.2) as conn:
        assert isinstance(await conn.receive(), se.SessionCreated)
        proxy.pause()
        with trio.fail_after(10):  # a guard against hanging, not a timing assertion
            with pytest.raises(RealtimeConnectionClosed) as closed:
                await conn.receive()
    assert closed.value.code == 1006
    assert "keepalive" in closed.value.reason


async def test_keepalive_keeps_a_quiet_healthy_connection_open(fake: FakeOpenAI) -> None:
    async with open_realtime(fake.url, KEY, ping_interval=0.01, ping_timeout=5) as conn:
        assert isinstance(await conn.receive(), se.SessionCreated)
        with trio.fail_after(10):
            while conn.pongs < 3:  # keep the socket busy until three pings were answered
                await conn.send(codec.InputAudioBufferClear())
                assert isinstance(await conn.receive(), se.InputAudioBufferCleared)
        assert not conn.closed


# --- large frames and failures to connect ------------------------------------------------------


async def test_frames_over_one_mebibyte_are_accepted(nursery: trio.Nursery) -> None:
    big = codec.encode_server(
        se.ResponseOutputAudioDelta(
            event_id="e", response_id="r", item_id="i", output_index=0, content_index=0, delta="A" * (3 * 2**20)
        )
    )

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message(big)
        await ws.get_message()

    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    async with open_realtime(f"ws://127.0.0.1:{server.port}/v1/realtime", KEY) as conn:
        event = await conn.receive()
    assert isinstance(event, se.ResponseOutputAudioDelta) and len(event.delta) == 3 * 2**20


async def test_rejected_key_says_what_to_do_and_hides_the_key(nursery: trio.Nursery) -> None:
    strict: FakeOpenAI = await nursery.start(
        lambda task_status: serve_fake_openai(api_key="sk-the-right-one", task_status=task_status)
    )
    with pytest.raises(RealtimeConnectError) as error:
        async with open_realtime(strict.url, KEY):
            pass
    assert "OPENAI_API_KEY was rejected" in str(error.value)
    assert error.value.status == 401 and not error.value.retryable
    assert KEY not in str(error.value) and KEY not in repr(error.value)


async def test_missing_key_is_rejected_too(fake: FakeOpenAI) -> None:
    with pytest.raises(RealtimeConnectError) as error:
        async with open_realtime(fake.url, None):
            pass
    assert error.value.status == 401


async def test_connection_refused_is_retryable_and_names_the_setting() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    await listeners[0].aclose()  # nothing listens there any more
    with pytest.raises(RealtimeConnectError) as error:
        async with open_realtime(f"ws://127.0.0.1:{port}/v1/realtime", KEY):
            pass
    assert "OPENAI_REALTIME_URL" in str(error.value)
    assert error.value.retryable and error.value.status is None


async def test_malformed_url_is_not_retryable() -> None:
    with pytest.raises(RealtimeConnectError) as error:
        async with open_realtime("https://user:pw@example.com/v1/realtime", KEY):
            pass
    assert not error.value.retryable
    assert "pw" not in str(error.value)


async def test_an_endpoint_that_never_answers_the_upgrade_is_a_retryable_timeout(nursery: trio.Nursery) -> None:
    async def say_nothing(stream: trio.SocketStream) -> None:
        await stream.receive_some()
        await trio.sleep_forever()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    await nursery.start(trio.serve_listeners, say_nothing, listeners)
    url = f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/v1/realtime"
    with trio.fail_after(5), pytest.raises(RealtimeConnectError) as error:  # fail_after: a hang guard
        async with open_realtime(url, KEY, connect_timeout=0.2):
            pass
    assert "no answer from the realtime endpoint" in str(error.value) and "within 0.2s" in str(error.value)
    assert error.value.retryable and KEY not in str(error.value)
