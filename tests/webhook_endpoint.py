"""An operator's webhook endpoint for the tests: a real HTTP/1.1 server on 127.0.0.1 (h11 over trio).

It keeps every request it received (headers, raw body), counts them by ``webhook-id``, and answers
with what the test says: a fixed status, a list of statuses to play in order, or holding a request
until the test releases it (to kill a server mid-delivery). Tests wait for requests with
:meth:`Endpoint.wait_for` (woken by each request, never by time).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import h11
import trio
from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def message(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Endpoint:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    """Played in order, one per request; then ``status``."""
    status: int = 200
    answer_body: bytes = b'{"ok": true}'
    """What every answer carries (a sender must ignore it, however large)."""
    answer_for: Callable[[Received], int | None] | None = None
    """Decides a request's status first (None: the default rules)."""
    hold: Callable[[Received], bool] | None = None
    """Requests for which this is true wait until :meth:`release` (or forever)."""
    released: trio.Event = field(default_factory=trio.Event)
    held: trio.Event = field(default_factory=trio.Event)
    _changed: trio.Event = field(default_factory=trio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def counts(self) -> Counter[str]:
        return Counter(r.webhook_id for r in self.received)

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.message["type"] == kind]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every message checked by the Standard Webhooks reference library (raises if one fails)."""
        hook = Webhook(secret)
        return [hook.verify(r.body, r.headers) for r in self.received]

    async def wait_for(self, ready: Callable[[Endpoint], bool], timeout_s: float = 30.0) -> None:
        with trio.fail_after(timeout_s):  # a guard against a hang, not a timing assumption
            while not ready(self):
                await self._changed.wait()

    def release(self) -> None:
        self.released.set()

    def _note(self, request: Received) -> None:
        self.received.append(request)
        woken, self._changed = self._changed, trio.Event()
        woken.set()

    async def _status(self, request: Received) -> int:
        if self.hold is not None and self.hold(request):
            self.held.set()
            await self.released.wait()
        if self.answer_for is not None:
            decided = self.answer_for(request)
            if decided is not None:
                return decided
        return self.statuses.pop(0) if self.statuses else self.status

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read(stream, conn)
                if request is None:
                    return
                self._note(request)
                status = await self._status(request)
                body = self.answer_body
                headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
                if 300 <= status < 400:
                    headers.append(("location", "http://169.254.169.254/latest"))
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
                await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return

    @staticmethod
    async def _read(stream: trio.SocketStream, conn: h11.Connection) -> Received | None:
        headers: dict[str, str] = {}
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return Received(headers, body)
            elif isinstance(event, h11.ConnectionClosed):
                return None


@asynccontextmanager
async def webhook_endpoint(**options: Any) -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(**options)
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, endpoint._serve, 0, host="127.0.0.1"))
        endpoint.port = listeners[0].socket.getsockname()[1]
        try:
            yield endpoint
        finally:
            endpoint.release()
            nursery.cancel_scope.cancel()
