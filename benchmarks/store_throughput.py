"""How fast the event store takes batched appends (printed, never asserted).

    .venv/bin/python benchmarks/store_throughput.py                 # a SQLite file in a temp folder
    .venv/bin/python benchmarks/store_throughput.py --store URL     # any CALLBRIDGE_STORE value

Each case writes to a fresh store: 10,000 small events and 100 audio-sized (8 KB payload) events,
appended in batches of several sizes (one transaction per batch), then read back in pages of 1,000.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

from callbridge.engine.events import CallerAudioReceived, Event, ToolCallCompleted
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter


def small_events(n: int) -> list[Event]:
    return [
        ToolCallCompleted(
            call_id=f"CA{i % 20:032d}", at=float(i), tool_call_id=f"t{i}", name="x", output="{}", duration_ms=1.0
        )
        for i in range(n)
    ]


def audio_events(n: int) -> list[Event]:
    payload = bytes(range(256)) * 32  # 8 KiB
    return [
        CallerAudioReceived(
            call_id=f"CA{i % 4:032d}",
            at=float(i),
            first_chunk=i * 50,
            timestamps=[j * 20 for j in range(50)],
            frame_sizes=[160] * 50,
            payload=payload,
        )
        for i in range(n)
    ]


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    action(*args)
    return time.perf_counter() - started


def append_in_batches(store: EventStore, events: list[Event], batch: int) -> None:
    for i in range(0, len(events), batch):
        store.append(events[i : i + batch])


def read_everything(store: EventStore, after: int) -> None:
    while page := store.read_all(after=after, limit=1000):
        after = page[-1].position


async def through_writer(store: EventStore, events: list[Event]) -> None:
    writer = EventWriter(store, flush_interval=0.01)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        for event in events:
            writer.record(event)
        await writer.flush()
        nursery.cancel_scope.cancel()


def report(label: str, count: int, seconds: float) -> None:
    print(f"{label:<48} {count:>7,} events {seconds:8.3f} s {count / seconds:>12,.0f} events/s")


def run(open_store: Callable[[str], EventStore]) -> None:
    for kind, events in (("small", small_events(10_000)), ("audio 8 KB", audio_events(100))):
        n = len(events)
        for batch in sorted({b for b in (10, 100, 1000, n) if b <= n} | ({1} if n <= 1000 else set())):
            store = open_store(f"{kind}-{batch}")
            start = store.head()
            report(f"{kind}: append, {batch} per transaction", n, timed(append_in_batches, store, events, batch))
            if batch == n:
                report(f"{kind}: read back, pages of 1000", n, timed(read_everything, store, start))
            store.close()
        store = open_store(f"{kind}-writer")
        report(f"{kind}: EventWriter record + flush", n, timed(trio.run, through_writer, store, events))
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="a CALLBRIDGE_STORE URL (default: a SQLite file in a temp folder)")
    args = parser.parse_args()
    if args.store:
        probe = EventStore(args.store)
        print(f"store: {probe.description} (cases share it)")
        probe.close()
        run(lambda _name: EventStore(args.store))
        return
    with tempfile.TemporaryDirectory() as folder:
        print(f"store: fresh SQLite files in {folder}")
        run(lambda name: EventStore(str(Path(folder) / f"{name.replace(' ', '_')}.db")))


if __name__ == "__main__":
    main()
