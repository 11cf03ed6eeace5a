"""How much latency, CPU and loss the bridge adds, against the mainstream stack and the floor.

    .venv/bin/python benchmarks/bridge.py [--calls 100[,200…]] [--seconds 60] [--rounds K]
                                          [--contend N] [--targets callbridge,mainstream,floor] [--json]

Needs the ``bench`` extra for the mainstream baseline (``pip install -e '.[bench]'``).

Each run is two processes, so a bridge's own CPU is read from ``/proc`` alone:

- the peer process (``peers.py peers``): the simulated realtime model (``serve_fake_openai``, the
  code behind ``callbridge fake-openai``) and every simulated caller (a 20 ms ``media`` frame per
  call at real-time pace, each tagged with its (call, frame) number; replies played and marks
  echoed like Twilio; turns staggered across calls, ``--lockstep``: all at the same moments), in
  one process, timing every frame on one clock (``time.monotonic()``). One process is one core at
  most, about 100 calls' worth: ``--peer-processes P`` splits the calls over P of them, their
  models listening on one port, timing on the same machine-wide clock;
- the target, pointed (``OPENAI_REALTIME_URL``) at that model:
  ``callbridge`` — ``callbridge serve --model openai`` with a temporary SQLite store (``--store
  URL``: another, e.g. PostgreSQL); ``mainstream`` — ``mainstream_bridge.py``, a forwarder on
  uvicorn + ``websockets`` modelled on Twilio's official Python sample, recording nothing (what the
  target "CPU per call at the mainstream stack's" is a ratio against); ``floor`` —
  ``peer_proxy.py``, a trivial forwarder on callbridge's own sockets (the least this machine and
  these libraries allow).

The targets alternate in one sitting — callbridge, mainstream, floor, callbridge, … for
``--rounds`` rounds — so a slow spell of a shared machine hits all of them; ``--calls 30,100,200``
runs a sitting per number. ``--contend N`` keeps N cores busy with busy-loop processes (niceness
0) during every run, as other tenants do on a shared host.

Added latency per direction, from ``time.monotonic()`` in the peer process: uplink = caller sends
a frame → the model receives the ``input_audio_buffer.append`` carrying it; downlink = the model
sends a ``response.output_audio.delta`` → the caller receives the ``media`` carrying it. Raw
numbers, reported per 10 s of call too (growth during a call is a backlog piling up): nothing is
subtracted, so they include the peer process's own delays (its loop lag and how late the
callers sent their frames are reported; its garbage collector is kept from pausing it, see
``peers.quiet_collector``). After each run the target is stopped with SIGINT (callbridge flushes)
and callbridge's store is checked: every call has ``CallStarted``, ``CallEnded`` and all the caller
frames it sent.

The machine should be otherwise idle: each run waits for quiet (``--wait-quiet``), samples every
process's CPU and the rest of the machine's each second, and flags a run that other programs
disturbed. To look inside: ``--profile DIR`` (py-spy, see ``profile_summary.py``), ``--stalls DIR``
(every trio loop stall in every trio process, see ``stall_watch/sitecustomize.py``),
``--server-prelude FILE`` (try a patch in the callbridge server and its workers without editing the
code), ``--keep DIR``.

Progress goes to stderr; the Markdown tables (or ``--json``) to stdout. Exit status 1 when a
callbridge call failed, lost a frame or an event is missing from its store, or a run could not be
measured (a process would not start or died: the others are still measured and printed); latency
is reported, not judged.
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
from bridge_procs import split_cores
from bridge_report import TARGETS, RunResult
from bridge_run import Plan, run_once
from bridge_table import render_sitting


async def main_async(args: argparse.Namespace) -> list[RunResult]:
    if args.keep:
        args.workroot = Path(args.keep).resolve()  # noqa: ASYNC240 (nothing runs yet)
        return await run_all(args)
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as tmp:
        args.workroot = Path(tmp)
        return await run_all(args)


async def run_all(args: argparse.Namespace) -> list[RunResult]:
    runs: list[RunResult] = []
    for calls in args.calls:
        for round_ in range(1, args.rounds + 1):
            for target in args.targets:
                workdir = args.workroot / f"{calls}-calls" / f"round-{round_}" / target
                try:
                    run = await run_once(args, Plan(target=target, round=round_, calls=calls, workdir=workdir))
                except RuntimeError as error:  # one run failed: the sitting goes on, the failure is reported
                    args.failures.append(f"{target} round {round_}, {calls} calls: {error}")
                    print(f"{args.failures[-1]}", file=sys.stderr, flush=True)
                    continue
                runs.append(run)
                up, down = run.uplink.latency_ms, run.downlink.latency_ms
                print(f"{target} round {round_}, {calls} calls: p99 {up.p99:.1f} ms up, {down.p99:.1f} ms down; "
                      f"{run.server_cpu_s_per_call_minute:.3f} CPU s per call-minute; "
                      f"{run.uplink.lost + run.downlink.lost} frames lost", file=sys.stderr, flush=True)  # fmt: skip
    return runs


def heading(args: argparse.Namespace, calls: int) -> str:
    turns = "lockstep turns (every call speaks at the same moments)" if args.lockstep else "staggered turns"
    contend = f"{args.contend} busy-loop contender(s)" if args.contend else "no contenders"
    rounds = f"{args.rounds} round{'s' if args.rounds > 1 else ''}"
    pinned = "; a core per peer process (the last), the bridge on the others (--pin)" if args.pin else ""
    return (f"### {calls} calls x {args.seconds:g} s: {turns}, {contend}, {rounds}{pinned}\n\n"
            f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; "
            f"callbridge's store: {'the given --store' if args.store else 'SQLite'}")  # fmt: skip


def _calls_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--calls takes numbers separated by commas (30,100,200), not {text!r}"
        ) from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"--calls needs at least one positive number, got {text!r}")
    return values


def _targets_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [value for value in values if value not in TARGETS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"--targets takes some of {','.join(TARGETS)}, not {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=_calls_list, default=[100], metavar="N[,N…]",
                        help="simultaneous calls; several (30,100,200) run a sitting each (default 100)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each call (default 60)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the targets this many times (default 1)")
    parser.add_argument("--targets", type=_targets_list, default=list(TARGETS), metavar="T[,T…]",
                        help=f"what to measure, in this order each round (default {','.join(TARGETS)})")  # fmt: skip
    parser.add_argument("--contend", type=int, default=0, metavar="N",
                        help="keep N cores busy with busy-loop processes during each run (default 0)")  # fmt: skip
    parser.add_argument("--peers-nice", type=int, default=-5, metavar="N",
                        help="niceness of the peer process (default -5 where allowed: the peers stand for Twilio "
                        "and OpenAI, which are not on the bridge's host, so they get the CPU first; 0: "
                        "they compete as equals)")  # fmt: skip
    parser.add_argument("--pin", action="store_true",
                        help="the peer process on the last core (P peer processes: the last P), the bridge on the "
                        "others (the peers stand for Twilio and OpenAI, which run on other machines)")  # fmt: skip
    parser.add_argument("--peer-processes", type=int, default=1, metavar="P",
                        help="split the calls over P peer processes (default 1: one process, one core at most, "
                        "about 100 calls' worth; more calls need more, and cores for them)")  # fmt: skip
    parser.add_argument("--ramp", type=float, default=2.0, help="start the calls evenly over this many s (default 2)")
    parser.add_argument(
        "--lockstep", action="store_true", help="all calls speak at the same moments (default: staggered turns)"
    )
    parser.add_argument("--baseline", action="store_true", help="(kept for old command lines: baselines are measured "
                        "by default; --targets callbridge measures callbridge alone)")  # fmt: skip
    parser.add_argument("--profile", metavar="DIR", help="py-spy record each target's server during the calls (DIR)")
    parser.add_argument(
        "--server-prelude",
        metavar="FILE",
        help="run this Python file first in the callbridge server and each of its workers (try a patch)",
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
        help="callbridge's event store (default: a new SQLite file per run), e.g. postgresql://…?schema=bench",
    )
    parser.add_argument("--keep", metavar="DIR", help="keep the stores, logs and timings in DIR")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the tables")
    parser.add_argument(
        "--stalls", metavar="DIR", help="note every trio loop stall over 10 ms in every trio process, into DIR"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.contend < 0:
        parser.error("--contend must be 0 or more")
    if args.peer_processes < 1 or args.peer_processes > min(args.calls):
        parser.error("--peer-processes must be at least 1, and no more than the calls")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    try:
        # (the peers' cores, the bridge's): a core per peer process, the bridge on the others
        usable = len(os.sched_getaffinity(0))
        args.cores = split_cores(usable - args.peer_processes) if args.pin else None
    except ValueError as error:
        parser.error(f"--pin gives each peer process a core and the bridge the rest: {args.peer_processes} peer "
                     f"process(es) and the bridge need more than the {usable} core(s) here ({error})")  # fmt: skip
    if "mainstream" in args.targets and not _has_bench_extra():
        parser.error("the mainstream baseline needs uvicorn and websockets: pip install -e '.[bench]' "
                     "(or leave it out: --targets callbridge,floor)")  # fmt: skip
    return args


def _has_bench_extra() -> bool:
    try:
        import uvicorn  # noqa: F401
        import websockets  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stalls:  # the children import stall_watch/sitecustomize.py at start-up
        watch = str(Path(__file__).resolve().parent / "stall_watch")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [watch, os.environ.get("PYTHONPATH")]))
    args.failures = []
    runs = trio.run(main_async, args)
    if args.json:
        print(msgspec.json.format(msgspec.json.encode(runs)).decode())
    else:
        for calls in args.calls:
            measured = [run for run in runs if run.calls == calls]
            if measured:
                print(render_sitting(measured, heading(args, calls)))
                print()
    for failure in args.failures:  # a process that would not start or died: its own words say why
        print(f"run failed, not measured: {failure}", file=sys.stderr)
    return 0 if not args.failures and all(run.ok for run in runs if run.target == "callbridge") else 1


if __name__ == "__main__":
    sys.exit(main())
