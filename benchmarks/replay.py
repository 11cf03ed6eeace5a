"""Benchmark: replaying a 60-minute call (``callbridge replay --json`` and ``--wav``).

Builds an hour-long synthetic call (``CallLog``: caller and assistant turns, tool calls,
barge-ins; caller audio streams the whole hour), stores it in a temporary SQLite store, then
times, each the best of ``--repeat`` runs:

- ``replay --json``: open the store, read the call a page of rows at a time and write each event's
  JSON as it is read (``projections.call_json``), the second half of the call in a forked child
  (``projections.call_json_halves``); and the same in one process, for comparison;
- ``replay --wav``: open the store, read the call, build the stereo WAV and write it;
- the pure parts, on events already read: the JSON (``event_json.render_json``, the general
  writer the API's pages use), the timeline text, the WAV bytes.

Target (issue 12): ``replay --json`` under 0.25 s (its CPU seconds are printed too: on a busy
machine the wall clock says more about the neighbours). Run:
``.venv/bin/python -m benchmarks.replay [--minutes 60]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.call_json import write_call_json
from callbridge.projections.event_json import render_json
from callbridge.projections.recording import build_recording
from callbridge.projections.replay_cli import replay_cli
from callbridge.projections.timeline import build_timeline, render_text

QUESTIONS = [
    "What's the weather like in Paris tomorrow?",
    "Can you book a table for four at eight?",
    "How long does the train to Lyon take?",
    "Remind me what we said about the invoice.",
]
ANSWERS = [
    "Tomorrow in Paris it will be sunny with a high of twenty-one degrees.",
    "Done: a table for four at eight o'clock tonight, under your name.",
    "The fastest train takes about two hours, leaving every hour from Gare de Lyon.",
    "You asked me to send the invoice again on Monday morning, and I will.",
]


def hour_long_call(minutes: float) -> CallLog:
    """Turns until ``minutes`` have passed: every 5th turn calls a tool, every 7th is interrupted."""
    log = CallLog("CA" + "b" * 32).start()
    turn = 0
    while log.ms < minutes * 60_000:
        log.caller_says(QUESTIONS[turn % len(QUESTIONS)])
        if turn % 5 == 4:
            log.tool_call("get_weather", {"city": "Paris", "turn": turn}, {"temp_c": 21, "sky": "clear"})
        answer = ANSWERS[turn % len(ANSWERS)]
        log.assistant_says(answer, interrupted_at_ms=1500 if turn % 7 == 6 else None)
        log.wait(800)
        turn += 1
    return log.end()


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (``replay --json``'s forked one)."""
    spent = os.times()
    return spent.user + spent.system + spent.children_user + spent.children_system


def best_of(repeat: int, work: Callable[[], object], cpu: list[float] | None = None) -> float:
    """The shortest of ``repeat`` runs, wall clock; ``cpu`` gets the shortest CPU time (children's included)."""
    times, cpus = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), cpu_seconds()
        work()
        times.append(time.perf_counter() - started)
        cpus.append(cpu_seconds() - cpu_started)
    if cpu is not None:
        cpu.append(min(cpus))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    log = hour_long_call(args.minutes)
    built = time.perf_counter() - started
    call_id, minutes = log.call_id, log.ms / 60_000
    with tempfile.TemporaryDirectory() as folder:
        url = str(Path(folder) / "replay.db")
        wav_path = Path(folder) / "call.wav"
        store = EventStore(url)
        started = time.perf_counter()
        log.write(store)
        written = time.perf_counter() - started
        store.close()
        count, audio_mb = len(log.events), sum(len(getattr(e, "payload", b"")) for e in log.events) / 1e6
        del log  # the CLI runs in a fresh process: keep this one's heap as small as that
        print(
            f"call: {minutes:.1f} min, {count} events, {audio_mb:.1f} MB of μ-law audio "
            f"(built in {built:.2f} s, stored in {written:.2f} s, {Path(url).stat().st_size / 1e6:.0f} MB on disk)"
        )

        def replay(**options: object) -> None:
            with open(os.devnull, "w") as out:
                assert replay_cli(url, call_id, out=out, **options) == 0  # type: ignore[arg-type]

        def one_process() -> None:
            store = EventStore(url, create=False)
            try:
                with open(os.devnull, "wb") as out:
                    write_call_json(store, call_id, out)
            finally:
                store.close()

        json_cpu: list[float] = []
        results = {
            "replay --json (read + render)": best_of(args.repeat, lambda: replay(wav=None, as_json=True), json_cpu),
            "  the same in one process": best_of(args.repeat, one_process),
            "replay --wav (read + build + write)": best_of(
                args.repeat, lambda: replay(wav=str(wav_path), as_json=False)
            ),
            "replay (read + timeline text)": best_of(args.repeat, lambda: replay(wav=None, as_json=False)),
        }
        print(f"WAV: {wav_path.stat().st_size / 1e6:.0f} MB")
        store = EventStore(url)
        recorded = store.read_call(call_id)
        store.close()
        events = [r.event for r in recorded]
        results |= {
            "  render_json only": best_of(args.repeat, lambda: render_json(recorded)),
            "  build_recording only": best_of(args.repeat, lambda: build_recording(events)),
            "  build_timeline + render_text only": best_of(
                args.repeat, lambda: render_text(build_timeline(events), color=False)
            ),
        }
    for name, seconds in results.items():
        print(f"{name:<40} {seconds:6.3f} s")
    as_json = results["replay --json (read + render)"]
    print(f"replay --json CPU {json_cpu[0]:.3f} s (both processes)")
    print(f"target: replay --json < 0.25 s: {'met' if as_json < 0.25 else 'MISSED'} ({as_json:.3f} s)")


if __name__ == "__main__":
    main()
