"""Waking the log's followers (views, live feed) when it grows — in this process or in any other.

This process's appends wake them at once through the ``EventWriter``. Appends by other processes
(several engines sharing one PostgreSQL log, a ``callbridge mcp`` beside a server) used to be found
by polling every 0.5 s. On PostgreSQL the recorder NOTIFYs a channel in every insert, so
``AppendSignal.run`` LISTENs on it in a thread, and at each NOTIFY one task reads the head and hands
it to this process's writer, which wakes every waiter it is beyond within milliseconds — a NOTIFY of
this process's own insert wakes nobody twice; polling stays as the fallback (SQLite cannot push; a
lost listener connection is retried with backoff).

Why not eventsourcing's own listening (9.5: ``PostgresApplicationRecorder.subscribe(gt, topics)``,
a ``PostgresSubscription``): it is a blocking iterator of notifications that runs *two* threads per
subscriber — one LISTENing on the same channel as here, one pulling pages of 500 notifications into a
queue — and holds a pooled connection for each. Our followers do not want its notifications: the views
must read each page inside their own ``BEGIN IMMEDIATE`` transaction, up to a head they read there, to
apply it exactly once (``projections.runner``), and the live feed reads only its own topics from its
own position; a subscription would fetch every notification a second time, per follower, only to be
used as a wake-up. It is not cancellable from trio except by stopping it from another thread, and
SQLite recorders do not support it at all (``NotImplementedError``), so polling would stay anyway.
What fits is the part it is built on, which is what :func:`listen_for_appends` does with the
library's public pieces (the recorder's ``channel_name`` and pooled ``datastore``): one LISTEN, one
thread and one connection per process, fanned out to every follower here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Protocol

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.watermark import Watermark

log = logging.getLogger(__name__)


def listen_for_appends(
    store: EventStore, on_append: Callable[[], None], stop: threading.Event, interval: float = 0.5
) -> None:
    """PostgreSQL: call ``on_append()`` after each commit of events by any process (the recorder
    NOTIFYs its channel in every insert), until ``stop`` is set (checked every ``interval`` s).
    Blocking, for a thread; holds one pooled connection. Raises if the connection fails."""
    from eventsourcing.postgres import PostgresApplicationRecorder
    from psycopg.sql import SQL, Identifier

    with store.connections() as opening:
        recorder = opening.recorder
        if not isinstance(recorder, PostgresApplicationRecorder):
            raise ValueError(f"{store.description} has no notifications of appends (PostgreSQL has)")
        with recorder.datastore.get_connection() as conn:
            conn.execute(SQL("LISTEN {0}").format(Identifier(recorder.channel_name)))
            while not stop.is_set():
                for _ in conn.notifies(timeout=interval, stop_after=1):
                    on_append()


WaitForAppends = Callable[[int], Awaitable[None]]
"""``await wait(position)`` returns when events after ``position`` may exist (or after a while)."""


class Waiters(Protocol):
    """:meth:`AppendSignal.waiter`: makes the ``WaitForAppends`` of one follower."""

    def __call__(self, interval: float = ..., *, names: Iterable[str] | None = None) -> WaitForAppends: ...


LISTEN_CHECK_S = 0.5
"""How often the listening thread checks whether it should stop."""
POLL_S = 0.5
"""How often other processes' appends are looked for where nothing announces them (SQLite)."""


class AppendSignal:
    """Appends by any process, as ``waiter()``s for followers; ``run`` it in the server's nursery."""

    def __init__(
        self,
        store: EventStore,
        writer: EventWriter | None = None,
        *,
        max_backoff: float = 30.0,
        poll_interval: float = POLL_S,
    ) -> None:
        self.store = store
        self.writer = writer
        self.notified = Watermark()
        """Appends by any process signalled so far (PostgreSQL NOTIFYs received)."""
        self._backoff = Backoff(min(0.5, max_backoff), max_backoff)
        self.poll_interval = poll_interval
        self.polling = False
        """:meth:`run` polls the head for every waiter (SQLite with a writer): they wait without
        timeouts of their own."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for other processes' appends until cancelled. With a writer, one reader of the head
        tells it what other processes appended (``EventWriter.note_head``) for every waiter: on
        PostgreSQL at each NOTIFY (:meth:`_follow_notifies`), on SQLite every ``poll_interval``
        (:meth:`_poll_head`). Without one (``callbridge mcp``), PostgreSQL's NOTIFYs wake every waiter
        themselves; on SQLite it returns at once and waiters poll themselves."""
        task_status.started()
        if not self.store.notifies_appends:
            if self.writer is not None:
                await self._poll_head(self.writer)
            return
        if self.writer is None:
            await self._listen()
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._listen)
            await self._follow_notifies(self.writer)

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN in a thread, each NOTIFY counted in :attr:`notified`; a failed listener
        is retried with backoff."""
        token = trio.lowlevel.current_trio_token()
        failures = 0
        while True:
            stop = threading.Event()
            try:
                await trio.to_thread.run_sync(
                    listen_for_appends,
                    self.store,
                    lambda: token.run_sync_soon(self._signal),
                    stop,
                    LISTEN_CHECK_S,
                    abandon_on_cancel=True,
                )
            except Exception as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                log.warning("cannot listen for appends to %s (polling meanwhile; retry in %.1f s): %s",
                            self.store.description, delay, exc)  # fmt: skip
                await trio.sleep(delay)
            finally:
                stop.set()

    async def _follow_notifies(self, writer: EventWriter) -> None:
        """PostgreSQL with a writer: after each NOTIFY (those that came while the head was being read
        count once), and every ``poll_interval`` in any case (a listener that failed is being retried),
        read the head and tell the writer. Each follower then waits on the writer alone, as on SQLite:
        a NOTIFY of this process's own insert wakes nobody (the writer already did, by topic), and one
        of another process's is one read of the head for the whole process, where each follower read
        the head and a page at every NOTIFY (two workers' batches: 20 a second, for every follower of
        every worker — the Python of those reads, in threads, held the GIL from the media loop)."""
        seen = self.notifications

        async def next_notify() -> None:
            nonlocal seen
            with trio.move_on_after(self.poll_interval):
                await self.notified.wait_beyond(seen)
            seen = self.notifications

        await self._read_heads(writer, next_notify)

    async def _poll_head(self, writer: EventWriter) -> None:
        """SQLite: every ``poll_interval``, read the head, and when it moved, tell the writer, which wakes
        the waiters it is beyond (``EventWriter.note_head``). One trip to a worker thread a poll for the
        whole process, where each follower made its own (five in an idle worker: a third of its CPU)."""
        await self._read_heads(writer, partial(trio.sleep, self.poll_interval))

    async def _read_heads(self, writer: EventWriter, pause: Callable[[], Awaitable[None]]) -> None:
        """After each ``pause()``: read the head; when it moved, tell the writer."""
        last = 0
        failing = False
        self.polling = True
        try:
            while True:
                await pause()
                try:
                    head = await trio.to_thread.run_sync(self.store.head, abandon_on_cancel=True)
                except Exception as exc:  # the followers meet it too, and say so; one line here
                    if not failing:
                        log.warning("cannot poll the head of %s (will retry): %s", self.store.description, exc)
                    failing = True
                    continue
                failing = False
                if head > last:
                    last = head
                    writer.note_head(head)
        finally:
            self.polling = False

    @property
    def notifications(self) -> int:
        return self.notified.value

    def _signal(self) -> None:
        self.notified.advance(self.notified.value + 1)

    def waiter(self, interval: float = 0.5, *, names: Iterable[str] | None = None) -> WaitForAppends:
        """A ``wait(position)`` for one follower: returns as soon as this process's writer wrote
        beyond ``position``, or :meth:`run`'s reader of the head found it beyond (another process
        appended), else after ``interval`` seconds unless :meth:`run` is reading the head for every
        follower. Without a writer: as soon as any process appended (PostgreSQL's NOTIFY) since the
        follower's last wait, else after ``interval`` seconds.

        ``names``: the event classes the follower reads. Then only this process's batches holding one
        of them wake it (``EventWriter.wait_appended``): a follower of rare events skips the batches
        of audio and model events written ten times a second. Its position then lags the head until
        a batch it wants, another process's append or the poll; so only for followers whose position
        nobody waits on for events it does not read."""
        seen = self.notifications
        writer = self.writer
        wanted = None if names is None else tuple(names)
        if writer is not None:
            # only this process's writer and the reader of the head (SQLite's poll, PostgreSQL's
            # NOTIFYs) wake a follower, both through the writer, so it waits on the writer alone,
            # without a nursery and two tasks per wait (the views and the live feed wait ten times a
            # second) — and while :meth:`run` reads the head for everyone, without a timeout of its own

            async def wait_for_writer(position: int) -> None:
                if self.polling and interval >= self.poll_interval:
                    await writer.wait_appended(position, wanted, polls=True)
                    return
                with trio.move_on_after(interval):
                    await writer.wait_appended(position, wanted)

            return wait_for_writer

        async def wait(position: int) -> None:  # no writer here (``callbridge mcp``): NOTIFYs, or the poll
            nonlocal seen
            with trio.move_on_after(interval):
                if self.notifications == seen:  # else: appended while the follower was reading
                    await self.notified.wait_beyond(seen)
            seen = self.notifications

        return wait
