"""The benchmark's peer processes, started by ``bridge.py`` (not meant to be run by hand).

    python benchmarks/peers.py fake OUT [PORT]
        the simulated realtime model; prints {"url", "port"}; writes frame timings to OUT on SIGINT
    python benchmarks/peers.py callers BASE_URL OUT --first I --count N [--stride K] --seconds S
                                      [--ramp R] [--stagger S] [--direct]
        N timed simulated callers (call indexes I, I+K, … N of them); prints a progress JSON line every second;
        writes every call's log, then its own CPU and loop lag, to OUT
    python benchmarks/peers.py proxy MODEL_URL
        the baseline: a trivial Twilio-to-Realtime forwarder; prints {"port"}

Peers run in their own processes so the bridge's CPU can be read from ``/proc`` alone and the
peers' Python work does not stall the process being measured.
"""

from __future__ import annotations

import argparse
import gc
import sys
from functools import partial
from pathlib import Path

import msgspec
import trio
from bench_stats import own_cpu_seconds, summarize, watch_loop_lag
from peer_callers import EXCHANGE_S, CallLog, Progress, run_callers

from callbridge.adapters.sim import voice


class CallersSummary(msgspec.Struct, kw_only=True):
    cpu_s: float
    loop_lag_ms_p99: float
    loop_lag_ms_max: float


def _print_progress(progress: Progress) -> None:
    print(msgspec.json.encode(progress).decode(), flush=True)


async def _callers(args: argparse.Namespace) -> None:
    lags: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch_loop_lag, lags)
        logs = await run_callers(
            args.base_url,
            range(args.first, args.first + args.count * args.stride, args.stride),
            seconds=args.seconds,
            ramp_s=args.ramp,
            stagger_s=args.stagger,
            direct=args.direct,
            progress=_print_progress,
        )
        nursery.cancel_scope.cancel()
    lag = summarize(lags)
    with Path(args.out).open("wb") as file:  # noqa: ASYNC230 (the calls are over)
        for log in logs:
            file.write(msgspec.json.encode(log) + b"\n")
        summary = CallersSummary(
            cpu_s=own_cpu_seconds(), loop_lag_ms_p99=lag.p99 * 1000, loop_lag_ms_max=lag.max * 1000
        )
        file.write(msgspec.json.encode(summary) + b"\n")


def read_caller_logs(path: Path) -> tuple[list[CallLog], CallersSummary]:
    lines = path.read_bytes().splitlines()
    logs = [msgspec.json.decode(line, type=CallLog) for line in lines[:-1]]
    return logs, msgspec.json.decode(lines[-1], type=CallersSummary)


def quiet_collector() -> None:
    """Keep the peers' own garbage collector from pausing them mid-measurement: what is alive at
    start-up (modules, classes) is frozen out of its reach and the automatic full collections,
    whose cost grows with everything the peers record, are off (young generations are still
    collected). A peer lives for one run, so what this leaves uncollected is bounded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1_000_000_000)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="peers.py")
    sub = parser.add_subparsers(dest="peer", required=True)
    fake = sub.add_parser("fake")
    fake.add_argument("out")
    fake.add_argument("port", nargs="?", type=int, default=0)
    callers = sub.add_parser("callers")
    callers.add_argument("base_url")
    callers.add_argument("out")
    callers.add_argument("--first", type=int, default=0)
    callers.add_argument("--count", type=int, required=True)
    callers.add_argument("--seconds", type=float, required=True)
    callers.add_argument("--stride", type=int, default=1)
    callers.add_argument("--ramp", type=float, default=0.0)
    callers.add_argument("--stagger", type=float, default=EXCHANGE_S)
    callers.add_argument("--direct", action="store_true")
    proxy = sub.add_parser("proxy")
    proxy.add_argument("model_url")
    args = parser.parse_args(argv)
    if args.peer != "proxy":  # the baseline proxy stands for a server: it keeps the defaults
        voice.warm_up()  # rendered now, and frozen with the rest, not inside the first call
        quiet_collector()
    if args.peer == "fake":
        from peer_fake import serve_until_signal

        trio.run(serve_until_signal, Path(args.out), args.port)
    elif args.peer == "callers":
        trio.run(_callers, args)
    else:
        from peer_proxy import serve_proxy_until_signal

        trio.run(partial(serve_proxy_until_signal, args.model_url))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
