"""What ``callbridge serve`` changes in the interpreter for the media path's latency, read in a fresh
interpreter (the settings are process-wide: the test process keeps its own)."""

from __future__ import annotations

import json
import subprocess
import sys

from callbridge.serve_command import GIL_SWITCH_INTERVAL_S

PROBE = """
import gc, json, sys
from callbridge.serve_command import _tune_for_latency
before = sys.getswitchinterval()
_tune_for_latency()
print(json.dumps({"before": before, "after": sys.getswitchinterval(), "threshold": gc.get_threshold(),
                  "frozen": gc.get_freeze_count()}))
"""


def test_serving_hands_the_gil_over_within_half_a_millisecond_and_collects_the_old_generation_on_a_timer() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    tuned = json.loads(out.stdout)
    assert tuned["before"] == 0.005  # Python's default, which let a busy thread hold the loop up to 5 ms
    assert abs(tuned["after"] - GIL_SWITCH_INTERVAL_S) < 1e-9
    assert GIL_SWITCH_INTERVAL_S <= 0.001
    assert tuned["threshold"] == [700, 10, 1_000_000]
    assert tuned["frozen"] > 0  # what start-up made is out of every collection
