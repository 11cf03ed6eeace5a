"""Driving the peer process from the benchmark: start it, hand it the bridge, follow the calls.

The peer process (``peers.py peers``) serves the simulated model and runs every simulated caller.
While the calls run, this samples once a second the CPU of the bridge, the peer process, the
``--contend`` busy loops and the rest of the machine, and prints a progress line with them.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import msgspec
import trio
from bench_stats import CpuWatch
from bridge_procs import Children, Lines, first_json_line, say, start_peer
from peer_callers import Progress
from peers import Go, decode_progress


class CpuSample(msgspec.Struct, array_like=True):
    """One second of the run: cores used by each process, and by the rest of the machine."""

    t: float
    server: float
    peers: float
    contenders: float
    interrupts: float
    """Kernel interrupt time (loopback networking), charged to no process."""
    other: float


class CallsRun(msgspec.Struct, kw_only=True):
    peak_live: int
    cores: dict[str, float]
    """Average cores used by ``server``, ``peers``, ``contenders``, ``interrupts`` and ``other`` (the
    rest of the machine) while the calls ran."""
    timeline: list[CpuSample]


async def start_peers(
    children: Children,
    out: Path,
    *,
    calls: int,
    seconds: float,
    ramp_s: float,
    stagger_s: float,
    nice: int,
    cpus: set[int] | None = None,
) -> tuple[trio.Process, str, int]:
    """The peer process, its simulated model listening, on ``cpus`` (None: anywhere); returns
    (process, model URL, niceness)."""
    args = ["peers", str(out), "--calls", str(calls), "--seconds", str(seconds), "--ramp", str(ramp_s),
            "--stagger", str(stagger_s), "--nice", str(nice)]  # fmt: skip
    process = await start_peer(children, args, stdin=subprocess.PIPE, cpus=cpus)
    ready = await first_json_line(process)
    return process, str(ready["model_url"]), int(ready["nice"])


async def run_calls(
    peers: trio.Process,
    base_url: str,
    *,
    direct: bool,
    calls: int,
    seconds: float,
    ramp_s: float,
    watched: dict[str, int],
) -> CallsRun:
    """Tell the peer process to call ``base_url`` and follow it until every call has ended,
    sampling the CPU of the ``watched`` processes (``server`` and ``contender…``)."""
    assert peers.stdin is not None and peers.stdout is not None
    await peers.stdin.send_all(msgspec.json.encode(Go(base_url=base_url, direct=direct)) + b"\n")
    started = time.monotonic()
    progress = Progress(0, 0, 0, 0)
    done = trio.Event()

    async def follow(stdout: trio.abc.ReceiveStream) -> None:
        nonlocal progress
        lines = Lines(stdout)
        while (line := await lines.next()) is not None:
            update = decode_progress(line)
            if update is None:
                break
            progress = update
        done.set()  # finished, or the peer process died (its stderr says why)

    contenders = [name for name in watched if name.startswith("contender")]
    # the server with its workers: else they would count as other programs disturbing the run
    watch = CpuWatch(watched | {"peers": peers.pid, "benchmark": os.getpid()}, trees=frozenset({"server"}))
    timeline: list[CpuSample] = []
    peak = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, peers.stdout)
        while not done.is_set():
            with trio.move_on_after(1.0):
                await done.wait()
            cores, now = watch.sample(), time.monotonic()
            sample = CpuSample(
                t=now - started,
                server=cores["server"],
                peers=cores["peers"],
                contenders=sum(cores[name] for name in contenders),
                interrupts=cores["interrupts"],
                other=cores["other"] - cores["benchmark"],
            )
            if not done.is_set():  # the last, partial second would skew the averages
                timeline.append(sample)
            peak = max(peak, progress.live)
            left = max(0.0, started + ramp_s + seconds - now)
            failed = f", {progress.failed} failed" if progress.failed else ""
            say(
                f"  {sample.t:5.1f} s: {progress.connected}/{calls} calls connected, {progress.live} live, "
                f"{progress.ended} ended{failed}; ~{left:.0f} s left; "
                f"CPU (cores): server {sample.server:.2f}, peers {sample.peers:.2f}"
                + (f", contenders {sample.contenders:.2f}" if contenders else "")
                + f", kernel irq {sample.interrupts:.2f}, other {sample.other:+.2f}"
            )
    if peers.poll() is not None:
        raise RuntimeError(f"the peer process exited with {peers.returncode} before the calls ended")
    count = max(1, len(timeline))
    fields = ("server", "peers", "contenders", "interrupts", "other")
    overall = {name: sum(getattr(sample, name) for sample in timeline) / count for name in fields}
    return CallsRun(peak_live=peak, cores=overall, timeline=timeline)
