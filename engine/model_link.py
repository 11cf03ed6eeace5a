"""A call's link to the realtime model: each session the core asks for, opened, served and lost.

The core (``engine/call_core.py``) decides when a session opens (at the start, after a loss, a
recycled one beside the current before the model's 60-minute cap) and when one closes. This is the
I/O of that, one job with its own state, carried by the call's actor (``engine/call.py``):

- a session is opened when asked (after the delay the core gave), and ``ModelSessionOpened`` fed back;
- its reader turns each server frame into a core input (a malformed one is recorded and skipped);
- its writer sends what waits in its ``Outlet`` — caller audio capped at 100 ms
  (:data:`UPLINK_MAX_FRAMES`), dropped oldest-first and reported (``CallerFramesDropped``);
- its loss (the socket closed, a connection refused) is fed back as ``ModelSessionLost``; anything
  else is a bug and propagates to the call's supervisor.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.openai.errors import RealtimeConnectError
from callbridge.adapters.websocket import WebSocketClosed
from callbridge.engine.call_io import (
    CallerFramesDropped,
    Input,
    ModelFrameInvalid,
    ModelServerEvent,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
)
from callbridge.engine.context import ModelConnection
from callbridge.engine.outlet import Outlet, SendNow

UPLINK_MAX_FRAMES = 5
"""Caller audio waiting for the model socket: 5 frames = 100 ms; older frames are dropped beyond it."""

LinkFailure = (WebSocketClosed, RealtimeConnectError)


class ModelLink:
    """The model sessions of one call. ``feed`` is the call's way into its core."""

    def __init__(
        self, open_model: Callable[[], AbstractAsyncContextManager[Any]], feed: Callable[[Input], None]
    ) -> None:
        self.open_model = open_model
        self.feed = feed
        self.outlets: dict[int, Outlet] = {}
        """What waits for each open session's socket (caller audio capped at 100 ms)."""
        self.send_now: dict[int, SendNow] = {}
        """Each open session's ``send_now``, when its connection has one (a plain socket may take a
        frame at once, without waking the writer: ``engine/outlet.py``)."""
        self._requests: list[OpenModelSession] = []
        self._wake = trio.Event()
        self._unreported_drops = 0
        """Caller frames the uplink dropped on sessions that ended before their writer reported them."""
        self._scopes: dict[int, trio.CancelScope] = {}

    def open(self, request: OpenModelSession) -> None:
        """Open the session ``request`` names (when :meth:`run` gets to it)."""
        self._requests.append(request)
        self._wake.set()

    def close(self, session: int) -> None:
        """Close ``session``, or forget the request to open it."""
        self._requests = [r for r in self._requests if r.session != session]
        scope = self._scopes.get(session)
        if scope is not None:
            scope.cancel()

    def forget_all(self) -> None:
        """After :meth:`run` crashed: no session is open or about to be."""
        self._requests.clear()
        for session in list(self.outlets):
            self._forget(session)

    async def run(self) -> None:
        """Open each session asked for (a recycled one beside the current), serve it until it is lost
        or closed, and say when it is lost."""
        async with trio.open_nursery() as sessions:
            while True:
                while not self._requests:
                    self._wake = trio.Event()
                    await self._wake.wait()
                request = self._requests.pop(0)
                scope = trio.CancelScope()
                self._scopes[request.session] = scope
                sessions.start_soon(self._serve, request, scope)

    async def _serve(self, request: OpenModelSession, scope: trio.CancelScope) -> None:
        session = request.session
        connected = False
        outlet = Outlet(max_audio=UPLINK_MAX_FRAMES)
        with scope:
            try:
                await trio.sleep(request.delay_s)
                async with self.open_model() as conn:
                    connected = True
                    self.outlets[session] = outlet
                    send_now = getattr(conn, "send_now", None)
                    if send_now is not None:
                        self.send_now[session] = send_now
                    self.feed(ModelSessionOpened(session=session))
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._write, conn, outlet)
                        await self._read(conn, session)
            except (WebSocketClosed, RealtimeConnectError, ExceptionGroup) as raised:
                error = _link_failure(raised)
                self._forget(session)
                dropped = self.take_unreported_drops()  # the call goes on: record them now
                if dropped is not None:
                    self.feed(dropped)
                self.feed(_session_lost(session, connected, error))
                return
            finally:
                self._forget(session)

    def take_unreported_drops(self) -> CallerFramesDropped | None:
        """Caller frames dropped on the way to a session that ended (the call's end, a session closed)
        before its writer reported them, to record; None when there are none."""
        dropped, self._unreported_drops = self._unreported_drops, 0
        return _dropped(dropped)

    def _forget(self, session: int) -> None:
        outlet = self.outlets.pop(session, None)
        self.send_now.pop(session, None)
        if outlet is not None:
            self._unreported_drops += outlet.take_dropped()
            outlet.clear()
        self._scopes.pop(session, None)

    async def _read(self, conn: ModelConnection, session: int) -> None:
        feed = self.feed
        while True:
            raw = await conn.receive_raw()
            try:
                event = oa.decode_server(raw)
            except oa.RealtimeProtocolError as error:
                feed(ModelFrameInvalid(session=session, raw=raw, error=str(error)))
                continue
            feed(ModelServerEvent(session=session, event=event, raw=raw))

    async def _write(self, conn: ModelConnection, outlet: Outlet) -> None:
        while True:
            texts = await outlet.take()
            await conn.send_raw_many(texts)
            outlet.written()
            dropped = _dropped(outlet.take_dropped())
            if dropped is not None:
                self.feed(dropped)


def _dropped(count: int) -> CallerFramesDropped | None:
    """``count`` caller frames the uplink dropped, as the core's input; None for none."""
    return CallerFramesDropped(count=count, queued_limit=UPLINK_MAX_FRAMES) if count else None


def _link_failure(raised: BaseException) -> WebSocketClosed | RealtimeConnectError:
    """The socket failure behind ``raised`` (bare, or the only kind in the exception groups the
    session's nursery wraps it in). Anything else is re-raised: it is a bug, not the network."""
    if isinstance(raised, LinkFailure):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        links, rest = raised.split(LinkFailure)
        if rest is None and links is not None:
            leaf: BaseException = links
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            assert isinstance(leaf, LinkFailure)
            return leaf
    raise raised


def _session_lost(session: int, connected: bool, error: WebSocketClosed | RealtimeConnectError) -> ModelSessionLost:
    if isinstance(error, RealtimeConnectError):
        return ModelSessionLost(session=session, connected=connected, error=str(error), retryable=error.retryable)
    return ModelSessionLost(
        session=session,
        connected=connected,
        error=f"model socket closed: {error}",
        code=error.code,
        reason=error.reason,
    )
