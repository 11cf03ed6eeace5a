"""One measured run: one target (callbridge, mainstream or floor) bridging the peers' calls.

Order: wait for a quiet machine (``--wait-quiet``), start the ``--contend`` busy loops, the peer
process (its simulated model listening), then the target pointed at that model; the peers call
the target while the CPU of everything is sampled; the target is stopped with SIGINT (callbridge
flushes its store), then the peer process (it writes what it saw), then the busy loops; then
callbridge's store is checked.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import trio
from bench_stats import tree_cpu_seconds, tree_peak_rss_mb
from bridge_analysis import FRAME_S, downlink, send_lateness, uplink
from bridge_peers import run_calls, start_peers
from bridge_procs import (
    Children,
    kill_all,
    niceness,
    say,
    server_errors,
    start_contenders,
    start_floor,
    start_mainstream,
    start_profiler,
    start_server,
    stop,
    wait_until_quiet,
)
from bridge_report import PeerLoad, RunResult, check_store
from peer_callers import EXCHANGE_S
from peers import read_peers_output
from profile_summary import summarize as summarize_profile


@dataclass(frozen=True)
class Plan:
    """What one run measures, and where it keeps its files."""

    target: str
    round: int
    calls: int
    workdir: Path


async def run_once(args: argparse.Namespace, plan: Plan) -> RunResult:
    plan.workdir.mkdir(parents=True, exist_ok=True)
    if args.stalls:
        stalls = Path(args.stalls).resolve() / plan.workdir.relative_to(args.workroot)  # noqa: ASYNC240
        stalls.mkdir(parents=True, exist_ok=True)
        os.environ["CALLBRIDGE_STALLS_DIR"] = str(stalls)
    children = Children()
    try:
        return await measure(args, plan, children)
    finally:
        await children.aclose()


async def _start_target(
    args: argparse.Namespace, plan: Plan, children: Children, model_url: str, store_url: str
) -> tuple[trio.Process, int, Path, str]:
    """The target's process, port, log file and a description of its stack."""
    log_path = plan.workdir / "server.log"
    cpus = args.cores[1] if args.cores else None
    if plan.target == "callbridge":
        server, port, log_path = await start_server(
            children, plan.workdir, model_url, store_url, args.server_prelude, cpus
        )
        return server, port, log_path, "callbridge serve"
    if plan.target == "mainstream":
        server, port, stack = await start_mainstream(children, model_url, log_path, cpus)
    else:
        server, port, stack = await start_floor(children, model_url, log_path, cpus)
    return server, port, log_path, stack


async def measure(args: argparse.Namespace, plan: Plan, children: Children) -> RunResult:
    target, workdir = plan.target, plan.workdir
    if args.wait_quiet:
        await wait_until_quiet(args.wait_quiet)
    load_average = float(Path("/proc/loadavg").read_text().split()[0])  # noqa: ASYNC240 (a tiny /proc read)
    contenders = await start_contenders(children, args.contend)
    if contenders:
        say(f"{target}: {len(contenders)} busy loop(s) at niceness {niceness(contenders[0].pid)} keep cores busy")
    peers = await start_peers(
        children,
        workdir / "peers.json",
        calls=plan.calls,
        seconds=args.seconds,
        ramp_s=args.ramp,
        stagger_s=0.0 if args.lockstep else EXCHANGE_S,
        nice=args.peers_nice,
        cpus=args.cores[0] if args.cores else None,
        processes=args.peer_processes,
    )
    model_url = peers.model_url
    store_url = args.store or str(workdir / "callbridge.db")
    server, port, log_path, stack = await _start_target(args, plan, children, model_url, store_url)
    base_url = f"http://127.0.0.1:{port}"
    say(f"{target} (round {plan.round}): {stack} on {base_url} (pid {server.pid}), peers pid "
        f"{', '.join(str(process.pid) for process in peers.processes)}; "
        f"{plan.calls} calls x {args.seconds:g} s")  # fmt: skip
    profiler = profile = None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        profile = Path(args.profile) / f"{workdir.relative_to(args.workroot)}.txt".replace(os.sep, "-")
        profiler = await start_profiler(children, server.pid, profile, args.ramp + args.seconds)
    cpu_start, wall_start = tree_cpu_seconds(server.pid), time.monotonic()  # with its workers, if any
    watched = {"server": server.pid} | {f"contender{i}": p.pid for i, p in enumerate(contenders)}
    calls = await run_calls(
        peers,
        base_url,
        direct=target == "floor",
        calls=plan.calls,
        seconds=args.seconds,
        ramp_s=args.ramp,
        watched=watched,
    )
    server_cpu, wall = tree_cpu_seconds(server.pid) - cpu_start, time.monotonic() - wall_start
    rss = tree_peak_rss_mb(server.pid)
    if profiler is not None and profile is not None:
        await profiler.wait()
        summary = summarize_profile(profile.read_text().splitlines(), top=25)
        profile.with_name(profile.stem + "-summary.txt").write_text(summary)
        say(f"{target}: profile of the server (py-spy, {profile}):\n{summary}")
    say(f"{target}: calls done; stopping the server (SIGINT), then the peers")
    await stop(server, target)
    for process in peers.processes:
        await stop(process, "the peer process")
    await kill_all(contenders)
    for process, output in zip(peers.processes, peers.outputs, strict=True):
        if process.returncode != 0 or not output.exists():
            raise RuntimeError(f"a peer process failed (exit status {process.returncode}): its traceback is above")
    if args.stalls:
        stalls_found = summarize_stalls(Path(os.environ["CALLBRIDGE_STALLS_DIR"]))
        say(f"{target}: trio loop stalls over 10 ms, per process:\n{stalls_found}")
    seen = read_peers_output(peers.outputs)
    logs, sessions = seen.calls, seen.sessions
    store = await trio.to_thread.run_sync(check_store, store_url, logs) if target == "callbridge" else None
    reports = [log.report for log in logs if log.report is not None]
    call_minutes = sum(len(log.sent) for log in logs) * FRAME_S / 60  # minutes of caller audio
    return RunResult(
        target=target,
        round=plan.round,
        stack=stack,
        calls=plan.calls,
        seconds=args.seconds,
        lockstep=args.lockstep,
        peak_concurrent_calls=calls.peak_live,
        failed_calls=sum(1 for report in reports if not report.ok),
        call_errors=[error for report in reports for error in report.errors],
        clears_received=sum(report.clears_received for report in reports),
        call_minutes=call_minutes,
        uplink=uplink(logs, sessions),
        downlink=downlink(logs, sessions),
        server_cpu_s=server_cpu,
        server_cpu_s_per_call_minute=server_cpu / call_minutes if call_minutes else float("nan"),
        server_cpu_share=server_cpu / wall,
        server_peak_rss_mb=rss,
        store=store,
        peers=PeerLoad(
            cores=calls.cores["peers"],
            processes=len(peers.processes),
            nice=peers.nice,
            loop_lag_ms_p99=seen.summary.loop_lag_ms_p99,
            loop_lag_ms_max=seen.summary.loop_lag_ms_max,
            send_late_ms=send_lateness(logs),
            contenders=len(contenders),
            contender_cores=calls.cores["contenders"],
            interrupt_cores=calls.cores["interrupts"],
            other_cores=calls.cores["other"],
            other_cores_peak=max((sample.other for sample in calls.timeline), default=0.0),
            load_average=load_average,
        ),
        server_log_errors=server_errors(log_path),
        cpu_timeline=calls.timeline,
    )


def summarize_stalls(directory: Path, worst: int = 3) -> str:
    """Per process file of ``stall_watch``: how many stalls, and the longest few."""
    lines = []
    for path in sorted(directory.glob("*.txt")):
        rows = [line.split(maxsplit=5) for line in path.read_text().splitlines()]
        rows.sort(key=lambda row: -float(row[2]))
        longest = "; ".join(f"{float(r[2]):.0f} ms {r[1]} ({r[5] if len(r) > 5 else '-'})" for r in rows[:worst])
        lines.append(f"  {path.stem}: {len(rows)} stalls{'; longest ' + longest if rows else ''}")
    return "\n".join(lines) or "  (no stall files: did the processes exit cleanly?)"
