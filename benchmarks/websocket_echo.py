"""What one WebSocket message costs: the micro-benchmark behind ``adapters/websocket``.

    .venv/bin/python benchmarks/websocket_echo.py [--connections 100[,…]] [--rate 50] [--seconds 10]
                                                  [--servers adapters,trio-websocket,quart,uvicorn] [--json]

Why ``/call`` is not a Quart route (README): the media path carries 50 messages a second per call
each way, so what a WebSocket implementation costs per message decides how many calls fit on a
core. Each server of ``websocket_echo_servers.py`` runs alone in its own process and echoes every
message; this process opens ``--connections`` client sockets (``adapters.websocket``, the same
client for every server) and sends on each a 300-character text message (the size of a Twilio
``media`` frame) ``--rate`` times a second, spread evenly, for ``--seconds``. Printed per server:

- server CPU per echoed message (µs): the server process's CPU (``/proc``) while the messages
  flowed, over the messages echoed — each is one receive and one send;
- round trip p50 / p99 / max (ms): send → echo received, on this process's clock; it includes
  this process's own delays, so its loop lag and CPU are printed too;
- the rest of the machine's CPU meanwhile (other programs distort everything: run it on a quiet
  machine, or compare servers measured in the same sitting; ``--rounds`` alternates them).

Exit status 1 when a server lost or failed to echo a message.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import trio
from bench_stats import CpuWatch, Summary, process_cpu_seconds, summarize, watch_loop_lag
from bridge_procs import Children, first_json_line, say

from callbridge.adapters.websocket import WebSocket, WebSocketClosed, connect

SERVERS = str(Path(__file__).resolve().parent / "websocket_echo_servers.py")
IMPLEMENTATIONS = ("adapters", "trio-websocket", "quart", "uvicorn")
MESSAGE_CHARS = 300
DRAIN_S = 5.0


class EchoResult(msgspec.Struct, kw_only=True):
    server: str
    stack: str
    round: int
    connections: int
    rate: float
    seconds: float
    sent: int
    echoed: int
    server_cpu_s: float
    server_cpu_us_per_message: float
    server_cores: float
    round_trip_ms: Summary
    client_cores: float
    client_loop_lag_ms_p99: float
    other_cores: float
    other_cores_peak: float
    errors: list[str]


def _message(index: int) -> str:
    head = f"{index:010d}"
    return head + "x" * (MESSAGE_CHARS - len(head))


async def _connection(
    ws: WebSocket, offset_s: float, count: int, rate: float, start: float, round_trips: list[float], errors: list[str]
) -> None:
    sent_at = [math.nan] * count
    done = trio.Event()

    async def reader() -> None:
        received = 0
        try:
            while received < count:
                message = await ws.get_message()
                index = int(message[:10])
                round_trips.append((trio.current_time() - sent_at[index]) * 1000)
                received += 1
        except WebSocketClosed as error:
            errors.append(f"closed after {received} echoes: {error}")
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        try:
            for index in range(count):
                await trio.sleep_until(start + offset_s + index / rate)
                sent_at[index] = trio.current_time()
                await ws.send_message(_message(index))
        except WebSocketClosed as error:
            errors.append(f"closed while sending: {error}")
        with trio.move_on_after(DRAIN_S):
            await done.wait()
        nursery.cancel_scope.cancel()
    await ws.aclose()


async def measure(server: str, round_: int, connections: int, args: argparse.Namespace) -> EchoResult:
    children = Children()
    try:
        process = await children.start([sys.executable, SERVERS, server], stdout=subprocess.PIPE)
        ready = await first_json_line(process)
        url = f"ws://127.0.0.1:{ready['port']}/echo"
        sockets = [await connect(url) for _ in range(connections)]
        count = max(1, round(args.rate * args.seconds))
        round_trips: list[float] = []
        errors: list[str] = []
        lags: list[float] = []
        watch = CpuWatch({"server": process.pid, "client": os.getpid()})
        samples: list[dict[str, float]] = []
        cpu_start, wall_start = process_cpu_seconds(process.pid), time.monotonic()
        start = trio.current_time() + 0.1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_loop_lag, lags)

            async def sample() -> None:
                while True:
                    await trio.sleep(1.0)
                    samples.append(watch.sample())

            nursery.start_soon(sample)
            async with trio.open_nursery() as flows:
                for number, ws in enumerate(sockets):
                    offset = number / (connections * args.rate)
                    flows.start_soon(_connection, ws, offset, count, args.rate, start, round_trips, errors)
            nursery.cancel_scope.cancel()
        server_cpu, wall = process_cpu_seconds(process.pid) - cpu_start, time.monotonic() - wall_start
    finally:
        await children.aclose()
    echoed = len(round_trips)
    other = [s["other"] for s in samples] or [0.0]
    return EchoResult(
        server=server,
        stack=str(ready["stack"]),
        round=round_,
        connections=connections,
        rate=args.rate,
        seconds=args.seconds,
        sent=count * connections,
        echoed=echoed,
        server_cpu_s=server_cpu,
        server_cpu_us_per_message=server_cpu / echoed * 1e6 if echoed else math.nan,
        server_cores=server_cpu / wall,
        round_trip_ms=summarize(round_trips),
        client_cores=sum(s["client"] for s in samples) / max(1, len(samples)),
        client_loop_lag_ms_p99=summarize(lags).p99 * 1000,
        other_cores=sum(other) / len(other),
        other_cores_peak=max(other),
        errors=errors[:5],
    )


async def run_all(args: argparse.Namespace) -> list[EchoResult]:
    results = []
    for connections in args.connections:
        for round_ in range(1, args.rounds + 1):
            for server in args.servers:
                result = await measure(server, round_, connections, args)
                say(f"{server} round {round_}, {connections} connections: {result.server_cpu_us_per_message:.0f} µs "
                    f"per message, p99 {result.round_trip_ms.p99:.1f} ms, {result.echoed:,} of {result.sent:,} "
                    f"echoed")  # fmt: skip
                results.append(result)
    return results


def render(results: list[EchoResult]) -> str:
    """One table per number of connections, one column per server (and round)."""
    out = []
    for connections in sorted({r.connections for r in results}):
        runs = [r for r in results if r.connections == connections]
        several = max(r.round for r in runs) > 1
        names = [f"{r.server} r{r.round}" if several else r.server for r in runs]
        first = runs[0]
        out.append(f"### {connections} connections x {first.rate:g} messages/s each, {first.seconds:g} s "
                   f"({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)")  # fmt: skip
        rows = [
            ("served by", [r.stack for r in runs]),
            ("server CPU per echoed message (µs)", [f"{r.server_cpu_us_per_message:.0f}" for r in runs]),
            ("round trip p50 / p99 / max (ms)",
             [f"{r.round_trip_ms.p50:.1f} / {r.round_trip_ms.p99:.1f} / {r.round_trip_ms.max:.1f}" for r in runs]),
            ("echoed of sent", [f"{r.echoed:,} of {r.sent:,}" for r in runs]),
            ("server CPU (cores)", [f"{r.server_cores:.2f}" for r in runs]),
            ("client process CPU (cores); loop lag p99 (ms)",
             [f"{r.client_cores:.2f}; {r.client_loop_lag_ms_p99:.1f}" for r in runs]),
            ("other programs' CPU: mean / busiest second (cores)",
             [f"{r.other_cores:.2f} / {r.other_cores_peak:.2f}" for r in runs]),
        ]  # fmt: skip
        lines = ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(runs)]
        lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
        out.append("\n".join(lines))
        out += [f"{r.server}: {error}" for r in runs for error in r.errors]
    return "\n\n".join(out)


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas (10,100), not {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, not {text!r}")
    return values


def _servers(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or any(value not in IMPLEMENTATIONS for value in values):
        raise argparse.ArgumentTypeError(f"expected some of {','.join(IMPLEMENTATIONS)}, not {text!r}")
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=_counts, default=[100], metavar="N[,N…]",
                        help="simultaneous connections; several run one table each (default 100)")  # fmt: skip
    parser.add_argument("--rate", type=float, default=50.0, help="messages per second per connection (default 50)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long each connection sends (default 10)")
    parser.add_argument("--servers", type=_servers, default=list(IMPLEMENTATIONS), metavar="S[,S…]",
                        help=f"which servers, in this order (default {','.join(IMPLEMENTATIONS)})")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=1, help="alternate the servers this many times (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--rate and --seconds must be positive, --rounds at least 1")
    if "uvicorn" in args.servers and importlib.util.find_spec("uvicorn") is None:
        parser.error("the uvicorn server needs the bench extra: pip install -e '.[bench]' (or leave it out: --servers)")
    results = trio.run(run_all, args)
    print(msgspec.json.format(msgspec.json.encode(results)).decode() if args.json else render(results))
    return 0 if all(r.echoed == r.sent and not r.errors for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
