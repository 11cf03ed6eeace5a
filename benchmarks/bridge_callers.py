"""Running the caller processes from the benchmark: progress lines, CPU watch, collected logs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec
import trio
from bench_stats import CpuWatch
from bridge_procs import Children, Lines, say, start_peer
from peer_callers import CallLog, Progress
from peers import read_caller_logs


class CpuSample(msgspec.Struct, array_like=True):
    """One second of the run: cores used by each process, and by the rest of the machine."""

    t: float
    server: float
    model: float
    callers: float
    interrupts: float
    """Kernel interrupt time (loopback networking), charged to no process."""
    other: float


class CallersRun(msgspec.Struct, kw_only=True):
    logs: list[CallLog]
    cpu_s: float
    """The caller processes' own CPU."""
    loop_lag_ms_p99: float
    """The worst caller process's event-loop lag p99."""
    peak_live: int
    cores: dict[str, float]
    """Average cores used by ``server``, ``model``, ``callers`` and ``other`` (the rest of the
    machine) while every caller process ran."""
    timeline: list[CpuSample]


async def run_callers(
    children: Children,
    base_url: str,
    workdir: Path,
    *,
    calls: int,
    seconds: float,
    ramp_s: float,
    stagger_s: float,
    procs: int,
    direct: bool,
    watched: dict[str, int],
) -> CallersRun:
    """Run ``calls`` callers over ``procs`` processes to the end, printing a progress line a second
    and sampling the CPU of the ``watched`` processes (``server``, ``model``), the callers, and the
    rest of the machine."""
    shares = [range(calls)[i::procs] for i in range(procs)]
    callers: list[tuple[trio.Process, Path]] = []
    progress: list[Progress] = [Progress(0, 0, 0, 0) for _ in shares]
    for number, share in enumerate(shares):
        out = workdir / f"callers-{number}.jsonl"
        # interleaved indexes, so each process ramps over the same time span
        args = ["callers", base_url, str(out), "--first", str(share.start), "--count", str(len(share)),
                "--stride", str(procs), "--seconds", str(seconds), "--ramp", str(ramp_s),
                "--stagger", str(stagger_s)]  # fmt: skip
        callers.append((await start_peer(children, args + (["--direct"] if direct else [])), out))
    started = time.monotonic()

    async def follow(index: int, process: trio.Process) -> None:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        while (line := await lines.next()) is not None:
            progress[index] = msgspec.json.decode(line, type=Progress)

    timeline: list[CpuSample] = []
    peak = 0
    caller_pids = {f"callers{i}": process.pid for i, (process, _) in enumerate(callers)}
    watch = CpuWatch(watched | caller_pids | {"benchmark": os.getpid()})
    async with trio.open_nursery() as nursery:
        for index, (process, _) in enumerate(callers):
            nursery.start_soon(follow, index, process)
        while any(process.poll() is None for process, _ in callers):
            await trio.sleep(1.0)
            all_running = all(process.poll() is None for process, _ in callers)
            cores, now = watch.sample(), time.monotonic()
            sample = CpuSample(
                t=now - started,
                server=cores["server"],
                model=cores["model"],
                callers=sum(cores[name] for name in caller_pids),
                interrupts=cores["interrupts"],
                other=cores["other"] - cores["benchmark"],
            )
            if all_running:  # an exited process's last CPU would be counted as "other"
                timeline.append(sample)
            connected = sum(p.connected for p in progress)
            live, ended, failed = (sum(p.live for p in progress), sum(p.ended for p in progress),
                                   sum(p.failed for p in progress))  # fmt: skip
            peak = max(peak, live)
            left = max(0.0, started + ramp_s + seconds - now)
            say(
                f"  {sample.t:5.1f} s: {connected}/{calls} calls connected, {live} live, {ended} ended"
                f"{f', {failed} failed' if failed else ''}; ~{left:.0f} s left; CPU (cores): "
                f"server {sample.server:.2f}, model {sample.model:.2f}, callers {sample.callers:.2f}, "
                f"kernel irq {sample.interrupts:.2f}, other {sample.other:+.2f}"
            )
    logs: list[CallLog] = []
    cpu_s, lag = 0.0, 0.0
    for process, out in callers:
        if process.returncode != 0:
            raise RuntimeError(f"caller process exited with {process.returncode}")
        share_logs, summary = read_caller_logs(out)
        logs += share_logs
        cpu_s += summary.cpu_s
        lag = max(lag, summary.loop_lag_ms_p99)
    logs.sort(key=lambda log: log.index)
    count = max(1, len(timeline))
    overall = {
        "server": sum(sample.server for sample in timeline) / count,
        "model": sum(sample.model for sample in timeline) / count,
        "callers": sum(sample.callers for sample in timeline) / count,
        "interrupts": sum(sample.interrupts for sample in timeline) / count,
        "other": sum(sample.other for sample in timeline) / count,
    }
    return CallersRun(logs=logs, cpu_s=cpu_s, loop_lag_ms_p99=lag, peak_live=peak, cores=overall, timeline=timeline)
