"""Benchmark: ``callbridge test`` running many one-minute tests at once with the simulated model.

Writes ``--tests`` scenario files, each a caller talking for about ``--seconds`` (a question, the
reply, a pause, again, then hang up), and runs them all with ``callbridge test --concurrency`` (each a
fresh engine with its own store, the simulated model and caller, real sockets). Prints the wall time
against the longest single test, and each test's own length, so the overhead of running them
together shows. Target (issue 14): 20 one-minute tests in about a minute.

Run: ``.venv/bin/python -m benchmarks.regression [--tests 20] [--seconds 60] [--concurrency 20]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from callbridge.cli import main

QUESTION = "Can you tell me what the opening hours are on Saturday?"
REPLY = "On Saturdays we are open from nine in the morning until five in the afternoon."
TURN_S = 10.5
"""A turn: about 4 s of question, 0.5 s for the model to notice the end, 5 s of reply, a pause."""


def scenario(seconds: float) -> str:
    turns = max(1, math.floor(seconds / TURN_S))
    steps = []
    for _ in range(turns):
        steps.append(f'[[caller]]\nsay = "{QUESTION}"\nreply = "{REPLY}"\n[[caller]]\nwait_for_reply = true\n')
        steps.append("[[caller]]\npause_ms = 800\n")
    steps.append("[[caller]]\nhang_up = true\n")
    return "\n".join(steps) + '\n[expect]\ntranscript_contains = ["nine in the morning"]\nmax_dead_air_s = 5\n'


def run(tests: int, seconds: float, concurrency: int, processes: int | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="callbridge-bench-") as tmp:
        folder = Path(tmp) / "tests"
        folder.mkdir()
        for index in range(tests):
            (folder / f"t{index:03d}.toml").write_text(scenario(seconds))
        out = io.StringIO()
        started = time.monotonic()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            argv = ["test", str(folder), "--store", str(Path(tmp) / "data" / "x.db"), "--json"]
            argv += ["--concurrency", str(concurrency)] + (["--processes", str(processes)] if processes else [])
            code = main(argv)
        wall = time.monotonic() - started
    record = json.loads(out.getvalue())
    lengths = [result["seconds"] for result in record["results"]]
    print(f"{tests} tests of ~{seconds:g} s, {concurrency} at once, simulated model (exit {code})")
    print(f"  passed {record['passed']}, failed {record['failed']}")
    print(f"  wall time           {wall:7.1f} s")
    median = statistics.median(lengths)
    print(f"  each test           {min(lengths):7.1f} s min, {median:.1f} s median, {max(lengths):.1f} s max")
    print(f"  wall / longest test {wall / max(lengths):7.2f}")
    failed = collections.Counter(
        f"{c['name']}: {c['detail']}"[:100] for r in record["results"] for c in r["checks"] if not c["ok"]
    )
    for what, count in failed.most_common(3):
        print(f"  failed check        {count} x {what}")
    overloaded = [n for r in record["results"] for n in r.get("notes", []) if "overloaded" in n]
    print(
        f"  overloaded          {len(overloaded)} of {tests} tests"
        + (f" ({overloaded[0][:80]}…)" if overloaded else "")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tests", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--processes", type=int, help="default: callbridge test's (the cores)")
    arguments = parser.parse_args()
    run(arguments.tests, arguments.seconds, arguments.concurrency, arguments.processes)
