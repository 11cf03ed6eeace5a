"""The simulated realtime model: a WebSocket server speaking the OpenAI Realtime GA protocol.

Used by the tests, the benchmark and the offline demo (``serve --model sim``,
``callbridge fake-openai``). This module is only the socket edge: the handshake checks
(``Authorization: Bearer …`` required, 401 otherwise; an ``OpenAI-Beta`` header gets
``beta_api_shape_disabled`` and close 4000), one reader, one writer and one streaming task per
response. What the model says and when is decided by ``FakeRealtimeSession`` (sans-IO).

Pacing: response audio goes out in ~100 ms chunks at ``audio_speed`` times real time (2 by default,
like the real model, so Twilio buffers and barge-in has something to cut). ``math.inf`` streams
as fast as the socket takes it.

Test handle (``task_status.started`` value): ``.port``, ``.url``, ``.sessions`` (one
``SessionRecord`` per connection, with every client event received and server event sent),
``wait_for_session(n)``, ``drop_all()`` (abruptly closes every live TCP connection, no close frame:
for reconnect tests).
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import weakref
from functools import partial
from typing import Any, cast

import msgspec
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, WebSocketServer

from callbridge.adapters.openai.client_events import UnknownClientEvent
from callbridge.adapters.openai.codec import RealtimeProtocolError, decode_client, encode_server
from callbridge.adapters.openai.server_events import ServerEventBase
from callbridge.adapters.sim import voice
from callbridge.adapters.sim.fake_openai_conversation import Ids
from callbridge.adapters.sim.fake_openai_records import SessionRecord
from callbridge.adapters.sim.fake_openai_response import ResponseRun
from callbridge.adapters.sim.fake_openai_script import DEFAULT_SCRIPT, Script, ScriptError, load_script
from callbridge.adapters.sim.fake_openai_session import FakeRealtimeSession, Reaction
from callbridge.adapters.sim.fake_openai_vad import RMS_AT_THRESHOLD_HALF

logger = logging.getLogger(__name__)

MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class FakeOpenAIOptions(msgspec.Struct, frozen=True, kw_only=True):
    script: Script = DEFAULT_SCRIPT
    api_key: str | None = None
    """When set, only this bearer token is accepted; otherwise any non-empty one."""
    expire_after_s: float | None = 3600.0
    """Send ``session_expired`` and close 1001 after this long, like the real 60-minute cap
    (None: never)."""
    audio_speed: float = 2.0
    response_latency_s: float = 0.0
    """Delay before a response's first audio chunk (the real model takes a few hundred ms)."""
    vad_rms_scale: float = RMS_AT_THRESHOLD_HALF
    model: str = "gpt-realtime"


class _Close(msgspec.Struct, frozen=True):
    code: int
    reason: str


class _TrackingListener(trio.abc.Listener[trio.SocketStream]):
    """A TCP listener that remembers its live streams so ``drop_all`` can cut them."""

    def __init__(self, inner: trio.SocketListener) -> None:
        self.inner = inner
        self.streams: weakref.WeakSet[trio.SocketStream] = weakref.WeakSet()

    async def accept(self) -> trio.SocketStream:
        stream = await self.inner.accept()
        self.streams.add(stream)
        return stream

    async def aclose(self) -> None:
        await self.inner.aclose()


def _redacted_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "authorization":
            text = "Bearer <redacted>" if text.startswith("Bearer ") and text[7:].strip() else "<malformed>"
        headers[key] = text
    return headers


def _event_type(event: Any) -> str:
    """The wire ``type`` of a codec struct (typed events carry it as their tag)."""
    if isinstance(event, UnknownClientEvent):
        return event.type
    return str(event.__struct_config__.tag)


def _error_body(message: str, code: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "code": code, "param": None}
    return msgspec.json.encode({"error": error})


class FakeOpenAI:
    """One running simulated model (the handle tests get from ``serve_fake_openai``)."""

    def __init__(self, options: FakeOpenAIOptions, host: str) -> None:
        self.options = options
        self.host = host
        self.port = 0
        self.sessions: list[SessionRecord] = []
        self._listeners: list[_TrackingListener] = []
        self._new_session = trio.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}/v1/realtime?model={self.options.model}"

    async def wait_for_session(self, count: int = 1) -> SessionRecord:
        """Wait until ``count`` sessions have connected; returns the ``count``-th."""
        while len(self.sessions) < count:
            await self._new_session.wait()
        return self.sessions[count - 1]

    async def drop_all(self) -> None:
        """Abruptly close every live connection (TCP close, no WebSocket close frame)."""
        for listener in self._listeners:
            for stream in list(listener.streams):
                await stream.aclose()

    # --- per connection -----------------------------------------------------------------------

    async def handle(self, request: WebSocketRequest) -> None:
        """trio-websocket handler. Never raises: an exception here would stop the whole server."""
        try:
            await self._handle(request)
        except Exception:
            logger.exception("simulated model: session crashed")

    async def _handle(self, request: WebSocketRequest) -> None:
        headers = _redacted_headers(list(request.headers))
        if not request.path.split("?")[0].endswith("/realtime"):
            body = _error_body(f"Invalid URL (GET {request.path})", "not_found")
            await request.reject(404, extra_headers=[(b"content-type", b"application/json")], body=body)
            return
        if not self._authorized(request.headers):
            body = _error_body("Incorrect API key provided. You can find your API key at "
                               "https://platform.openai.com/account/api-keys.", "invalid_api_key")  # fmt: skip
            await request.reject(401, extra_headers=[(b"content-type", b"application/json")], body=body)
            return
        ws = await request.accept()
        record = SessionRecord(len(self.sessions), request.path, headers)
        self.sessions.append(record)
        self._new_session.set()
        self._new_session = trio.Event()
        session = FakeRealtimeSession(
            script=self.options.script, ids=Ids(), model=self.options.model, rms_scale=self.options.vad_rms_scale
        )
        outbox_send, outbox_receive = trio.open_memory_channel[ServerEventBase | _Close](math.inf)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, outbox_receive, record, nursery.cancel_scope)
                if "openai-beta" in headers:
                    self._dispatch(session.beta_rejection(), session, outbox_send, nursery)
                else:
                    for event in session.opening():
                        outbox_send.send_nowait(event)
                if self.options.expire_after_s is not None:
                    nursery.start_soon(self._expire, session, outbox_send, nursery)
                await self._reader(ws, session, record, outbox_send, nursery)
        finally:
            if not record.closed.is_set():
                closed = ws.closed
                record.ended(int(closed.code) if closed else None, (closed.reason or "") if closed else "")

    def _authorized(self, raw_headers: list[tuple[bytes, bytes]]) -> bool:
        for name, value in raw_headers:
            if name.lower() == b"authorization":
                text = value.decode("latin-1")
                if not text.startswith("Bearer ") or not text[7:].strip():
                    return False
                return self.options.api_key is None or text[7:].strip() == self.options.api_key
        return False

    async def _reader(
        self,
        ws: WebSocketConnection,
        session: FakeRealtimeSession,
        record: SessionRecord,
        outbox: trio.MemorySendChannel[Any],
        nursery: trio.Nursery,
    ) -> None:
        while True:
            try:
                message = await ws.get_message()
            except ConnectionClosed as exc:
                reason = exc.reason
                record.ended(int(reason.code) if reason else None, (reason.reason or "") if reason else "")
                nursery.cancel_scope.cancel()
                return
            text = message if isinstance(message, str) else message.decode("utf-8", errors="replace")
            try:
                event = decode_client(message)
            except RealtimeProtocolError as exc:
                record.received(text, None, "")
                self._dispatch(session.reject_frame(str(exc)), session, outbox, nursery)
                continue
            record.received(text, event, _event_type(event))
            self._dispatch(session.handle(event), session, outbox, nursery)

    def _dispatch(
        self,
        reaction: Reaction,
        session: FakeRealtimeSession,
        outbox: trio.MemorySendChannel[Any],
        nursery: trio.Nursery,
    ) -> None:
        for event in reaction.events:
            outbox.send_nowait(event)
        if reaction.started is not None:
            nursery.start_soon(self._stream, reaction.started, session, outbox)
        if reaction.close is not None:
            outbox.send_nowait(_Close(*reaction.close))

    async def _stream(
        self, run: ResponseRun, session: FakeRealtimeSession, outbox: trio.MemorySendChannel[Any]
    ) -> None:
        """Step ``run`` at the configured pace until it ends (or a barge-in ends it)."""
        speed = self.options.audio_speed
        start = trio.current_time() + self.options.response_latency_s
        if self.options.response_latency_s:
            await trio.sleep_until(start)
        streamed_ms = 0
        while True:
            step = session.advance(run)
            if step is None:
                return
            events, audio_ms = step
            for event in events:
                outbox.send_nowait(event)
            streamed_ms += audio_ms
            if math.isinf(speed) or not audio_ms:
                await trio.lowlevel.checkpoint()
            else:
                await trio.sleep_until(start + streamed_ms / 1000 / speed)

    async def _expire(
        self, session: FakeRealtimeSession, outbox: trio.MemorySendChannel[Any], nursery: trio.Nursery
    ) -> None:
        assert self.options.expire_after_s is not None
        await trio.sleep(self.options.expire_after_s)
        self._dispatch(session.expire(), session, outbox, nursery)

    async def _writer(
        self,
        ws: WebSocketConnection,
        outbox: trio.MemoryReceiveChannel[Any],
        record: SessionRecord,
        scope: trio.CancelScope,
    ) -> None:
        try:
            async for item in outbox:
                if isinstance(item, _Close):
                    with trio.move_on_after(2):
                        await ws.aclose(item.code, item.reason)
                    record.ended(item.code, item.reason)
                    break
                text = encode_server(item)
                record.sent(text, _event_type(item))  # before the await: a test may read it first
                await ws.send_message(text)
        except ConnectionClosed:
            pass
        scope.cancel()


async def serve_fake_openai(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    script: Script | None = None,
    api_key: str | None = None,
    expire_after_s: float | None = None,
    audio_speed: float | None = None,
    response_latency_s: float | None = None,
    options: FakeOpenAIOptions | None = None,
    task_status: trio.TaskStatus[FakeOpenAI] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the simulated model until cancelled. ``task_status.started`` gets the ``FakeOpenAI``
    handle (``.port``, ``.url``, ``.sessions``, ``drop_all()``). Keyword arguments override the
    matching ``FakeOpenAIOptions`` fields (see there for what each means)."""
    given = {
        "script": script,
        "api_key": api_key,
        "expire_after_s": expire_after_s,
        "audio_speed": audio_speed,
        "response_latency_s": response_latency_s,
    }
    opts = msgspec.structs.replace(options or FakeOpenAIOptions(), **{k: v for k, v in given.items() if v is not None})
    fake = FakeOpenAI(opts, host)
    voice.warm_up()
    inner = await trio.open_tcp_listeners(port, host=host)
    if port == 0:  # several address families would each get a different port: keep one
        for extra in inner[1:]:
            await extra.aclose()
        inner = inner[:1]
    fake._listeners = [_TrackingListener(listener) for listener in inner]
    fake.port = inner[0].socket.getsockname()[1]
    server = WebSocketServer(
        fake.handle,
        cast(Any, fake._listeners),
        max_message_size=MAX_MESSAGE_SIZE,
        connect_timeout=10,
        disconnect_timeout=1,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(fake)


def run_fake_openai_cli(host: str = "127.0.0.1", port: int = 8090, script_path: str | None = None) -> int:
    """``callbridge fake-openai``: serve until SIGINT/SIGTERM; returns the process exit code."""
    try:
        script = load_script(script_path) if script_path else None
    except ScriptError as error:
        print(f"callbridge fake-openai: {error}", file=sys.stderr)
        return 2

    failures: list[OSError] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                fake: FakeOpenAI = await nursery.start(partial(serve_fake_openai, host, port, script=script))
            except OSError as error:
                failures.append(error)
                return
            print(f"simulated realtime model listening on {fake.url} (any bearer token is accepted)", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    if failures:
        print(f"callbridge fake-openai: cannot listen on {host}:{port}: {failures[0]}", file=sys.stderr)
        return 1
    return 0
