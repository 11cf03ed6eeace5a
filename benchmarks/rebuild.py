"""Benchmark: rebuild throughput of the projections over a store of synthetic calls.

    .venv/bin/python benchmarks/rebuild.py [--calls 1000] [--keep DIR]

Builds a SQLite event store of ``--calls`` synthetic calls (``engine.synthetic.CallLog``: a mix of
plain conversations, tool calls, barge-ins, model reconnects and calls that crashed with no
``CallEnded``; about one to two minutes each, with their audio) in a temporary folder, then times
``projections.runner.rebuild`` and prints events/s, calls/s and the CPU seconds the rebuild took.
Target (issue 12): at least 100,000 events/s. Deterministic: the same ``--seed`` builds the same
store.

Events/s counts every event in the log (the views skip audio rows in SQL); since the engine records
one ``TranscriptDelta`` per item and writer window rather than one per model delta, the same calls
hold fewer events, so calls/s and CPU seconds for the same ``--calls`` compare runs across that change.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.runner import ProgressBar, rebuild

PHRASES = (
    "Hi, I would like to know what the weather is going to be like tomorrow",
    "Can you book a table for four people at eight tonight",
    "What time does the pharmacy on Main Street close",
    "I need to change the delivery address for my order",
    "Is there a train to Boston after six in the evening",
    "Thanks, that is all I needed",
    "Could you repeat that please",
    "How much would that cost in total",
)
ANSWERS = (
    "Sure. Tomorrow will be mostly sunny with a high of twenty one degrees and a light breeze.",
    "I can help with that. Let me check what is available for four people at eight o'clock tonight.",
    "The pharmacy on Main Street closes at nine in the evening on weekdays and at six on weekends.",
    "Of course. Please tell me the new address and I will update your order right away.",
    "There is a train to Boston at six fifteen and another one at seven forty in the evening.",
    "You're welcome! Have a wonderful day and don't hesitate to call again.",
)


def synthetic_call(index: int, rng: random.Random) -> CallLog:
    """One call of one to two minutes; its shape is chosen by ``index`` and ``rng``."""
    shape = index % 10
    log = CallLog(
        f"CA{index:032d}",
        start_at=1_767_225_600.0 + index * 37.0,
        from_number=f"+1555{rng.randrange(10**7):07d}",
        to_number="+15550109999" if index % 3 else "+15550108888",
    ).start()
    target_ms = rng.randrange(60_000, 120_000)
    turn = 0
    while log.ms < target_ms:
        log.caller_says(rng.choice(PHRASES))
        if shape == 1 and turn == 1:
            log.tool_call("get_weather", {"city": "Paris"}, {"temp_c": 21, "sky": "sunny"})
        if shape == 2 and turn == 2:
            log.tool_call("lookup_order", {"order": "A-1"}, "timeout", failed=True, duration_ms=5000)
        if shape == 3 and turn % 3 == 1:
            log.assistant_says(rng.choice(ANSWERS), interrupted_at_ms=rng.randrange(400, 1500))
        else:
            log.assistant_says(rng.choice(ANSWERS), first_audio_ms=rng.randrange(250, 700))
        if shape == 4 and turn == 2:
            log.model_drops(downtime_ms=rng.randrange(200, 1500))
        log.wait(rng.randrange(300, 2500))
        turn += 1
    if shape != 9:  # one call in ten crashed: no CallEnded
        log.end()
    return log


def build_store(store: EventStore, calls: int, seed: int) -> int:
    rng = random.Random(seed)
    started = time.perf_counter()
    events = 0
    for index in range(calls):
        log = synthetic_call(index, rng)
        log.write(store)
        events += len(log.events)
        if (index + 1) % 25 == 0 or index + 1 == calls:
            rate = events / (time.perf_counter() - started)
            print(f"\rbuilding: {index + 1:,}/{calls:,} calls, {events:,} events ({rate:,.0f} events/s)", end="")
            sys.stdout.flush()
    print()
    return events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="build the store in this folder and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        store = EventStore(str(folder / "callbridge.db"))
        try:
            events = store.head() or build_store(store, args.calls, args.seed)
            views = folder / "views.db"
            started, cpu = time.perf_counter(), time.process_time()
            position = rebuild(store, views, ProgressBar(sys.stderr))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            calls = _count_calls(store)
        finally:
            store.close()
    print(file=sys.stderr)
    rate = position / seconds
    print(
        f"rebuild: {position:,} events ({events:,} in the store) of {calls:,} calls in {seconds:.2f} s "
        f"(CPU {cpu:.2f} s) = {rate:,.0f} events/s, {calls / seconds:,.0f} calls/s"
    )
    print(f"target: >= 100,000 events/s: {'met' if rate >= 100_000 else 'MISSED'}")
    return 0


def _count_calls(store: EventStore) -> int:
    """The calls in the store: one ``CallStarted`` each."""
    count, after = 0, 0
    while page := store.recorder.select_notifications(
        start=after, limit=10_000, topics=("CallStarted@1",), inclusive_of_start=False
    ):
        count += len(page)
        after = page[-1].id
    return count


if __name__ == "__main__":
    raise SystemExit(main())
