"""The baseline: the least a Twilio-to-Realtime bridge can do, on the same sockets as callbridge.

``adapters.websocket`` (wsproto driven in the calling task) for the Twilio side and for one model
socket per call — the same sockets, message for message the same traffic as ``callbridge serve``: each caller
``media`` frame becomes one ``input_audio_buffer.append``, each ``response.output_audio.delta`` one
``media`` frame plus one ``mark``. Nothing else: no session setup (the simulated model's default
session already uses server VAD), no recording, no playback accounting, no barge-in, no tools.
What callbridge costs on top of this is what its engine, its store and its listener add.
"""

from __future__ import annotations

import signal
from functools import partial
from typing import Any

import msgspec
import trio

from callbridge.adapters.websocket import WebSocket, WebSocketClosed, WebSocketHandshakeError, accept_request, connect

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def _uplink(twilio: WebSocket, model: WebSocket, started: dict[str, str]) -> None:
    while True:
        message: Any = _decoder.decode(await twilio.get_message())
        event = message.get("event")
        if event == "media":
            append = {"type": "input_audio_buffer.append", "audio": message["media"]["payload"]}
            await model.send_message(_encoder.encode(append).decode())
        elif event == "start":
            started["stream_sid"] = message["streamSid"]
        elif event == "stop":
            return


async def _downlink(twilio: WebSocket, model: WebSocket, started: dict[str, str]) -> None:
    marks = 0
    while True:
        event: Any = _decoder.decode(await model.get_message())
        if event.get("type") == "response.output_audio.delta":
            sid = started.get("stream_sid", "")
            media = {"event": "media", "streamSid": sid, "media": {"payload": event["delta"]}}
            marks += 1
            mark = {"event": "mark", "streamSid": sid, "mark": {"name": f"m{marks}"}}
            await twilio.send_messages([_encoder.encode(media).decode(), _encoder.encode(mark).decode()])


async def _bridge(model_url: str, stream: trio.SocketStream) -> None:
    try:
        await _forward(model_url, stream)
    except* (WebSocketClosed, WebSocketHandshakeError, OSError):
        pass  # one call ended badly; the proxy serves the others


async def _forward(model_url: str, stream: trio.SocketStream) -> None:
    twilio = await (await accept_request(stream)).accept()
    started: dict[str, str] = {}
    try:
        model = await connect(model_url, [(b"Authorization", b"Bearer baseline")])
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_downlink, twilio, model, started)
                await _uplink(twilio, model, started)
                nursery.cancel_scope.cancel()
        finally:
            await model.aclose()
    finally:
        await twilio.aclose()


async def serve_proxy_until_signal(model_url: str) -> None:
    async with trio.open_nursery() as nursery:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        nursery.start_soon(trio.serve_listeners, partial(_bridge, model_url), listeners)
        print(msgspec.json.encode({"port": port}).decode(), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
