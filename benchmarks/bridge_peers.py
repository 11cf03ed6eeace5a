"""Driving the peer process from the benchmark: start it, hand it the bridge, follow the calls.

The peer process (``peers.py peers``) serves the simulated model and runs every simulated caller
(``--peer-processes P``: P of them, each with its share of the calls, their models on one port).
While the calls run, this samples once a second the CPU of the bridge, the peer process, the
``--contend`` busy loops and the rest of the machine, and prints a progress line with them.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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


@dataclass
class PeerGroup:
    """The peer processes of one run (``--peer-processes``; one by default), their shared model's
    URL and their niceness."""

    processes: list[trio.Process]
    outputs: list[Path]
    model_url: str
    nice: int


def shares(calls: int, processes: int) -> list[range]:
    """The calls each peer process runs: consecutive indexes, as even as they divide."""
    return [range(i * calls // processes, (i + 1) * calls // processes) for i in range(processes)]


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
    processes: int = 1,
) -> PeerGroup:
    """``processes`` peer processes on ``cpus`` (None: anywhere), each with its share of the calls and
    their simulated model listening on one port (the first picks it); each writes what it saw to
    ``out`` (the first) or ``out`` with its number (``peers-2.json``, …)."""
    group: PeerGroup | None = None
    for number, share in enumerate(shares(calls, processes), 1):
        path = out if number == 1 else out.with_name(f"{out.stem}-{number}{out.suffix}")
        args = ["peers", str(path), "--calls", str(len(share)), "--first", str(share.start), "--seconds",
                str(seconds), "--ramp", str(ramp_s), "--stagger", str(stagger_s), "--nice", str(nice)]  # fmt: skip
        if group is not None:
            args += ["--model-port", str(urlsplit(group.model_url).port)]
        process = await start_peer(children, args, stdin=subprocess.PIPE, cpus=cpus)
        ready = await first_json_line(process)
        if group is None:
            group = PeerGroup(processes=[], outputs=[], model_url=str(ready["model_url"]), nice=int(ready["nice"]))
        group.processes.append(process)
        group.outputs.append(path)
    assert group is not None
    return group


async def run_calls(
    peers: PeerGroup,
    base_url: str,
    *,
    direct: bool,
    calls: int,
    seconds: float,
    ramp_s: float,
    watched: dict[str, int],
) -> CallsRun:
    """Tell the peer processes to call ``base_url`` and follow them until every call has ended,
    sampling the CPU of the ``watched`` processes (``server`` and ``contender…``)."""
    go = msgspec.json.encode(Go(base_url=base_url, direct=direct)) + b"\n"
    for process in peers.processes:
        assert process.stdin is not None
        await process.stdin.send_all(go)
    started = time.monotonic()
    progress = [Progress(0, 0, 0, 0) for _ in peers.processes]
    following = len(peers.processes)
    done = trio.Event()

    async def follow(number: int, stdout: trio.abc.ReceiveStream) -> None:
        nonlocal following
        lines = Lines(stdout)
        while (line := await lines.next()) is not None:
            update = decode_progress(line)
            if update is None:
                break
            progress[number] = update
        following -= 1  # finished, or the peer process died (its stderr says why)
        if not following:
            done.set()

    contenders = [name for name in watched if name.startswith("contender")]
    # the server with its workers: else they would count as other programs disturbing the run
    mine = {f"peers{number}": process.pid for number, process in enumerate(peers.processes)}
    watch = CpuWatch(watched | mine | {"benchmark": os.getpid()}, trees=frozenset({"server"}))
    timeline: list[CpuSample] = []
    peak = 0
    async with trio.open_nursery() as nursery:
        for number, process in enumerate(peers.processes):
            assert process.stdout is not None
            nursery.start_soon(follow, number, process.stdout)
        while not done.is_set():
            with trio.move_on_after(1.0):
                await done.wait()
            cores, now = watch.sample(), time.monotonic()
            sample = CpuSample(
                t=now - started,
                server=cores["server"],
                peers=sum(cores[name] for name in mine),
                contenders=sum(cores[name] for name in contenders),
                interrupts=cores["interrupts"],
                other=cores["other"] - cores["benchmark"],
            )
            if not done.is_set():  # the last, partial second would skew the averages
                timeline.append(sample)
            total = Progress(*(sum(getattr(p, field) for p in progress) for field in Progress.__struct_fields__))
            peak = max(peak, total.live)
            left = max(0.0, started + ramp_s + seconds - now)
            failed = f", {total.failed} failed" if total.failed else ""
            say(
                f"  {sample.t:5.1f} s: {total.connected}/{calls} calls connected, {total.live} live, "
                f"{total.ended} ended{failed}; ~{left:.0f} s left; "
                f"CPU (cores): server {sample.server:.2f}, peers {sample.peers:.2f}"
                + (f", contenders {sample.contenders:.2f}" if contenders else "")
                + f", kernel irq {sample.interrupts:.2f}, other {sample.other:+.2f}"
            )
    for process in peers.processes:
        if process.poll() is not None:
            raise RuntimeError(f"a peer process exited with {process.returncode} before the calls ended")
    count = max(1, len(timeline))
    fields = ("server", "peers", "contenders", "interrupts", "other")
    overall = {name: sum(getattr(sample, name) for sample in timeline) / count for name in fields}
    return CallsRun(peak_live=peak, cores=overall, timeline=timeline)
