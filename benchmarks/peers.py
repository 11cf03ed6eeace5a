"""The benchmark's peer processes, started by ``bridge.py`` (not meant to be run by hand).

    python benchmarks/peers.py peers OUT --calls N --seconds S [--ramp R] [--stagger S] [--nice N]
                                        [--first K] [--model-port P]
        the simulated realtime model AND every simulated caller, in this one process, at niceness
        N if allowed (calls K to K+N-1; the model on port P, shared with other peer processes, or
        on a free port). Prints {"model_url", "nice"}; reads one JSON line on stdin, {"base_url",
        "direct"} (the bridge to call; direct: open ``/call`` without the voice webhook); runs the
        calls, printing a progress line every second and {"done": true} at the end; on SIGINT or
        SIGTERM (sent once the bridge has stopped, so the model saw every session close) writes
        every call's log, every model session's timings and this process's own CPU and loop lag to
        OUT, and exits.
    python benchmarks/peers.py proxy MODEL_URL
        the floor: a trivial Twilio-to-Realtime forwarder (``peer_proxy.py``); prints {"port"}

Both peers live in one process, as an independent measurement of the bridge did: a frame's send
time (caller) and arrival time (model) are read in the same process, on one clock, and the
bridge being measured competes with exactly one peer process for the cores. One process is one
core at most, though (about 100 calls' worth): ``bridge.py --peer-processes P`` runs P of them,
each with its share of the callers and a model listening on one shared port (``SO_REUSEPORT``),
and merges what they saw. Their times are all ``time.monotonic()``, the machine's one clock, so a
frame sent in one process and received in another still compares. The peers' own
scheduling delay (their loop lag, how late the callers sent their frames) is reported next to
the latencies, so a run whose peers could not keep up shows it.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
from functools import partial
from pathlib import Path

import msgspec
import trio
from bench_stats import monotonic_offset, own_cpu_seconds, summarize, watch_loop_lag
from peer_callers import EXCHANGE_S, CallLog, Progress, http_client, run_callers
from peer_fake import BENCH_SCRIPT, SessionTimings, session_timings
from peer_sockets import serve_fake_model

from callbridge.adapters.sim import voice
from callbridge.adapters.sim.fake_openai import FakeOpenAI, FakeOpenAIOptions


class PeersSummary(msgspec.Struct, kw_only=True):
    """How the peer process itself fared (its delays inflate the latencies it timestamps)."""

    cpu_s: float
    loop_lag_ms_p99: float
    loop_lag_ms_max: float


class PeersOutput(msgspec.Struct, kw_only=True):
    """Everything the peer process writes to OUT (times are ``time.monotonic()``)."""

    calls: list[CallLog]
    sessions: list[SessionTimings]
    summary: PeersSummary


class Go(msgspec.Struct, kw_only=True):
    """The one line ``bridge.py`` writes to the peer process's stdin once the bridge is up."""

    base_url: str
    direct: bool = False


def _print_line(value: object) -> None:
    print(msgspec.json.encode(value).decode(), flush=True)


async def _read_line(stream: trio.lowlevel.FdStream) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            break
        data += chunk
    return data


async def _peers(args: argparse.Namespace) -> None:
    offset = monotonic_offset()
    lags: list[float] = []
    logs: list[CallLog] = []
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            options = FakeOpenAIOptions(script=BENCH_SCRIPT, expire_after_s=None)
            fake: FakeOpenAI = await nursery.start(partial(serve_fake_model, options, args.model_port))
            client = http_client(args.calls)  # before the loop lag is watched: it takes ~80 ms
            nursery.start_soon(watch_loop_lag, lags)
            _print_line({"model_url": fake.url, "nice": os.getpriority(os.PRIO_PROCESS, 0)})

            async def calls() -> None:
                stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
                go = msgspec.json.decode(await _read_line(stdin), type=Go)
                logs.extend(
                    await run_callers(
                        go.base_url,
                        range(args.first, args.first + args.calls),
                        seconds=args.seconds,
                        ramp_s=args.ramp,
                        stagger_s=args.stagger,
                        direct=go.direct,
                        progress=_print_line,
                        client=client,
                    )
                )
                _print_line({"done": True})

            nursery.start_soon(calls)
            async for _ in signals:
                break
            nursery.cancel_scope.cancel()
    lag = summarize(lags)
    summary = PeersSummary(cpu_s=own_cpu_seconds(), loop_lag_ms_p99=lag.p99 * 1000, loop_lag_ms_max=lag.max * 1000)
    output = PeersOutput(
        calls=logs, sessions=[session_timings(record, offset) for record in fake.sessions], summary=summary
    )
    Path(args.out).write_bytes(msgspec.json.encode(output))  # noqa: ASYNC240 (everything has stopped)


def read_peers_output(paths: list[Path]) -> PeersOutput:
    """What every peer process saw, as one: their calls and model sessions together, their CPU
    summed, their loop lag the worst of them."""
    outputs = [msgspec.json.decode(path.read_bytes(), type=PeersOutput) for path in paths]
    return PeersOutput(
        calls=sorted((log for out in outputs for log in out.calls), key=lambda log: log.index),
        sessions=[session for out in outputs for session in out.sessions],
        summary=PeersSummary(
            cpu_s=sum(out.summary.cpu_s for out in outputs),
            loop_lag_ms_p99=max(out.summary.loop_lag_ms_p99 for out in outputs),
            loop_lag_ms_max=max(out.summary.loop_lag_ms_max for out in outputs),
        ),
    )


def decode_progress(line: str) -> Progress | None:
    """A progress line of the peer process; None for its last line, {"done": true}."""
    value = msgspec.json.decode(line)
    if value.get("done"):
        return None
    return msgspec.convert(value, Progress)


def set_niceness(nice: int) -> None:
    """Run at niceness ``nice`` if this user may (a negative one needs root or CAP_SYS_NICE)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as error:
        now = os.getpriority(os.PRIO_PROCESS, 0)
        print(f"peers: cannot run at niceness {nice} ({error.strerror}); running at {now}", file=sys.stderr)


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
    peers = sub.add_parser("peers")
    peers.add_argument("out")
    peers.add_argument("--calls", type=int, required=True)
    peers.add_argument("--seconds", type=float, required=True)
    peers.add_argument("--ramp", type=float, default=0.0)
    peers.add_argument("--stagger", type=float, default=EXCHANGE_S)
    peers.add_argument("--nice", type=int, default=0)
    peers.add_argument("--first", type=int, default=0)
    peers.add_argument("--model-port", type=int, default=0)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("model_url")
    args = parser.parse_args(argv)
    if args.peer == "peers":
        set_niceness(args.nice)
        voice.warm_up()  # rendered now, and frozen with the rest, not inside the first call
        quiet_collector()
        trio.run(_peers, args)
    else:  # the floor stands for a server: it keeps the collector's defaults
        from peer_proxy import serve_proxy_until_signal

        trio.run(partial(serve_proxy_until_signal, args.model_url))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
