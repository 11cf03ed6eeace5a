"""How many simultaneous calls callbridge carries at the latency target, per number of cores.

    .venv/bin/python benchmarks/cores.py [--bridge-cores 1,2,3] [--start 50] [--step 50]
                                         [--seconds 30] [--p99-ms 20] [--json]

Issue 12's "calls at the latency target grow with cores", as one command. For each K in
``--bridge-cores`` (default: 1 to half the cores), ``callbridge serve`` runs on the first K
cores this process may use — so with K workers, its default — and the peer process (the simulated
model and every caller: ``bridge.py``'s instrument) on the rest, as Twilio and OpenAI run on other
machines. The calls step up from ``--start`` by ``--step``, one ``bridge.py`` run each, until a run
misses the target: uplink and downlink p99 ≤ ``--p99-ms``, 0 frames lost, every event stored. The
last number that held is K cores' capacity.

The peers get one process per core they have (``--peer-processes``), since one is one core at most.
They are an instrument with a limit of their own: a run in which they could not keep pace (their
callers sent frames more than ``--peers-late-ms`` late at p99, or they used ≥ 90 % of their cores)
measures them, not callbridge. Such a run ends K's steps too, and the row says the capacity is *at
least* the last number that held, and that more cores for the peers are needed to see further. On a
2-core machine only K = 1 can be measured, with one core for the peers (about 125 calls' worth): the
curve needs a machine with cores to spare (8 cores: K = 1 to 4, the peers on the other 4).

Progress goes to stderr; a Markdown table (or ``--json``) to stdout. Exit status 1 when a run could
not be measured at all (a process would not start or died).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import msgspec
import trio
from bridge import parse_args as bridge_args
from bridge_procs import say, split_cores
from bridge_report import RunResult
from bridge_run import Plan, run_once

PEERS_FULL = 0.9
"""The peers' share of their own cores beyond which they, not the bridge, are the limit."""


class Step(msgspec.Struct, kw_only=True):
    """One run of the search: ``calls`` on the bridge's cores, and what it showed."""

    calls: int
    uplink_p99_ms: float
    downlink_p99_ms: float
    lost: int
    every_event_stored: bool
    peers_late_ms_p99: float
    peers_cores: float
    held: bool
    """Met the target: both p99s within it, nothing lost, every event stored."""
    peers_limited: bool
    """The peer process could not keep pace: this run measured it more than the bridge."""


class CoreRow(msgspec.Struct, kw_only=True):
    bridge_cores: int
    peer_cores: int
    capacity: int
    """The most calls that held (0: not even ``--start``)."""
    at_least: bool
    """The search ended because the peers could not keep pace, not because callbridge missed."""
    steps: list[Step]


def judge(run: RunResult, p99_ms: float, peers_late_ms: float, peer_cores: int) -> Step:
    """One run against the target, and whether the instrument itself was the limit."""
    up, down = run.uplink.latency_ms.p99, run.downlink.latency_ms.p99
    lost = run.uplink.lost + run.downlink.lost
    stored = run.store is not None and run.store.complete == run.calls
    late = run.peers.send_late_ms.p99
    return Step(
        calls=run.calls,
        uplink_p99_ms=up,
        downlink_p99_ms=down,
        lost=lost,
        every_event_stored=stored,
        peers_late_ms_p99=late,
        peers_cores=run.peers.cores,
        held=run.ok and up <= p99_ms and down <= p99_ms,
        peers_limited=late > peers_late_ms or run.peers.cores >= PEERS_FULL * peer_cores,
    )


def next_calls(steps: list[Step], start: int, step: int, most: int) -> int | None:
    """The search: the next number of calls to run, or None when K's capacity is known."""
    if not steps:
        return start
    last = steps[-1]
    if not last.held or last.peers_limited or last.calls + step > most:
        return None
    return last.calls + step


def row(bridge_cores: int, peer_cores: int, steps: list[Step]) -> CoreRow:
    held = [s.calls for s in steps if s.held and not s.peers_limited]
    return CoreRow(
        bridge_cores=bridge_cores,
        peer_cores=peer_cores,
        capacity=max(held, default=0),
        at_least=bool(steps) and steps[-1].peers_limited,
        steps=steps,
    )


async def curve(args: argparse.Namespace, workroot: Path) -> tuple[list[CoreRow], list[str]]:
    rows: list[CoreRow] = []
    failures: list[str] = []
    for bridge_cores in args.bridge_cores:
        peers, bridge = split_cores(bridge_cores)
        processes = args.peer_processes or min(len(peers), args.start)  # each process needs a call
        # bridge.py's options for its runs (--calls: the first run's, which bridge.py checks them against)
        run_args = bridge_args(["--targets", "callbridge", "--seconds", str(args.seconds), "--wait-quiet",
                                str(args.wait_quiet), "--peer-processes", str(processes), "--calls",
                                str(args.start)])  # fmt: skip
        run_args.cores, run_args.workroot, run_args.failures = (peers, bridge), workroot, []
        steps: list[Step] = []
        while (calls := next_calls(steps, args.start, args.step, args.max)) is not None:
            say(f"cores: callbridge on {len(bridge)} core(s) {sorted(bridge)}, peers on {sorted(peers)}: {calls} calls")
            workdir = workroot / f"{bridge_cores}-cores" / f"{calls}-calls"
            try:
                run = await run_once(run_args, Plan(target="callbridge", round=1, calls=calls, workdir=workdir))
            except RuntimeError as error:
                failures.append(f"{bridge_cores} core(s), {calls} calls: {error}")
                say(f"run failed, not measured: {failures[-1]}")
                break
            steps.append(judge(run, args.p99_ms, args.peers_late_ms, len(peers)))
            say(f"cores: {describe(steps[-1])}")
        rows.append(row(len(bridge), len(peers), steps))
    return rows, failures


def describe(step: Step) -> str:
    verdict = "held" if step.held else "missed"
    limited = "; the peers could not keep pace" if step.peers_limited else ""
    stored = "yes" if step.every_event_stored else "NO"
    return (f"{step.calls} calls: p99 {step.uplink_p99_ms:.1f} ms up, {step.downlink_p99_ms:.1f} down, "
            f"{step.lost} lost, every event stored: {stored}; the peers {step.peers_cores:.2f} cores, "
            f"{step.peers_late_ms_p99:.1f} ms late at p99: {verdict}{limited}")  # fmt: skip


def render(rows: list[CoreRow], args: argparse.Namespace) -> str:
    lines = [
        f"### Calls at the target per core ({args.seconds:g} s calls, p99 ≤ {args.p99_ms:g} ms each way, "
        f"0 lost, every event stored; {os.cpu_count()} cores)",
        "",
        "| callbridge's cores (workers) | the peers' cores | calls at the target | calls per core | the runs |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        capacity = f"≥ {r.capacity} (the peers' limit)" if r.at_least else str(r.capacity)
        per_core = f"{r.capacity / r.bridge_cores:.0f}" if r.capacity else "-"
        runs = "; ".join(
            f"{s.calls}: {s.uplink_p99_ms:.1f}/{s.downlink_p99_ms:.1f} ms"
            f"{'' if s.held else ' missed'}{' (peers late)' if s.peers_limited else ''}"
            for s in r.steps
        )
        lines.append(f"| {r.bridge_cores} | {r.peer_cores} | {capacity} | {per_core} | {runs} |")
    return "\n".join(lines)


def _cores_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"--bridge-cores takes numbers separated by commas (1,2,3), not {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not values:
        raise argparse.ArgumentTypeError("--bridge-cores needs at least one number")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    usable = len(os.sched_getaffinity(0))
    half = max(1, usable // 2)
    parser.add_argument("--bridge-cores", type=_cores_list, default=list(range(1, half + 1)), metavar="K[,K…]",
                        help=f"callbridge's cores, a search each (default 1 to {half}: the peers need about as "
                        "many as the bridge)")  # fmt: skip
    parser.add_argument("--start", type=int, default=50, help="calls in the first run of each search (default 50)")
    parser.add_argument("--step", type=int, default=50, help="calls added per run (default 50)")
    parser.add_argument("--max", type=int, default=2000, help="stop a search at this many calls (default 2000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each call (default 30)")
    parser.add_argument("--p99-ms", type=float, default=20.0, help="the latency target, each way (default 20)")
    parser.add_argument("--peers-late-ms", type=float, default=20.0, metavar="MS",
                        help="the peers' callers sending later than this at p99 means the peers are the limit "
                        "(default 20)")  # fmt: skip
    parser.add_argument("--wait-quiet", type=float, default=120.0, metavar="S",
                        help="before each run, wait up to S s for other programs to leave the CPU "
                        "(0: don't)")  # fmt: skip
    parser.add_argument("--peer-processes", type=int, default=0, metavar="P",
                        help="peer processes per run (default: one per core the peers have)")  # fmt: skip
    parser.add_argument("--keep", metavar="DIR", help="keep every run's store, logs and timings in DIR")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = parser.parse_args(argv)
    if usable < 2:
        parser.error(f"the curve needs at least 2 cores: the peers' and the bridge's (this process may use {usable})")
    for k in args.bridge_cores:
        try:
            split_cores(k)
        except ValueError as error:
            parser.error(f"--bridge-cores {k}: {error}")
    if args.start < 1 or args.step < 1 or args.seconds <= 0 or args.peer_processes < 0:
        parser.error("--start and --step must be at least 1, --seconds positive and --peer-processes 0 or more")
    if args.peer_processes > args.start:
        parser.error("--peer-processes can be no more than --start (each process needs a call)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    keep = Path(args.keep).resolve() if args.keep else None

    async def run() -> tuple[list[CoreRow], list[str]]:
        if keep is not None:
            return await curve(args, keep)
        with tempfile.TemporaryDirectory(prefix="callbridge-cores-") as tmp:
            return await curve(args, Path(tmp))

    rows, failures = trio.run(run)
    print(msgspec.json.format(msgspec.json.encode(rows)).decode() if args.json else render(rows, args))
    for failure in failures:
        print(f"run failed, not measured: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
