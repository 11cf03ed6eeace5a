"""The baseline: the least a Twilio-to-Realtime bridge can do, on the same sockets as callbridge.

One trio-websocket server for the Twilio side, one trio-websocket client per call to the model —
the same libraries, message for message the same traffic as ``callbridge serve``: each caller
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
from trio_websocket import ConnectionClosed, WebSocketConnection, WebSocketRequest, open_websocket_url, serve_websocket

_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


async def _uplink(twilio: WebSocketConnection, model: WebSocketConnection, started: dict[str, str]) -> None:
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


async def _downlink(twilio: WebSocketConnection, model: WebSocketConnection, started: dict[str, str]) -> None:
    marks = 0
    while True:
        event: Any = _decoder.decode(await model.get_message())
        if event.get("type") == "response.output_audio.delta":
            sid = started.get("stream_sid", "")
            media = {"event": "media", "streamSid": sid, "media": {"payload": event["delta"]}}
            await twilio.send_message(_encoder.encode(media).decode())
            marks += 1
            mark = {"event": "mark", "streamSid": sid, "mark": {"name": f"m{marks}"}}
            await twilio.send_message(_encoder.encode(mark).decode())


async def _bridge(model_url: str, request: WebSocketRequest) -> None:
    twilio = await request.accept()
    started: dict[str, str] = {}
    try:
        headers = [(b"Authorization", b"Bearer baseline")]
        async with open_websocket_url(model_url, extra_headers=headers) as model, trio.open_nursery() as nursery:
            nursery.start_soon(_downlink, twilio, model, started)
            await _uplink(twilio, model, started)
            nursery.cancel_scope.cancel()
    except ConnectionClosed:
        pass


async def serve_proxy_until_signal(model_url: str) -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_websocket, partial(_bridge, model_url), "127.0.0.1", 0, None))
        print(msgspec.json.encode({"port": server.port}).decode(), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
