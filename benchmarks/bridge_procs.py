"""The benchmark's child processes: starting, reading, profiling and stopping them.

Every process is started through a ``Children`` registry, so whatever happens to the benchmark
(an error, Ctrl-C) none is left running: ``Children.aclose`` kills what is still alive.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import trio
from bench_stats import CpuWatch

HERE = Path(__file__).resolve().parent
PEERS = str(HERE / "peers.py")
MAINSTREAM = str(HERE / "mainstream_bridge.py")
STOP_TIMEOUT_S = 20.0
BUSY_LOOP = "while True: pass"


class Children:
    """The processes this benchmark started (killed on ``aclose`` if still running)."""

    def __init__(self) -> None:
        self.processes: list[trio.Process] = []

    async def start(self, command: list[str], **options: Any) -> trio.Process:
        process = await trio.lowlevel.open_process(command, **options)
        self.processes.append(process)
        return process

    async def aclose(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                with trio.CancelScope(shield=True):
                    await process.wait()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Lines:
    """Lines from a child's stdout pipe."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str | None:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


def pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps a process (and every thread and child it makes) on ``cpus``; None: anywhere."""
    if cpus is None:
        return None
    return partial(os.sched_setaffinity, 0, cpus)


def split_cores(bridge: int) -> tuple[set[int], set[int]]:
    """(the peers' cores, the bridge's cores): the bridge on the first ``bridge`` cores this process may
    use, the peers on the rest — they stand for Twilio and OpenAI, which run on other machines, not on
    the bridge's cores (``--pin``; ``cores.py``'s curve)."""
    cores = sorted(os.sched_getaffinity(0))
    if not 1 <= bridge < len(cores):
        raise ValueError(f"the bridge can have 1 to {len(cores) - 1} of the {len(cores)} cores this process may "
                         f"use (the peers need at least one), not {bridge}")  # fmt: skip
    return set(cores[bridge:]), set(cores[:bridge])


async def start_peer(
    children: Children, args: list[str], stdin: int | None = None, stderr: Any = None, cpus: set[int] | None = None
) -> trio.Process:
    """``peers.py ARGS`` with its stdout piped to us (stderr shared unless given: a crashing peer is seen),
    on ``cpus`` (None: anywhere)."""
    command = [sys.executable, PEERS, *args]
    return await children.start(command, stdout=subprocess.PIPE, stdin=stdin, stderr=stderr, preexec_fn=pinned_to(cpus))


async def start_floor(
    children: Children, model_url: str, log_path: Path, cpus: set[int] | None = None
) -> tuple[trio.Process, int, str]:
    """The floor: ``peer_proxy.py``'s trivial forwarder, its stderr in ``log_path``; returns
    (process, port, stack)."""
    with log_path.open("wb") as log:
        process = await start_peer(children, ["proxy", model_url], stderr=log, cpus=cpus)
    port = int((await first_json_line(process))["port"])
    return process, port, "adapters.websocket (wsproto in the reading task), trio; forwards only"


async def start_mainstream(
    children: Children, model_url: str, log_path: Path, cpus: set[int] | None = None
) -> tuple[trio.Process, int, str]:
    """The mainstream stack's forwarder (``mainstream_bridge.py``), its stderr in ``log_path``;
    returns (process, port, stack). Needs the ``bench`` extra (uvicorn, websockets)."""
    with log_path.open("wb") as log:
        command = [sys.executable, MAINSTREAM, model_url]
        process = await children.start(command, stdout=subprocess.PIPE, stderr=log, preexec_fn=pinned_to(cpus))
    ready = await first_json_line(process)
    stack = ready["stack"]
    return process, int(ready["port"]), f"uvicorn {stack['uvicorn']} ({stack['websocket']}), {stack['loop']}"


async def start_contenders(children: Children, count: int) -> list[trio.Process]:
    """``count`` busy loops, one process each, at niceness 0 (as other tenants' work on a shared
    host: they compete for the cores as equals)."""
    return [await children.start([sys.executable, "-c", BUSY_LOOP], preexec_fn=_niceness_zero) for _ in range(count)]


def _niceness_zero() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:  # the benchmark itself runs niced and may not lower it: the busy loop inherits
        pass


def niceness(pid: int) -> int:
    """The niceness of process ``pid`` (``/proc/PID/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


async def kill_all(processes: list[trio.Process]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        await process.wait()


async def first_json_line(process: trio.Process) -> dict[str, Any]:
    assert process.stdout is not None
    with trio.fail_after(30):
        line = await Lines(process.stdout).next()
    if line is None:
        raise RuntimeError(f"peer {process.args!r} exited before it was ready")
    result: dict[str, Any] = msgspec.json.decode(line)
    return result


PRELUDE_SITE = Path(__file__).resolve().parent / "server_prelude"
"""Holds the ``sitecustomize`` that runs a prelude in the server and in each of its workers."""


async def start_server(
    children: Children,
    workdir: Path,
    model_url: str,
    store_url: str,
    prelude: str | None = None,
    cpus: set[int] | None = None,
) -> tuple[trio.Process, int, Path]:
    """``callbridge serve --model openai`` on a free port, recording into ``store_url`` (its views
    in ``workdir``); returns (process, port, log path). ``prelude``: a Python file run first in the
    server process and in each of its workers (to try a change without editing the code: a
    monkeypatch, …; see ``server_prelude/sitecustomize.py``). ``cpus``: where it and its workers run
    (None: anywhere; its default number of workers is then the number of these cores)."""
    env = {k: v for k, v in os.environ.items() if k not in {"TWILIO_AUTH_TOKEN", "PUBLIC_URL", "HOST", "PORT"}}
    env |= {"OPENAI_API_KEY": "bench-key", "OPENAI_REALTIME_URL": model_url, "CALLBRIDGE_API_TOKEN": "bench"}
    env["CALLBRIDGE_VIEWS"] = str(workdir / "views.db")
    log_path = workdir / "server.log"
    if prelude:
        env["CALLBRIDGE_SERVER_PRELUDE"] = os.path.abspath(prelude)  # noqa: ASYNC240 (no I/O: a path joined)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PRELUDE_SITE), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "callbridge", "serve", "--model", "openai", "--port", "0"]
    with log_path.open("wb") as log:
        process = await children.start(
            [*command, "--store", store_url], stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=pinned_to(cpus)
        )
    with trio.fail_after(30):
        while True:
            found = re.search(r"listening on http://[^:]+:(\d+)", log_path.read_text(errors="replace"))
            if found:
                return process, int(found.group(1)), log_path
            if process.poll() is not None:
                raise RuntimeError(f"callbridge serve exited early:\n{log_path.read_text()}")
            await trio.sleep(0.05)


async def stop(process: trio.Process, name: str) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    with trio.move_on_after(STOP_TIMEOUT_S):
        await process.wait()
        return
    say(f"{name} did not stop within {STOP_TIMEOUT_S:g} s after SIGINT: killed")
    process.kill()
    await process.wait()


def server_errors(log_path: Path) -> list[str]:
    lines = log_path.read_text(errors="replace").splitlines()
    markers = (" ERROR ", "ERROR:", "Traceback", "mainstream bridge:")
    return [line for line in lines if any(marker in line for marker in markers)]


async def start_profiler(children: Children, pid: int, out: Path, seconds: float) -> trio.Process | None:
    """``py-spy record`` of ``pid`` for ``seconds`` (collapsed stacks in ``out``), if py-spy is
    installed next to this Python; None otherwise."""
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        say(f"--profile: {py_spy} not found (pip install py-spy into the venv); not profiling")
        return None
    # blocking mode (the default) pauses the process for each sample (~1% at 100 Hz) but reads whole
    # stacks; --nonblocking often records torn ones
    # --subprocesses: with ``serve --workers N`` the process is only the supervisor; the engines are its children
    command = [str(py_spy), "record", "--pid", str(pid), "--subprocesses", "--duration", str(max(1, int(seconds))),
               "--rate", "100", "--format", "raw", "--output", str(out)]  # fmt: skip
    return await children.start(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def wait_until_quiet(max_wait_s: float, threshold_cores: float = 0.15) -> float:
    """Wait (up to ``max_wait_s``) until the rest of the machine uses less than ``threshold_cores``
    over two seconds: other programs on a shared machine (a test suite, a build) steal the
    cores the bridge and its peers need and make a run's latencies meaningless. Returns what the
    machine used in the last window."""
    watch = CpuWatch({"benchmark": os.getpid()})
    deadline = trio.current_time() + max_wait_s
    while True:
        await trio.sleep(2.0)
        cores = watch.sample()
        other = cores["other"]
        if other < threshold_cores or trio.current_time() >= deadline:
            if other >= threshold_cores:
                say(f"the machine is still busy ({other:.2f} cores used by other programs): measuring anyway")
            return other
        say(f"waiting for the machine to be quiet: other programs use {other:.2f} cores")
