"""``/mcp``: the MCP server over streamable HTTP, in the same hypercorn server as the console.

Why this shape:

- **One ASGI app in front** (:meth:`McpHttp.wrap`): requests for ``/mcp`` go to the SDK's
  Starlette app, everything else (and the lifespan) to Quart. The SDK's session manager needs a
  running task group; :meth:`McpHttp.run` provides it from the server's services nursery (the
  lifespan is Quart's alone, so Starlette's would never start it).
- **Behind the API token**: a request without ``Authorization: Bearer TOKEN`` is answered 401
  before the SDK sees it. Only the header counts (no cookie, no ``?token=``): MCP clients are
  programs, and a browser's ambient cookie must not reach a cross-origin MCP endpoint.
- **Allowed hosts from ``PUBLIC_URL``**: the SDK's DNS-rebinding protection accepts only the
  public URL's host and 127.0.0.1/localhost on the bound port (421 otherwise), and browser
  origins likewise (403). :meth:`McpHttp.allow` updates them once the real port is known.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from callbridge.adapters.http_security import allowed_hosts_and_origins, bearer_token, same_secret

MCP_PATH = "/mcp"
UNAUTHORIZED_MESSAGE = (
    "missing or invalid API token: send 'Authorization: Bearer TOKEN' (the token is CALLBRIDGE_API_TOKEN, "
    "or the one printed at first start and kept in the data folder's 'api-token' file)"
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _send_unauthorized(send: Send) -> None:
    body = json.dumps({"error": UNAUTHORIZED_MESSAGE}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="callbridge"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def is_mcp_path(path: str) -> bool:
    return path == MCP_PATH or path.startswith(MCP_PATH + "/")


class McpHttp:
    """The streamable HTTP face of an MCP server, gated by the API token."""

    def __init__(self, mcp: MCPServer, *, token: Callable[[], str], public_url: str, port: int | None) -> None:
        self._token = token
        self.security = TransportSecuritySettings(enable_dns_rebinding_protection=True)
        self.allow(public_url, port)
        self.app: ASGIApp = mcp.streamable_http_app(streamable_http_path=MCP_PATH, transport_security=self.security)
        self._manager = mcp.session_manager

    def allow(self, public_url: str, port: int | None) -> None:
        """Accept ``public_url``'s host and loopback on ``port`` (in place: the SDK holds the lists)."""
        hosts, origins = allowed_hosts_and_origins(public_url, port)
        self.security.allowed_hosts[:] = hosts
        self.security.allowed_origins[:] = origins

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ``/mcp`` endpoint: 401 without the token, else the SDK's app."""
        token = self._token()
        sent = bearer_token(_header(scope, b"authorization"))
        if not token or sent is None or not same_secret(sent, token):
            await _send_unauthorized(send)
            return
        await self.app(scope, receive, send)

    def wrap(self, other: Callable[..., Awaitable[None]]) -> ASGIApp:
        """An ASGI app sending HTTP requests for ``/mcp`` here and everything else to ``other``."""

        async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and is_mcp_path(scope.get("path", "")):
                await self.handle(scope, receive, send)
            else:
                await other(scope, receive, send)

        return dispatch

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the SDK's session manager (every MCP session lives in it) until cancelled.

        Start it before the first request can arrive and cancel it after the front has stopped:
        an MCP client's open event stream then ends with its connection, within hypercorn's
        graceful timeout, like any other long-lived request.
        """
        async with self._manager.run():
            task_status.started()
            await trio.sleep_forever()
