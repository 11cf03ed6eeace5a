"""Waking the log's followers (views, live feed) when it grows — in this process or in any other.

This process's appends wake them at once through the ``EventWriter``. Appends by other processes
(several engines sharing one PostgreSQL log, a ``callbridge mcp`` beside a server) used to be found
by polling every 0.5 s. On PostgreSQL the recorder NOTIFYs a channel in every insert, so
``AppendSignal.run`` LISTENs on it in a thread and wakes every waiter within milliseconds; polling
stays as the fallback (SQLite cannot push; a lost listener connection is retried with backoff).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable
from functools import partial

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter

log = logging.getLogger(__name__)

WaitForAppends = Callable[[int], Awaitable[None]]
"""``await wait(position)`` returns when events after ``position`` may exist (or after a while)."""

LISTEN_CHECK_S = 0.5
"""How often the listening thread checks whether it should stop."""


class AppendSignal:
    """Appends by any process, as ``waiter()``s for followers; ``run`` it in the server's nursery."""

    def __init__(self, store: EventStore, writer: EventWriter | None = None, *, max_backoff: float = 30.0) -> None:
        self.store = store
        self.writer = writer
        self.notifications = 0
        """Appends by any process signalled so far (PostgreSQL NOTIFYs received)."""
        self._notified = trio.Event()
        self._backoff = Backoff(min(0.5, max_backoff), max_backoff)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for other processes' appends until cancelled (returns at once where the store
        cannot tell: waiters then poll)."""
        task_status.started()
        if not self.store.notifies_appends:
            return
        token = trio.lowlevel.current_trio_token()
        failures = 0
        while True:
            stop = threading.Event()
            try:
                await trio.to_thread.run_sync(
                    self.store.listen_for_appends,
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

    def _signal(self) -> None:
        self.notifications += 1
        notified, self._notified = self._notified, trio.Event()
        notified.set()

    def waiter(self, interval: float = 0.5) -> WaitForAppends:
        """A ``wait(position)`` for one follower: returns as soon as this process's writer wrote
        beyond ``position`` or any process appended since the follower's last wait, else after
        ``interval`` seconds (the poll)."""
        seen = self.notifications
        writer = self.writer

        async def wait(position: int) -> None:
            nonlocal seen
            with trio.move_on_after(interval):
                if self.notifications == seen:  # else: appended while the follower was reading
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_then_cancel, self._notified.wait, nursery.cancel_scope)
                        if writer is not None:
                            written = partial(writer.wait_appended, position)
                            nursery.start_soon(_then_cancel, written, nursery.cancel_scope)
            seen = self.notifications

        return wait


async def _then_cancel(wait: Callable[[], Awaitable[object]], scope: trio.CancelScope) -> None:
    await wait()
    scope.cancel()
