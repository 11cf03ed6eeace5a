"""How much latency, CPU and loss the bridge adds, with simulated calls at real-time pace.

    .venv/bin/python benchmarks/bridge.py [--calls 100] [--seconds 30] [--baseline] [--json]

Three kinds of process, so the bridge's own CPU is read from ``/proc`` alone:

- ``callbridge serve --model openai`` with a temporary SQLite store (``--store URL``: another, e.g.
  PostgreSQL) and a free port, pointed (by
  ``OPENAI_REALTIME_URL``) at
- the simulated realtime model (``peers.py fake``: ``serve_fake_openai``, the code behind
  ``callbridge fake-openai``, which records when every frame arrived and left), and
- the simulated callers (``peers.py callers``, one process): a 20 ms ``media`` frame per call at
  real-time pace, each tagged with its (call, frame) number; replies played and marks echoed like
  Twilio; turns staggered across calls (``--lockstep``: every call speaks at the same moments).

Added latency per direction, from ``time.monotonic()`` in the peers (one clock on Linux): uplink =
caller sends a frame → the model receives the ``input_audio_buffer.append`` carrying it; downlink =
the model sends a ``response.output_audio.delta`` → the caller receives the ``media`` carrying it.
Raw numbers: nothing is subtracted, so they include the peers' own scheduling delays (their loop
lag is reported; their garbage collector is kept from pausing them, see ``peers.quiet_collector``).
Afterwards the server is stopped with SIGINT (it flushes) and the store is checked: every call has
``CallStarted``, ``CallEnded`` and all the caller frames it sent.

``--baseline`` then runs the same peers through a trivial forwarding proxy (``peer_proxy.py``): the
floor this machine and these libraries allow. The machine must be otherwise idle: the run waits for
quiet (``--wait-quiet``), samples the rest of the machine's CPU every second and flags a run that
other programs disturbed. To look inside: ``--profile DIR`` (py-spy, see ``profile_summary.py``),
``--stalls DIR`` (every trio loop stall in every process, see ``stall_watch/sitecustomize.py``),
``--server-prelude FILE`` (try a patch in the server process without editing the code), ``--keep``.

Progress goes to stderr; the Markdown table (or ``--json``) to stdout. Exit status 1 when a call
failed, a frame was lost or an event is missing from the store; latency is reported, not judged.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import trio
from bench_stats import process_cpu_seconds, process_peak_rss_mb
from bridge_analysis import downlink, uplink
from bridge_callers import run_callers
from bridge_procs import (
    Children,
    first_json_line,
    say,
    server_errors,
    start_peer,
    start_profiler,
    start_server,
    stop,
    wait_until_quiet,
)
from bridge_report import PeerLoad, RunResult, check_store, render_details, render_table
from peer_callers import EXCHANGE_S
from peer_fake import read_timings
from profile_summary import summarize as summarize_profile


async def run_once(args: argparse.Namespace, workdir: Path, target: str) -> RunResult:
    workdir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before any peer runs)
    if args.stalls:
        stalls = Path(args.stalls).resolve() / target  # noqa: ASYNC240 (before any peer runs)
        stalls.mkdir(parents=True, exist_ok=True)
        os.environ["CALLBRIDGE_STALLS_DIR"] = str(stalls)
    children = Children()
    try:
        return await measure(args, workdir, target, children)
    finally:
        await children.aclose()


async def measure(args: argparse.Namespace, workdir: Path, target: str, children: Children) -> RunResult:
    if args.wait_quiet:
        await wait_until_quiet(args.wait_quiet)
    fake = await start_peer(children, ["fake", str(workdir / "fake.jsonl")])
    ready = await first_json_line(fake)
    store_url = args.store or str(workdir / "callbridge.db")
    log_path: Path | None = None
    if target == "bridge":
        server, port, log_path = await start_server(children, workdir, ready["url"], store_url, args.server_prelude)
    else:
        server = await start_peer(children, ["proxy", ready["url"]])
        port = (await first_json_line(server))["port"]
    base_url = f"http://127.0.0.1:{port}"
    say(f"{target}: serving on {base_url} (pid {server.pid}), model pid {fake.pid}; "
        f"{args.calls} calls x {args.seconds:g} s")  # fmt: skip
    profiler = None
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
        profile = Path(args.profile) / f"{target}.txt"
        profiler = await start_profiler(children, server.pid, profile, args.ramp + args.seconds)
    cpu_start, wall_start = process_cpu_seconds(server.pid), time.monotonic()
    run = await run_callers(
        children,
        base_url,
        workdir,
        calls=args.calls,
        seconds=args.seconds,
        ramp_s=args.ramp,
        stagger_s=0.0 if args.lockstep else EXCHANGE_S,
        procs=args.caller_procs,
        direct=target != "bridge",
        watched={"server": server.pid, "model": fake.pid},
    )
    logs = run.logs
    server_cpu, wall = process_cpu_seconds(server.pid) - cpu_start, time.monotonic() - wall_start
    rss = process_peak_rss_mb(server.pid)
    if profiler is not None:
        await profiler.wait()
        summary = summarize_profile(profile.read_text().splitlines(), top=25)
        (profile.parent / f"{target}-summary.txt").write_text(summary)
        say(f"{target}: profile of the server (py-spy, {profile}):\n{summary}")
    say(f"{target}: calls done; stopping the server (SIGINT) and the model")
    await stop(server, target)
    await stop(fake, "the simulated model")
    if args.stalls:
        stalls_found = summarize_stalls(Path(os.environ["CALLBRIDGE_STALLS_DIR"]))
        say(f"{target}: trio loop stalls over 10 ms, per process:\n{stalls_found}")
    sessions, fake_summary = read_timings(workdir / "fake.jsonl")
    store = await trio.to_thread.run_sync(check_store, store_url, logs) if target == "bridge" else None
    reports = [log.report for log in logs if log.report is not None]
    call_minutes = sum(log.sent[-1] - log.sent[0] for log in logs if len(log.sent) > 1) / 60
    return RunResult(
        target=target,
        calls=args.calls,
        seconds=args.seconds,
        lockstep=args.lockstep,
        peak_concurrent_calls=run.peak_live,
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
            model_cores=run.cores["model"],
            model_loop_lag_ms_p99=fake_summary.loop_lag_ms_p99,
            callers_cores=run.cores["callers"],
            callers_loop_lag_ms_p99=run.loop_lag_ms_p99,
            caller_processes=args.caller_procs,
            interrupt_cores=run.cores["interrupts"],
            other_cores=run.cores["other"],
            other_cores_peak=max((sample.other for sample in run.timeline), default=0.0),
        ),
        server_log_errors=server_errors(log_path) if log_path else [],
        cpu_timeline=run.timeline,
    )


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    if args.keep:
        return await run_all(args, Path(args.keep))
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as tmp:
        return await run_all(args, Path(tmp))


async def run_all(args: argparse.Namespace, workdir: Path) -> list[RunResult]:
    runs = [await run_once(args, workdir / "bridge", "bridge")]
    if args.baseline:
        runs.append(await run_once(args, workdir / "baseline", "baseline"))
    return runs


def summarize_stalls(directory: Path, worst: int = 3) -> str:
    """Per process file of ``stall_watch``: how many stalls, and the longest few."""
    lines = []
    for path in sorted(directory.glob("*.txt")):
        rows = [line.split(maxsplit=5) for line in path.read_text().splitlines()]
        rows.sort(key=lambda row: -float(row[2]))
        longest = "; ".join(f"{float(r[2]):.0f} ms {r[1]} ({r[5] if len(r) > 5 else '-'})" for r in rows[:worst])
        lines.append(f"  {path.stem}: {len(rows)} stalls{'; longest ' + longest if rows else ''}")
    return "\n".join(lines) or "  (no stall files: did the processes exit cleanly?)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100, help="simultaneous calls (default 100)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call (default 30)")
    parser.add_argument("--ramp", type=float, default=2.0, help="start the calls evenly over this many s (default 2)")
    parser.add_argument("--caller-procs", type=int, default=1, help="processes the callers are spread over")
    parser.add_argument(
        "--lockstep", action="store_true", help="all calls speak at the same moments (default: staggered turns)"
    )
    parser.add_argument("--baseline", action="store_true", help="also measure a trivial forwarding proxy")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record the server during the calls, into DIR")
    parser.add_argument(
        "--server-prelude", metavar="FILE", help="run this Python file in the server process first (try a patch)"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=120.0,
        metavar="S",
        help="before each run, wait up to S s for other programs to leave the CPU alone (0: don't)",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="the server's event store (default: a new SQLite file per run), e.g. postgresql://…?schema=bench",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the store, logs and timings in DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument(
        "--stalls", metavar="DIR", help="note every trio loop stall over 10 ms in every process, into DIR"
    )
    args = parser.parse_args(argv)
    if args.stalls:  # the children import stall_watch/sitecustomize.py at start-up
        watch = str(Path(__file__).resolve().parent / "stall_watch")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [watch, os.environ.get("PYTHONPATH")]))
    runs = trio.run(main_async, args)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(runs)).decode())
    else:
        print(render_table(runs))
        print()
        for run in runs:
            print(render_details(run))
    main_run = runs[0]
    stored = main_run.store is not None and main_run.store.complete == main_run.calls
    ok = stored and main_run.failed_calls == 0 and main_run.uplink.lost == 0 and main_run.downlink.lost == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
