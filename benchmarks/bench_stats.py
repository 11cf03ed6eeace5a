"""Small measuring tools shared by the benchmark's processes: percentiles, event-loop lag, CPU.

Every timestamp the benchmark compares across processes is ``time.monotonic()``
(``CLOCK_MONOTONIC``, one clock for the whole machine on Linux). trio's own clock is
``perf_counter()`` (also ``CLOCK_MONOTONIC``) plus a random per-run offset, so a peer converts its
trio timestamps with ``monotonic_offset()``, measured once.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import msgspec
import trio


def monotonic_offset() -> float:
    """Add this to a ``trio.current_time()`` value to get ``time.monotonic()`` (call inside trio.run)."""
    return time.monotonic() - trio.current_time()


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of unsorted ``values``; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class Summary(msgspec.Struct, frozen=True):
    count: int
    p50: float
    p99: float
    max: float
    mean: float


def summarize(values: Sequence[float]) -> Summary:
    if not values:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    ordered = sorted(values)
    return Summary(
        len(ordered), percentile(ordered, 0.5), percentile(ordered, 0.99), ordered[-1], sum(ordered) / len(ordered)
    )


async def watch_loop_lag(samples: list[float], interval_s: float = 0.01) -> None:
    """How late this process's trio loop wakes a task that asked to sleep ``interval_s``
    (seconds, one sample per wake-up): the peer's own scheduling delay, which inflates whatever
    it timestamps. Runs until cancelled."""
    while True:
        due = trio.current_time() + interval_s
        await trio.sleep_until(due)
        samples.append(trio.current_time() - due)


def own_cpu_seconds() -> float:
    """User + system CPU of this process so far."""
    times = os.times()
    return times.user + times.system


_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (``/proc/PID/stat`` utime + stime)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and every process descending from it now (``serve --workers N``: the parent and its
    workers), from ``/proc/*/stat``'s parent ids."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(text[text.rindex(")") + 2 :].split()[1])
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (each as it stands now)."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += process_cpu_seconds(member)
        except OSError:  # it ended in between
            pass
    return total


def tree_peak_rss_mb(pid: int) -> float:
    """The sum of the peak resident sizes of ``pid`` and its descendants, in MiB."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += process_peak_rss_mb(member)
        except OSError:
            pass
    return total


def process_peak_rss_mb(pid: int) -> float:
    """Peak resident set size of process ``pid`` (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, interrupts) CPU seconds of the whole machine since boot, all cores (``/proc/stat``):
    busy is everything but idle and iowait; interrupts (irq + softirq, where the kernel moves
    loopback packets) is part of busy but charged to no process."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user
    idle = fields[3] + fields[4]
    return (total - idle) / _TICKS, (fields[5] + fields[6]) / _TICKS


class CpuWatch:
    """CPU use of named processes and of the whole machine, between successive ``sample()`` calls.

    "other" is the machine's busy time not spent in the watched processes: other programs on the
    machine compete for the same cores and make a run's latencies worse than the bridge's own."""

    def __init__(self, pids: dict[str, int], *, trees: frozenset[str] = frozenset()) -> None:
        self.pids = pids
        self.trees = trees
        """Names whose descendants count as theirs (``server``: ``serve --workers N``'s workers)."""
        self._last: dict[str, float] = {}
        self._last = self._read()
        self._last_at = time.monotonic()

    def _read(self) -> dict[str, float]:
        values: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                values[name] = tree_cpu_seconds(pid) if name in self.trees else process_cpu_seconds(pid)
            except (OSError, IndexError, ValueError):  # exited
                values[name] = self._last.get(name, 0.0)
        busy, interrupts = machine_cpu_seconds()
        values["machine"] = busy
        values["interrupts"] = interrupts
        values["other"] = busy - interrupts - sum(values[name] for name in self.pids)
        return values

    def sample(self) -> dict[str, float]:
        """Cores used by each watched process, ``machine``, ``interrupts`` and ``other`` (programs
        not watched) since the last sample."""
        now, values = time.monotonic(), self._read()
        wall = max(now - self._last_at, 1e-9)
        shares = {name: (values[name] - self._last[name]) / wall for name in values}
        self._last, self._last_at = values, now
        return shares
