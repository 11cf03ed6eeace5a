"""The mainstream baseline: a Twilio-to-Realtime forwarder on the stack most Python bridges use.

    python benchmarks/mainstream_bridge.py MODEL_URL     # prints {"port", "stack"}, serves until SIGINT

Modelled on Twilio's official Python sample (speech-assistant-openai-realtime-api-python: FastAPI
on uvicorn, the ``websockets`` client to the model), message for message the same traffic as
``callbridge serve``, and recording nothing:

- ``POST /twiml`` answers ``<Connect><Stream url="ws://HOST/call">`` (built with the twilio
  library, as the sample does);
- ``/call`` accepts the media stream, opens the model socket and sends a ``session.update``
  (μ-law both ways, server VAD); then, per Twilio frame read, it awaits the send of one
  ``input_audio_buffer.append`` (stdlib ``json``, as the sample); per
  ``response.output_audio.delta`` it sends one ``media`` and then one ``mark``; on
  ``input_audio_buffer.speech_started`` during a reply it sends the model a
  ``conversation.item.truncate`` and Twilio a ``clear``.

Where it differs from the sample, it is only cheaper, so the baseline is a strict one: a plain
ASGI application instead of FastAPI/Starlette's wrappers (a few µs per message), no per-event
``print``, and each delta's base64 forwarded as it is (the sample decodes and re-encodes it).
The ASGI server is uvicorn with its defaults: HTTP by h11, WebSockets by the ``websockets``
package, the asyncio event loop (uvloop when it happens to be installed; the ``stack`` line says
which).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from typing import Any

import uvicorn
from twilio.twiml.voice_response import Connect, VoiceResponse
from websockets.asyncio.client import ClientConnection, connect

Scope = dict[str, Any]
Receive = Any
Send = Any

SESSION_UPDATE = {
    "type": "session.update",
    "session": {
        "type": "realtime",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "audio": {
            "input": {"format": {"type": "audio/pcmu"}, "turn_detection": {"type": "server_vad"}},
            "output": {"format": {"type": "audio/pcmu"}},
        },
        "instructions": "You are a helpful assistant on the phone.",
    },
}


class MainstreamBridge:
    """The ASGI application: ``/twiml`` and ``/call``; anything else is 404."""

    def __init__(self, model_url: str) -> None:
        self.model_url = model_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/twiml":
            await self.twiml(scope, receive, send)
        elif scope["type"] == "websocket" and scope["path"] == "/call":
            await self.media_stream(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def twiml(self, scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass  # the webhook form is not needed
        host = dict(scope["headers"]).get(b"host", b"127.0.0.1").decode("latin-1")
        response = VoiceResponse()
        connect_verb = Connect()
        connect_verb.stream(url=f"ws://{host}/call")
        response.append(connect_verb)
        body = str(response).encode()
        headers = [(b"content-type", b"application/xml"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def media_stream(self, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        headers = {"Authorization": "Bearer mainstream"}
        async with connect(self.model_url, additional_headers=headers, proxy=None) as model:
            await model.send(json.dumps(SESSION_UPDATE))
            await Call(receive, send, model).run()


class Call:
    """One bridged call: the sample's two loops and the state they share."""

    def __init__(self, receive: Receive, send: Send, model: ClientConnection) -> None:
        self.receive = receive
        self.send = send
        self.model = model
        self.stream_sid: str | None = None
        self.last_assistant_item: str | None = None
        self.marks_pending: list[str] = []
        self.latest_media_ms = 0
        self.reply_started_ms: int | None = None

    async def run(self) -> None:
        await asyncio.gather(self.from_twilio(), self.to_twilio())

    async def send_twilio(self, message: dict[str, Any]) -> None:
        await self.send({"type": "websocket.send", "text": json.dumps(message, separators=(",", ":"))})

    async def from_twilio(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = json.loads(message["text"])
            event = data["event"]
            if event == "media":
                self.latest_media_ms = int(data["media"]["timestamp"])
                append = {"type": "input_audio_buffer.append", "audio": data["media"]["payload"]}
                await self.model.send(json.dumps(append))
            elif event == "start":
                self.stream_sid = data["start"]["streamSid"]
            elif event == "mark" and self.marks_pending:
                self.marks_pending.pop(0)
        await self.model.close()

    async def to_twilio(self) -> None:
        try:
            async for raw in self.model:
                event = json.loads(raw)
                kind = event.get("type")
                if kind == "response.output_audio.delta" and "delta" in event:
                    await self.send_twilio(
                        {"event": "media", "streamSid": self.stream_sid, "media": {"payload": event["delta"]}}
                    )
                    item = event.get("item_id")
                    if item and item != self.last_assistant_item:
                        self.reply_started_ms, self.last_assistant_item = self.latest_media_ms, item
                    await self.send_twilio({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": "part"}})
                    self.marks_pending.append("part")
                elif kind == "input_audio_buffer.speech_started" and self.last_assistant_item:
                    await self.interrupt()
        except Exception as error:  # the sample's catch-all: one call's failure is printed, not raised
            print(f"mainstream bridge: call ended with {type(error).__name__}: {error}", file=sys.stderr)

    async def interrupt(self) -> None:
        """The sample's barge-in: cut the reply at what Twilio's clock says was played, clear."""
        if self.marks_pending and self.reply_started_ms is not None:
            truncate = {"type": "conversation.item.truncate", "item_id": self.last_assistant_item,
                        "content_index": 0, "audio_end_ms": self.latest_media_ms - self.reply_started_ms}  # fmt: skip
            await self.model.send(json.dumps(truncate))
            await self.send_twilio({"event": "clear", "streamSid": self.stream_sid})
            self.marks_pending.clear()
            self.last_assistant_item = self.reply_started_ms = None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: mainstream_bridge.py MODEL_URL", file=sys.stderr)
        return 2
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)  # before the port is announced: connections wait in the backlog until uvicorn serves
    config = uvicorn.Config(MainstreamBridge(argv[0]), log_level="warning", lifespan="off")
    config.load()
    stack = {
        "uvicorn": uvicorn.__version__,
        "websocket": config.ws_protocol_class.__name__ if config.ws_protocol_class else None,
        "loop": "uvloop" if _has("uvloop") else "asyncio",
    }
    print(json.dumps({"port": listener.getsockname()[1], "stack": stack}), flush=True)
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on SIGINT, then raises it again
        pass
    return 0


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
