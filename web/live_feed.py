"""``WS /logs``: the live feed, a projection of the event log fanned out to browsers.

Why it follows the store and not the engine: what a console shows live is then exactly what a
replay of the log shows, and a call never waits for a browser. The :class:`LiveFeed` hub (one task
of the server) wakes when the in-process writer appends (``EventWriter.wait_appended``; a slow poll
finds other engines' appends), reads the new events in a worker thread — only the topics the feed
shows, so audio chunks are never fetched — turns them into messages (``projections.live``) and
offers each to every subscriber. While no browser listens it reads only the few events that change
what it knows (live calls, pending tool calls: ``projections.live.STATE_EVENTS``), which the console's
``feed.hello`` and hand-answered tools need: most calls are never watched, and turning every model
event into a message nobody takes was ~3 % of a busy server's CPU.

Each browser has its own bounded buffer, filled with ``send_nowait``: a slow or stuck browser
never slows the hub or a call. When its buffer is full it misses messages, and gets ONE
``{"type": "feed.gap", "call_id": null, "stream_sid": null, "missed": N}`` at the place of the loss
as soon as it has room again.

The route: authenticate (bearer header, session cookie or ``?token=``; else 401 before accepting),
then either follow the live feed (``?call_id=`` keeps one call's messages and those about no call)
starting with a ``feed.hello``, or replay one stored call (``?replay=CALL_ID&speed=N``). Browser
messages are handled by ``web.live_commands``. On server shutdown the feed is drained briefly (so
the ``call.ended`` of calls ended by the shutdown reach the browser) and closed with 1001.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import msgspec
import trio
from quart import Blueprint, websocket
from werkzeug.datastructures import MultiDict

from callbridge.engine.backoff import Backoff
from callbridge.engine.events import Event
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.appends import AppendSignal, WaitForAppends
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.live import LiveProjection, Message, envelope, replay_messages
from callbridge.projections.source import LogSource
from callbridge.web.auth import credential_of, unauthorized
from callbridge.web.live_commands import error_message, handle_command

if TYPE_CHECKING:
    from callbridge.server import Server

log = logging.getLogger(__name__)

BUFFER_SIZE = 256
"""Messages each browser may lag behind before it misses some."""
SHUTDOWN_DRAIN_S = 1.0
"""How long a browser's feed may keep going after shutdown starts (hypercorn allows 2 s)."""
REPLAY_SPEEDS = (0.1, 100.0)
CLOSE_GOING_AWAY = 1001
CLOSE_BAD_REQUEST = 4400
CLOSE_UNKNOWN_CALL = 4404

_encoder = msgspec.json.Encoder()


def encode(message: Message) -> str:
    return _encoder.encode(message).decode()


def gap_message(missed: int) -> Message:
    return envelope("feed.gap", None, None, missed=missed)


class Subscription:
    """One browser's view of the hub: a bounded buffer of encoded messages and a count of misses."""

    def __init__(self, call_id: str | None, size: int) -> None:
        self.call_id = call_id
        self._send, self._receive = trio.open_memory_channel[str](size)
        self.missed = 0
        """Messages missed since the last ``feed.gap`` was queued or taken."""
        self.total_missed = 0

    def wants(self, call_id: str | None) -> bool:
        return self.call_id is None or call_id is None or call_id == self.call_id

    def offer(self, text: str) -> None:
        """Queue ``text`` without waiting; on a full buffer count it as missed (the hub's side)."""
        try:
            if self.missed:
                self._send.send_nowait(encode(gap_message(self.missed)))
                self.missed = 0
            self._send.send_nowait(text)
        except trio.WouldBlock:
            self.missed += 1
            self.total_missed += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def next(self) -> str | None:
        """The next message to send (a ``feed.gap`` once the buffer ran dry after misses); None
        once the subscription is closed and drained."""
        try:
            return self._receive.receive_nowait()
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            return self._take_gap()
        gap = self._take_gap()
        if gap is not None:
            return gap
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            return self._take_gap()

    def _take_gap(self) -> str | None:
        if not self.missed:
            return None
        missed, self.missed = self.missed, 0
        return encode(gap_message(missed))

    def close(self) -> None:
        """No more messages; what is buffered can still be taken."""
        self._send.close()


class LiveFeed:
    """The hub: follows the log from its head at start and fans messages out to subscriptions."""

    def __init__(
        self,
        store: EventStore,
        writer: EventWriter | None = None,
        *,
        buffer_size: int = BUFFER_SIZE,
        poll_interval: float = 0.5,
        wait_for_appends: WaitForAppends | None = None,
        page_size: int = 500,
        max_backoff: float = 5.0,
    ) -> None:
        if buffer_size < 1 or page_size < 1:
            raise ValueError("buffer_size and page_size must be at least 1")
        self.buffer_size = buffer_size
        """Buffer of subscriptions opened from now on."""
        self.projection = LiveProjection()
        self._store = store
        self._source = LogSource(store, self.projection.event_names)
        self._state_source = LogSource(store, self.projection.state_event_names)
        """What is read while nobody listens: the projection's state, no messages."""
        self._wait = wait_for_appends or AppendSignal(store, writer).waiter(poll_interval)
        self._page_size = page_size
        self._subscriptions: set[Subscription] = set()
        backoff = Backoff(min(0.25, max_backoff), max_backoff)
        self._follower = Follower("live feed", self._wait, backoff=backoff)

    @property
    def position(self) -> int | None:
        """Every event up to here has been offered (None until the store's head is known)."""
        return self._follower.position.value if self._follower.known else None

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    @contextmanager
    def subscribe(self, call_id: str | None = None, *, buffer_size: int | None = None) -> Iterator[Subscription]:
        """A subscription to every message from now on (one call's, and those about no call, when
        ``call_id`` is given); removed and closed on exit."""
        subscription = Subscription(call_id, buffer_size or self.buffer_size)
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)
            subscription.close()

    def hello(self, session: dict[str, Any]) -> Message:
        """The first message of a live feed: the calls live as of the next message, and the default
        session config for new calls."""
        return envelope("feed.hello", None, None, live_calls=self.projection.live_calls(), session=session)

    def publish(self, events: Iterable[Event]) -> None:
        """Offer the messages of ``events`` to every subscription that wants them (never waits)."""
        for event in events:
            for message in self.projection.messages(event):
                call_id = message["call_id"]
                text: str | None = None
                for subscription in list(self._subscriptions):
                    if subscription.wants(call_id):
                        text = text or encode(message)
                        subscription.offer(text)

    async def wait_for_position(self, position: int) -> None:
        """Return once every event up to ``position`` has been offered."""
        await self._follower.position.wait_for(position)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the log from its head until cancelled. Store failures are logged and retried with
        backoff (:class:`projections.follower.Follower`): the feed may stall, the server never falls
        over because of it."""
        await self._follower.run(
            self._step, start=partial(trio.to_thread.run_sync, self._source.head), task_status=task_status
        )

    async def _step(self, position: int) -> Progress:
        listened = bool(self._subscriptions)
        source = self._source if listened else self._state_source
        page, head = await trio.to_thread.run_sync(source.next_page, position, self._page_size)
        if not listened and self._subscriptions:  # a browser came while the page was read without its
            return Progress(position, False)  # messages: read it again, for it
        self.publish(recorded.event for recorded in page.events)
        return Progress(page.reached, page.reached >= head)


# --- the route -----------------------------------------------------------------------------------

Send = Callable[[Message], Awaitable[None]]


def live_feed_blueprint(server: Server) -> Blueprint:
    """``WS /logs`` over ``server.feed`` (the hub), its live calls, writer and store."""
    blueprint = Blueprint("live_feed", __name__)

    @blueprint.websocket("/logs")
    async def logs() -> Any:
        credential = credential_of(server.settings.api_token, websocket)
        if credential is None:
            return unauthorized()
        await websocket.accept()
        if "replay" in websocket.args:
            await _replay(server, websocket.args)
        else:
            await _follow(server, websocket.args.get("call_id") or None)
        return None

    return blueprint


async def _follow(server: Server, call_id: str | None) -> None:
    feed: LiveFeed = server.feed
    lock = trio.Lock()

    async def send(message: Message | str) -> None:
        async with lock:  # the feed and command replies share the socket
            await websocket.send(message if isinstance(message, str) else encode(message))

    with feed.subscribe(call_id) as subscription:
        hello = feed.hello(server.default_session)  # taken with the subscription: nothing between
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_serve_commands, server, feed, send)
            nursery.start_soon(_end_on_shutdown, server, feed, subscription)
            await send(hello)
            while (text := await subscription.next()) is not None:
                await send(text)
            nursery.cancel_scope.cancel()
    await websocket.close(CLOSE_GOING_AWAY, "server shutting down")


async def _serve_commands(server: Server, feed: LiveFeed, send: Send) -> None:
    while True:
        data = await websocket.receive()
        try:
            reply = await handle_command(server, feed.projection, data)
        except Exception:  # a bug must not take the browser's feed down with it
            log.exception("live feed: a browser command failed")
            reply = error_message("internal_error", "the server could not handle this message")
        if reply is not None:
            await send(reply)


async def _end_on_shutdown(server: Server, feed: LiveFeed, subscription: Subscription) -> None:
    """At shutdown, let the calls end and their last events reach the browser, then close."""
    await server.shutdown.wait()
    with trio.move_on_after(SHUTDOWN_DRAIN_S):
        await server.live.wait_empty()
        await feed.wait_for_position(await server.writer.flush())
    subscription.close()


def _replay_speed(args: MultiDict[str, str]) -> float | None:
    try:
        speed = float(args.get("speed", "1"))
    except ValueError:
        return None
    low, high = REPLAY_SPEEDS
    return speed if math.isfinite(speed) and low <= speed <= high else None


async def _replay(server: Server, args: MultiDict[str, str]) -> None:
    """One stored call's messages with their recorded spacing divided by ``speed``, then
    ``feed.replay_done`` and close."""
    call_id = args.get("replay", "")
    speed = _replay_speed(args)
    if speed is None:
        low, high = REPLAY_SPEEDS
        await websocket.send(encode(error_message("invalid_speed", f"speed must be a number from {low} to {high}")))
        await websocket.close(CLOSE_BAD_REQUEST, "invalid speed")
        return
    with trio.move_on_after(2.0):
        await server.writer.flush()  # a call that just ended is replayable at once
    recorded = await trio.to_thread.run_sync(server.store.read_call, call_id, limiter=server.db_threads)
    timed = await trio.to_thread.run_sync(replay_messages, [r.event for r in recorded], limiter=server.db_threads)
    if not timed:
        await websocket.send(encode(error_message("unknown_call", f"no recorded call {call_id!r}", call_id=call_id)))
        await websocket.close(CLOSE_UNKNOWN_CALL, "unknown call")
        return
    started = trio.current_time()
    stream_sid = None
    for offset, message in timed:
        await trio.sleep_until(started + offset / speed)
        stream_sid = stream_sid or message["stream_sid"]
        await websocket.send(encode(message))
    await websocket.send(encode(envelope("feed.replay_done", call_id, stream_sid, messages=len(timed))))
    await websocket.close(1000, "replay done")
