"""Loop stalls of every benchmark process: which process's trio loop was busy, when, and in what.

``bridge.py --stalls DIR`` puts this directory first on the children's ``PYTHONPATH`` and sets
``CALLBRIDGE_STALLS_DIR``; Python imports this file at start-up in each of them (the callbridge
server, the peer process, the floor; the asyncio baseline and the busy loops run no trio loop and
write nothing). It wraps ``trio.run`` with an instrument that notes every stretch between two
I/O waits longer than ``CALLBRIDGE_STALLS_MS`` (default 10) — a batch of task steps during which
no socket was read — with the slowest step's task, and every I/O wait that overslept its timeout
by as much (the process was not scheduled, or another thread held the GIL). At exit it writes
``DIR/<pid>-<role>.txt``, one line per stall: ``monotonic_time kind ms steps slowest_ms task``.

This is how the fake model's 70 ms first-reply stall was found: the latency spike lined up with a
stall in *its* file, not the server's.
"""

from __future__ import annotations

import atexit
import os
import sys
import time

_DIR = os.environ.get("CALLBRIDGE_STALLS_DIR")

if _DIR:
    import trio

    _LIMIT = float(os.environ.get("CALLBRIDGE_STALLS_MS", "10")) / 1000
    _rows: list[tuple[float, str, float, int, float, str]] = []

    class _StallWatch(trio.abc.Instrument):
        def __init__(self) -> None:
            self._batch_start: float | None = None
            self._steps = 0
            self._slowest = (0.0, "")
            self._step_start = 0.0
            self._wait_start = 0.0

        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            self._step_start = time.perf_counter()

        def after_task_step(self, task: trio.lowlevel.Task) -> None:
            took = time.perf_counter() - self._step_start
            self._steps += 1
            if took > self._slowest[0]:
                self._slowest = (took, task.name)

        def before_io_wait(self, timeout: float) -> None:
            now = time.perf_counter()
            if self._batch_start is not None and now - self._batch_start > _LIMIT:
                busy = (now - self._batch_start) * 1000
                _rows.append((time.monotonic(), "batch", busy, self._steps, self._slowest[0] * 1000, self._slowest[1]))
            self._wait_start = now

        def after_io_wait(self, timeout: float) -> None:
            now = time.perf_counter()
            overslept = now - self._wait_start - timeout
            if overslept > _LIMIT:
                _rows.append((time.monotonic(), "overslept", overslept * 1000, 0, 0.0, ""))
            self._batch_start, self._steps, self._slowest = now, 0, (0.0, "")

    _run = trio.run
    _ran: list[bool] = []

    def _run_watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs["instruments"] = [*kwargs.get("instruments", ()), _StallWatch()]
        _ran.append(True)
        return _run(*args, **kwargs)

    trio.run = _run_watched

    def _write() -> None:
        if not _ran:  # not a trio process (the asyncio baseline, a busy loop): nothing watched
            return
        word = sys.argv[1] if len(sys.argv) > 1 else ""
        role = word if word.isidentifier() else os.path.basename(sys.argv[0] or "python")
        path = os.path.join(_DIR, f"{os.getpid()}-{role}.txt")
        with open(path, "w") as out:
            for at, kind, ms, steps, slowest_ms, task in _rows:
                out.write(f"{at:.3f} {kind} {ms:.1f} {steps} {slowest_ms:.1f} {task}\n")

    atexit.register(_write)
