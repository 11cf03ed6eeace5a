"""The cores curve (``benchmarks/cores.py``): for each number of cores given to callbridge, calls step
up until a run misses the latency target, and a run the peers could not keep pace with ends the
search as a lower bound, never as callbridge's capacity. Numbers are not judged here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from cores import Step, next_calls, row  # noqa: E402


def _step(calls: int, *, held: bool = True, peers_limited: bool = False) -> Step:
    return Step(calls=calls, uplink_p99_ms=5.0, downlink_p99_ms=5.0, lost=0, every_event_stored=True,
                peers_late_ms_p99=1.0, peers_cores=0.3, held=held, peers_limited=peers_limited)  # fmt: skip


def test_calls_step_up_until_a_run_misses_and_the_last_that_held_is_the_capacity() -> None:
    steps: list[Step] = []
    assert next_calls(steps, 50, 25, 1000) == 50
    steps.append(_step(50))
    assert next_calls(steps, 50, 25, 1000) == 75
    steps.append(_step(75))
    steps.append(_step(100, held=False))
    assert next_calls(steps, 50, 25, 1000) is None
    found = row(2, 1, steps)
    assert (found.capacity, found.at_least) == (75, False)


def test_a_run_the_peers_could_not_keep_pace_with_ends_the_search_as_a_lower_bound() -> None:
    steps = [_step(50), _step(100, held=False, peers_limited=True)]
    assert next_calls(steps, 50, 50, 1000) is None
    found = row(1, 1, steps)
    assert (found.capacity, found.at_least) == (50, True)
    # a run that held while the peers were late still measured the peers as much as the bridge
    held_but_late = row(1, 1, [_step(50), _step(100, peers_limited=True)])
    assert (held_but_late.capacity, held_but_late.at_least) == (50, True)


def test_the_search_stops_at_its_maximum_and_a_first_miss_is_capacity_zero() -> None:
    assert next_calls([_step(50), _step(100)], 50, 50, 120) is None
    assert row(1, 1, [_step(50, held=False)]).capacity == 0


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the curve pins the bridge and the peers apart: 2 cores")
def test_the_curve_runs_callbridge_pinned_with_its_peers_on_the_other_cores(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "cores.py"), "--bridge-cores", "1", "--start", "1", "--step", "1",
         "--max", "2", "--seconds", "2", "--wait-quiet", "0", "--keep", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    [found] = json.loads(done.stdout)
    assert found["bridge_cores"] == 1 and found["peer_cores"] == len(os.sched_getaffinity(0)) - 1
    steps = found["steps"]
    assert [s["calls"] for s in steps] == [1, 2][: len(steps)] and steps
    for s in steps:
        assert s["lost"] == 0 and s["every_event_stored"], s
        assert s["held"] == (s["uplink_p99_ms"] <= 20 and s["downlink_p99_ms"] <= 20), s
    held = [s["calls"] for s in steps if s["held"] and not s["peers_limited"]]
    assert found["capacity"] == max(held, default=0)
    assert (tmp_path / "1-cores" / "1-calls" / "callbridge.db").exists()
    assert "cores: callbridge on 1 core(s)" in done.stderr
