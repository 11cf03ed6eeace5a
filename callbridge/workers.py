"""``callbridge serve --workers N``: every core carries calls, on one port.

Python runs one thread of Python at a time, so one process uses one core however many calls it
carries. ``serve`` with N workers binds the listening socket once and starts N engine processes
(``python -m callbridge serve --worker I/N --listen-fd FD``) that all accept on it, each on its turn
(``web.worker_board``): the first fills — to ``CALLBRIDGE_WORKER_FILL`` calls, or until it uses 0.8 of
a core — before the next takes any, so a lightly loaded server is one busy process. They share the store
(SQLite in WAL mode, or PostgreSQL) and the views: worker 0 folds the views, the others follow how far
it got (one projection process, not N).
Each worker is an engine of its own (``<engine id>-w<I>``, with its own heartbeats), so the console,
API, live feed and MCP of any worker see every worker's calls (they read the log and the views), an
operator's command reaches the call through the log (``projections/call_commands.py``), and the calls
of a worker that dies are ended for it. This process only starts, watches and stops them: SIGINT or
SIGTERM is passed on (the workers run in a session of their own, so a terminal's Ctrl-C reaches them
once, through this process), and it exits with the worst status of theirs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from callbridge.web.worker_board import WorkerBoard

log = logging.getLogger(__name__)

WORKERS_ENV = "CALLBRIDGE_WORKERS"
FILL_ENV = "CALLBRIDGE_WORKER_FILL"
DEFAULT_FILL = 200
"""Calls a worker carries at most before the next one takes any; before that, from 0.8 of a core of
CPU (``web.worker_board.BUSY_LIMIT``). Measured on two cores (README, the 2026-12-06 afternoon session): one
worker carried 150 calls at p99 11 ms using half a core on a fast day; on a day 2.4 times slower,
the CPU it uses, not this count, is what hands calls on."""
STOP_GRACE_S = 12.0
"""A worker has 10 s to stop (docs/contract.md); after this it is killed."""


def default_workers(environ: dict[str, str] | None = None) -> int:
    """``CALLBRIDGE_WORKERS``, else the number of cores this process may run on."""
    env = os.environ if environ is None else environ
    text = env.get(WORKERS_ENV, "").strip()
    if text:
        count = int(text)  # a bad value is the settings' error to report
        if count < 1:
            raise ValueError(f"{WORKERS_ENV} must be at least 1, got {count}")
        return count
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def worker_fill(environ: dict[str, str] | None = None) -> int:
    """``CALLBRIDGE_WORKER_FILL``, else :data:`DEFAULT_FILL`; 0 spreads calls evenly from the first."""
    env = os.environ if environ is None else environ
    text = env.get(FILL_ENV, "").strip()
    if not text:
        return DEFAULT_FILL
    try:
        fill = int(text)
    except ValueError:
        raise ValueError(f"{FILL_ENV} must be a whole number of calls, got {text!r}") from None
    if fill < 0:
        raise ValueError(f"{FILL_ENV} must be 0 or more, got {fill}")
    return fill


def bind(host: str, port: int) -> socket.socket:
    """The shared listening socket (raises ``OSError`` when the port is taken, as ``serve`` alone does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024, reuse_port=False)
    sock.set_inheritable(True)
    return sock


def worker_argv(
    argv: Sequence[str], index: int, count: int, fd: int, port: int, ready_fd: int, board_fd: int
) -> list[str]:
    """The parent's ``serve`` arguments for worker ``index``: its place, the inherited socket and
    board, and the bound port (so every worker derives the same public URL)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--port=")):
            continue
        kept.append(arg)
    place = ["--workers", "1", "--worker", f"{index}/{count}", "--listen-fd", str(fd), "--ready-fd", str(ready_fd)]
    place += ["--board-fd", str(board_fd)]
    return [*kept, "--port", str(port), *place]


def run_workers(
    argv: Sequence[str], count: int, sock: socket.socket, base_engine_id: str, announce: Callable[[], None]
) -> int:
    """Start ``count`` workers on ``sock`` and wait for them; returns the worst exit status. The
    signals are passed on from before the first worker starts; ``announce`` runs once they are."""
    fd = sock.fileno()
    port = sock.getsockname()[1]
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()

    def pass_on(signum: int, _frame: object) -> None:
        stop.set()
        _signal_all(children, signum)

    def drain(signum: int, _frame: object) -> None:
        _signal_all(children, signum)  # each worker drains; this process waits for them as ever

    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, drain)
    ready_read, ready_write = os.pipe()
    board = WorkerBoard.create(count)
    for index in range(count):
        env = {**os.environ, "CALLBRIDGE_ENGINE_ID": f"{base_engine_id}-w{index}"}
        place = worker_argv(argv, index, count, fd, port, ready_write, board.fd)
        passed = (fd, ready_write, board.fd)
        children.append(
            subprocess.Popen(  # a session of its own: a terminal's Ctrl-C reaches this process alone, which
                # passes it on once (twice, a worker could meet the second after its stop: exit -2)
                [sys.executable, "-m", "callbridge", *place],
                pass_fds=passed,
                env=env,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        )
    sock.close()  # the workers hold it now
    board.close()
    os.close(ready_write)
    if stop.is_set():  # a signal came while they were starting
        _signal_all(children, signal.SIGTERM)
    log.info("started %d workers (pids %s) on port %d", count, ", ".join(str(c.pid) for c in children), port)
    if _all_ready(ready_read, count):
        announce()
    os.close(ready_read)
    try:
        while not stop.wait(0.5) and all(child.poll() is None for child in children):
            pass
        if not stop.is_set():  # a worker ended by itself: stop the others rather than limp on
            died = next(child for child in children if child.poll() is not None)
            log.error("worker %d %s: stopping the others", died.pid, how_it_ended(died.returncode))
            _signal_all(children, signal.SIGTERM)
        statuses = [_reap(child) for child in children]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    worst = max(statuses, key=lambda status: (status != 0, abs(status)))
    log.info("workers stopped (exit statuses %s)", ", ".join(map(str, statuses)))
    return 1 if worst < 0 else worst


def _all_ready(ready_read: int, count: int) -> bool:
    """Until every worker wrote it listens (False when one ended first: its pipe end closed)."""
    got = 0
    while got < count:
        data = os.read(ready_read, count - got)  # interrupted by a signal: Python retries it
        if not data:
            return False
        got += len(data)
    return True


def _die_with_parent() -> None:
    """In the worker, before it runs: if this parent dies (even ``kill -9``), the kernel kills the
    worker too (Linux ``PR_SET_PDEATHSIG``), so no orphaned engine keeps carrying calls nobody manages."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed parent
        pass


def how_it_ended(status: int) -> str:
    """``exited with status 1``, or ``was killed by SIGSEGV`` (a negative status is the signal)."""
    if status >= 0:
        return f"exited with status {status}"
    try:
        name = signal.Signals(-status).name
    except ValueError:
        name = f"signal {-status}"
    return f"was killed by {name}"


def _signal_all(children: list[subprocess.Popen[bytes]], signum: int) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signum)


def _reap(child: subprocess.Popen[bytes]) -> int:
    try:
        return child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        log.error("worker %d did not stop within %.0f s: killed", child.pid, STOP_GRACE_S)
        child.kill()
        return child.wait()
