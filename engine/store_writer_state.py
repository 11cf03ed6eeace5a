"""What the event writer reports about itself: counters, limits and health (``engine.store_writer``).

Why separate: the writer's health is read by people and programs that never write — ``/healthz``, the
media path deciding whether to take a call, read-your-writes deciding whether a flush is worth
waiting for — so its rules live here, small and pure: :func:`writer_problems` turns a snapshot of the
writer into the reasons it cannot take more calls. The reasons are public (``/healthz`` needs no
token): they name what is wrong, never a path, a host or an error text (those go to the log).
"""

from __future__ import annotations

import msgspec

MIB = 1024 * 1024


class WriterLimits(msgspec.Struct, frozen=True, kw_only=True):
    """When the writer stops taking calls, and when it starts dropping events."""

    max_pending_bytes: int = 256 * MIB
    """Events recorded but not written may hold at most this much memory. Beyond it ``record()``
    drops events (counted, logged, and reported at exit) rather than letting a dead store take the
    process down; ``CallStarted`` and ``CallEnded`` are always kept, so every call keeps its start
    and its end."""
    behind_events: int = 50_000
    """More events than this waiting to be written (about 25 s of 100 calls) means the store is not
    keeping up: no new calls. Half of ``max_pending_bytes`` waiting means the same."""
    failures_before_unhealthy: int = 3
    """Consecutive failed writes before the writer says the store cannot take events (one failed
    write retried 0.1 s later is a hiccup; three in a row, ~0.7 s, is an outage)."""
    stall_after_s: float = 10.0
    """A single write taking longer than this means the store is stuck."""

    def __post_init__(self) -> None:
        if self.max_pending_bytes < 1 or self.behind_events < 1 or self.failures_before_unhealthy < 1:
            raise ValueError("writer limits must be at least 1")
        if not self.stall_after_s > 0:
            raise ValueError("stall_after_s must be positive")


class WriterStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the writer's counters (for metrics, ``/healthz`` and the console)."""

    head: int
    """Last position known written."""
    pending: int
    """Events recorded but not yet written."""
    pending_bytes: int
    recorded: int
    written: int
    dropped: int
    """Events refused by ``record()`` because ``max_pending_bytes`` was reached: lost."""
    batches: int
    failed_writes: int
    """Write attempts that raised, in total."""
    consecutive_failures: int
    last_batch_size: int
    last_batch_seconds: float
    last_error: str | None
    write_seconds: float | None = None
    """How long the write in progress has been running (None when none is)."""
    running: bool = True


def writer_problems(stats: WriterStatistics, limits: WriterLimits) -> list[str]:
    """Why the writer cannot take more calls (empty when it can)."""
    problems: list[str] = []
    if not stats.running:
        problems.append("the event writer is not running")
    if stats.consecutive_failures >= limits.failures_before_unhealthy:
        problems.append(f"the last {stats.consecutive_failures} writes to the event store failed")
    if stats.write_seconds is not None and stats.write_seconds > limits.stall_after_s:
        problems.append(f"a write to the event store has been in progress for {stats.write_seconds:.0f} s")
    if stats.pending > limits.behind_events or stats.pending_bytes > limits.max_pending_bytes // 2:
        problems.append(f"the event writer is behind by {stats.pending:,} events")
    return problems
