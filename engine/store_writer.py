"""The engine's only way to write events: record now, write in batches, lose nothing it can keep.

Why: a transaction per event costs ~0.2 ms (SQLite) to ~0.8 ms (PostgreSQL) and blocks, while a
call produces many events per second and its tasks must never wait for a disk. So ``record()`` only
encodes the event (rejecting bad input at its source) and queues it; a flush loop writes everything
queued, for all calls, in one transaction every ``flush_interval`` from a worker thread. Writes
happen one at a time under a lock, in recording order, so each call's order is kept and ``flush()``
can run beside the loop without writing anything twice. A failed write keeps its events queued and
is retried with backoff (``engine.backoff``).

When the store cannot take writes (disk full, read-only, unreachable) the queue is bounded
(:class:`engine.store_writer_state.WriterLimits`): past ``max_pending_bytes`` events are dropped and
counted, and long before that :attr:`EventWriter.accepting_calls` turns false so no new call adds to
the backlog. :meth:`EventWriter.health` says why, for ``/healthz``.

Every write runs in a worker thread that may be abandoned (a caller of ``flush()`` cancelled, a
shutdown deadline): its outcome is still collected before the next write starts, so a write that
completed after its caller gave up is never written twice. :meth:`EventWriter.drain` writes what is
left by a deadline, which is how shutdown stays within its time.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

import trio

from callbridge.engine.append_marks import AppendMarks
from callbridge.engine.backoff import Backoff
from callbridge.engine.events import CallEnded, CallStarted, Event
from callbridge.engine.store import EventStore
from callbridge.engine.store_encoding import EncodedEvent, encode_for_store
from callbridge.engine.store_writer_state import WriterLimits, WriterStatistics, writer_problems
from callbridge.engine.watermark import Watermark

logger = logging.getLogger(__name__)

__all__ = ["EventWriter", "WriterLimits", "WriterStatistics"]

ALWAYS_KEPT = (CallStarted, CallEnded)
"""Events never dropped by the bound: with them every call keeps its start and its end."""
_EVENT_OVERHEAD_BYTES = 200
"""Memory of a queued event beyond its encoded bytes (tuple, strings), for the bound."""
REOPEN_EVERY_FAILURES = 5
"""After this many failed writes in a row (and every as many more) the store's connections are
reopened: a SQLite file found read-only stays read-only for a connection's life."""
_QUIET_LOG_S = 60.0
"""During an outage, repeated failures and drops are logged at most this often."""


class _Write:
    """One append in a worker thread. Its outcome is kept even when the task that started it stopped
    waiting, so the next write can first learn whether these events were committed."""

    def __init__(self, batch: list[EncodedEvent], started: float) -> None:
        self.batch = batch
        self.started = started
        self.finished = trio.Event()
        self.position: int | None = None
        self.error: Exception | None = None


class EventWriter:
    """Batches events into the store. ``record()`` may be called from any thread; everything else
    from the trio thread. See the module docstring for the guarantees."""

    def __init__(
        self,
        store: EventStore,
        flush_interval: float = 0.1,
        *,
        max_batch: int = 5000,
        max_backoff: float = 5.0,
        final_flush_timeout: float = 5.0,
        limits: WriterLimits | None = None,
    ) -> None:
        if flush_interval <= 0 or max_batch < 1:
            raise ValueError("flush_interval must be positive and max_batch at least 1")
        self._store = store
        self._flush_interval = flush_interval
        self._before_batch: list[Callable[[], None]] = []
        self._max_batch = max_batch
        self._backoff = Backoff(min(0.1, max_backoff), max_backoff)
        self._final_flush_timeout = final_flush_timeout
        self._final_deadline: float | None = None
        self.limits = limits or WriterLimits()
        self._guard = threading.Lock()  # protects the queue and its counters (record() is thread-safe)
        self._pending: deque[EncodedEvent] = deque()
        self._pending_bytes = 0
        self._recorded = 0
        self._written = 0
        self._dropped = 0
        self._dropped_logged = 0
        self._drop_logged_at = float("-inf")
        self._write_lock = trio.Lock()
        self._in_flight: _Write | None = None
        self._marks = AppendMarks()
        self._head_loaded = False
        self._running = False
        self._batches = 0
        self.failures = Watermark()
        """Failed write attempts in total (``await writer.failures.wait_for(n)``)."""
        self._consecutive_failures = 0
        self._failing_since = 0.0
        self._failure_logged_at = float("-inf")
        self._last_batch_size = 0
        self._last_batch_seconds = 0.0
        self._last_error: str | None = None

    # --- recording -------------------------------------------------------------------------------

    def before_each_batch(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` (synchronously, in the trio thread) before each periodic batch and each
        :meth:`flush`, so what it records goes out with that batch; returns the function that removes it."""
        self._before_batch.append(hook)
        return lambda: self._before_batch.remove(hook)

    def record(self, event: Event) -> None:
        """Queue one event for writing. Never blocks; raises ``EventEncodingError`` (a
        ``ValueError``) at once if the event cannot be stored, queueing nothing. When the queue is
        full (the store has not taken writes for a long while) the event is dropped and counted."""
        encoded = encode_for_store(event)
        size = encoded.size + _EVENT_OVERHEAD_BYTES
        with self._guard:
            if self._pending_bytes + size > self.limits.max_pending_bytes and not isinstance(event, ALWAYS_KEPT):
                self._dropped += 1
                dropped = self._dropped
            else:
                self._pending.append(encoded)
                self._pending_bytes += size
                self._recorded += 1
                return
        self._log_drop(dropped)

    def _log_drop(self, dropped: int) -> None:
        now = time.monotonic()
        if now - self._drop_logged_at < _QUIET_LOG_S:
            return
        self._drop_logged_at = now
        logger.error(
            "event writer DROPPED %d events (%d since the last report): %d MiB are waiting for %s, "
            "which is not taking writes (last error: %s)",
            dropped,
            dropped - self._dropped_logged,
            self._pending_bytes // (1024 * 1024),
            self._store.description,
            self._last_error,
        )
        self._dropped_logged = dropped

    @property
    def pending_count(self) -> int:
        """Events recorded but not yet written."""
        return self._recorded - self._written

    @property
    def dropped_count(self) -> int:
        """Events refused by the bound (never written)."""
        return self._dropped

    @property
    def recorded_count(self) -> int:
        """Events accepted by ``record()`` so far."""
        return self._recorded

    @property
    def written_count(self) -> int:
        """Events written so far (``written_count >= n`` once the n-th recorded event is stored)."""
        return self._written

    @property
    def head(self) -> int:
        """Last position known written (by this writer, or found in the store at start)."""
        return self._marks.head.value

    def statistics(self) -> WriterStatistics:
        in_flight = self._in_flight
        return WriterStatistics(
            head=self._marks.head.value,
            pending=self.pending_count,
            pending_bytes=self._pending_bytes,
            recorded=self._recorded,
            written=self._written,
            dropped=self._dropped,
            batches=self._batches,
            failed_writes=self.failures.value,
            consecutive_failures=self._consecutive_failures,
            last_batch_size=self._last_batch_size,
            last_batch_seconds=self._last_batch_seconds,
            last_error=self._last_error,
            write_seconds=None if in_flight is None else trio.current_time() - in_flight.started,
            running=self._running,
        )

    # --- health ----------------------------------------------------------------------------------

    def health(self) -> list[str]:
        """Why the log cannot take more calls now (empty when it can). Public text: no paths, no
        error messages (see the log for those)."""
        return writer_problems(self.statistics(), self.limits)

    @property
    def accepting_calls(self) -> bool:
        """Whether a new call may start: the writer runs, its writes succeed and keep up. The media
        path asks this before taking a call."""
        return not self.health()

    @property
    def stuck(self) -> bool:
        """Writes are failing or hanging: waiting for a flush now could only time out."""
        stats = self.statistics()
        limits = self.limits
        return stats.consecutive_failures >= limits.failures_before_unhealthy or (
            stats.write_seconds is not None and stats.write_seconds > limits.stall_after_s
        )

    # --- writing ---------------------------------------------------------------------------------

    async def flush(self) -> int:
        """Write everything recorded before this call (retrying failures until it succeeds or the
        caller is cancelled) and return the head position. The :meth:`before_each_batch` hooks run
        first, so what the calls hold for their next batch (a partial audio chunk, a transcript's
        latest words) is in what a reader then reads."""
        self._hand_over()
        target = self._recorded
        if self._written < target:
            await self._write_until(target)
        elif not self._head_loaded:
            await self._load_head()
        return self._marks.head.value

    def _hand_over(self) -> None:
        for hook in list(self._before_batch):
            hook()  # e.g. calls hand over audio held in partial chunks: a crash loses one batch at most

    async def drain(self, deadline: float) -> int:
        """Write what is pending, retrying failures, until the trio time ``deadline`` (a write still
        running then is abandoned); returns the events still not written. For shutdown."""
        with trio.move_on_at(deadline):
            await self._write_until(self._recorded)
        return self.pending_count

    def stop_by(self, deadline: float) -> None:
        """When :meth:`run` is cancelled, its final flush gives up at ``deadline`` (trio time)
        instead of ``final_flush_timeout`` after the cancellation."""
        self._final_deadline = deadline

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every ``flush_interval`` until cancelled, then write what is left (shielded, until
        the :meth:`stop_by` deadline or for ``final_flush_timeout``); anything still unwritten then
        is logged as lost."""
        try:
            await self._load_head()
            self._running = True
            task_status.started()
            while True:
                await trio.sleep(self._flush_interval)
                self._hand_over()
                if self._written < self._recorded:
                    await self._write_until(self._recorded)
        finally:
            self._running = False
            await self._final_flush()

    async def _final_flush(self) -> None:
        deadline = self._final_deadline
        if deadline is None:
            deadline = trio.current_time() + self._final_flush_timeout
        with trio.CancelScope(deadline=deadline, shield=True):
            await self._write_until(self._recorded)
        if self.pending_count:
            logger.error(
                "event writer stopped with %d events NOT written to %s (last error: %s)",
                self.pending_count,
                self._store.description,
                self._last_error,
            )

    async def _write_until(self, target: int) -> None:
        """Write batches until ``target`` events in all have been written, retrying failures."""
        async with self._write_lock:
            while self._written < target:
                try:
                    await self._write_batch()
                except Exception as exc:
                    await trio.sleep(self._note_failure(exc))
                    if self._consecutive_failures % REOPEN_EVERY_FAILURES == 0:
                        await self._reopen_store()

    async def _reopen_store(self) -> None:
        """Fresh connections, in case the store was fixed behind connections that cannot see it."""
        try:
            await trio.to_thread.run_sync(self._store.reopen, abandon_on_cancel=True)
        except Exception as exc:
            logger.warning("cannot reopen %s yet: %s", self._store.description, exc)

    async def _write_batch(self) -> None:
        """One transaction with the oldest pending events. Only called with the write lock held."""
        if self._in_flight is not None:  # an abandoned write: learn its outcome first
            await self._settle(self._in_flight)
            return
        with self._guard:
            batch = list(itertools.islice(self._pending, self._max_batch))
        write = _Write(batch, trio.current_time())
        self._in_flight = write
        token = trio.lowlevel.current_trio_token()
        append = self._store.append_encoded

        def work() -> None:
            try:
                write.position = append(batch)
            except Exception as exc:
                write.error = exc
            finally:
                try:
                    token.run_sync_soon(write.finished.set)
                except trio.RunFinishedError:  # trio is gone: the process is exiting
                    pass

        await trio.to_thread.run_sync(work, abandon_on_cancel=True)
        await self._settle(write)

    async def _settle(self, write: _Write) -> None:
        """Wait for ``write`` to finish and apply its outcome: its events leave the queue if they
        were committed; its error is raised if not."""
        await write.finished.wait()
        self._in_flight = None
        if write.error is not None:
            raise write.error
        assert write.position is not None
        self._written_batch(write)

    def _written_batch(self, write: _Write) -> None:
        with self._guard:
            for _ in write.batch:
                self._pending_bytes -= self._pending.popleft().size + _EVENT_OVERHEAD_BYTES
            self._written += len(write.batch)
        self._batches += 1
        self._last_batch_size = len(write.batch)
        self._last_batch_seconds = trio.current_time() - write.started
        if self._consecutive_failures:
            logger.warning(
                "event store %s is writable again after %d failed attempts in %.1f s",
                self._store.description,
                self._consecutive_failures,
                trio.current_time() - self._failing_since,
            )
        self._consecutive_failures = 0
        assert write.position is not None
        self._marks.written(write.position, (item.topic for item in write.batch), len(write.batch))

    def _note_failure(self, exc: Exception) -> float:
        """Log a failed write (every time at first, then at most once a minute) and return how long
        to wait before the next try."""
        self.failures.advance(self.failures.value + 1)
        self._consecutive_failures += 1
        now = trio.current_time()
        if self._consecutive_failures == 1:
            self._failing_since = now
        self._last_error = f"{type(exc).__name__}: {exc}"
        delay = self._backoff.delay(self._consecutive_failures)
        if self._consecutive_failures <= self.limits.failures_before_unhealthy or (
            now - self._failure_logged_at >= _QUIET_LOG_S
        ):
            self._failure_logged_at = now
            logger.error(
                "writing %d pending events to %s failed (attempt %d, failing for %.1f s, retrying in %.1f s): %s",
                self.pending_count,
                self._store.description,
                self._consecutive_failures,
                now - self._failing_since,
                delay,
                self._last_error,
                exc_info=self._consecutive_failures == 1,
            )
        return delay

    async def _load_head(self) -> None:
        try:
            position = await trio.to_thread.run_sync(self._store.head, abandon_on_cancel=True)
        except Exception as exc:
            logger.warning("cannot read the head of %s yet: %s", self._store.description, exc)
            return
        self._head_loaded = True
        self._marks.loaded(position)

    # --- waiting ---------------------------------------------------------------------------------

    async def wait_for_position(self, position: int) -> None:
        """Return once this writer knows ``position`` is written."""
        await self._marks.wait_for(position)

    async def wait_appended(self, after: int, names: Iterable[str] | None = None, *, polls: bool = False) -> int:
        """Return the head as soon as it is beyond ``after`` (woken by this writer's writes; readers of
        appends made by other processes must also poll the store).

        With ``names`` (event class names), only a batch holding one of those events wakes the
        caller: a follower of rare events (operator commands, erasures) is not woken ten times a second
        by batches of audio it would read only to skip. ``polls``: also woken when a poll of the store
        finds the head beyond ``after`` (:meth:`note_head`), whatever the names — for a follower of
        every process's appends, which then needs no poll of its own."""
        return await self._marks.wait_appended(after, names, polls=polls)

    def note_head(self, head: int) -> None:
        """A poll of the store found its head moved to ``head`` (``engine.append_marks``)."""
        self._marks.note_head(head)
