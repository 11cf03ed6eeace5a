"""The WebSocket echo servers ``websocket_echo.py`` compares, one per process.

    python benchmarks/websocket_echo_servers.py IMPL     # prints {"port", "stack"}; serves until killed

Each answers every message on ``/echo`` with the same message, nothing else, on 127.0.0.1 and a
free port. IMPL is one of:

- ``adapters`` — ``callbridge.adapters.websocket``: wsproto driven in the task that reads (what
  ``/call`` and the realtime client use);
- ``trio-websocket`` — trio-websocket's server (a reader task and a channel per connection);
- ``quart`` — a Quart (quart-trio) ``@app.websocket`` route served by hypercorn's trio worker
  (what ``/call`` would be as an ordinary route of callbridge's web app);
- ``uvicorn`` — a plain ASGI application on uvicorn (WebSockets by the ``websockets`` package,
  asyncio): the mainstream stack (needs the ``bench`` extra).

Every server keeps Python's default garbage collector settings.
"""

from __future__ import annotations

import json
import socket
import sys
from functools import partial
from typing import Any

import trio

IMPLEMENTATIONS = ("adapters", "trio-websocket", "quart", "uvicorn")


def _ready(port: int, stack: str) -> None:
    print(json.dumps({"port": port, "stack": stack}), flush=True)


async def _adapters() -> None:
    from callbridge.adapters.websocket import WebSocketClosed, WebSocketHandshakeError, accept_request

    async def echo(stream: trio.SocketStream) -> None:
        try:
            ws = await (await accept_request(stream)).accept()
            while True:
                await ws.send_message(await ws.get_message())
        except (WebSocketClosed, WebSocketHandshakeError):
            pass
        finally:
            await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, echo, 0, host="127.0.0.1"))
        _ready(
            listeners[0].socket.getsockname()[1], "callbridge.adapters.websocket (wsproto in the reading task), trio"
        )


async def _trio_websocket() -> None:
    import trio_websocket

    async def echo(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except trio_websocket.ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(trio_websocket.serve_websocket, echo, "127.0.0.1", 0, ssl_context=None))
        _ready(server.port, f"trio-websocket {_version('trio-websocket')}, trio")


async def _quart() -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import websocket
    from quart_trio import QuartTrio

    app = QuartTrio(__name__)

    @app.websocket("/echo")
    async def echo() -> None:
        while True:
            await websocket.send(await websocket.receive())

    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = config.errorlog = None
    config.loglevel = "WARNING"
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config))
        stack = f"hypercorn {_version('hypercorn')} + Quart {_version('quart')} route (quart-trio), trio"
        _ready(int(binds[0].rsplit(":", 1)[1]), stack)


def _uvicorn() -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            if scope["type"] == "http":
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b""})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text"), "bytes": message.get("bytes")})

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)  # before the port is announced: connections wait in the backlog until uvicorn serves
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    config.load()
    protocol = config.ws_protocol_class.__name__ if config.ws_protocol_class else "?"
    _ready(listener.getsockname()[1], f"uvicorn {uvicorn.__version__} ({protocol}), plain ASGI, asyncio")
    try:
        uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn stops gracefully on SIGINT, then raises it again
        pass


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in IMPLEMENTATIONS:
        print(f"usage: websocket_echo_servers.py {{{','.join(IMPLEMENTATIONS)}}}", file=sys.stderr)
        return 2
    if argv[0] == "uvicorn":
        _uvicorn()
    else:
        runs = {"adapters": _adapters, "trio-websocket": _trio_websocket, "quart": _quart}
        trio.run(runs[argv[0]])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
