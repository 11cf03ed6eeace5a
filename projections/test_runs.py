"""Regression test runs and saved tests, kept in the data folder for the console's Tests view.

``callbridge test`` writes each run (``test-runs/<run id>.json``: every test's checks and its diff
against the original); the console's "Save as test" writes a recorded call's test file
(``tests/<call id>.toml``), which ``callbridge test data/tests`` runs. Files, not events: a run is a
report about calls, kept like a CI artifact (the newest ``KEPT_RUNS``); the files are private to the
data folder's owner (the commands that write it run under umask 077), and erasing a call removes its
words from them (``forget_call``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

TEST_RUNS_DIR = "test-runs"
SAVED_TESTS_DIR = "tests"
KEPT_RUNS = 100
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}-[0-9]{3}$")
CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def store_run(data_dir: Path, run_id: str, record: dict[str, Any]) -> Path:
    """Keep one run (a ``callbridge test --json`` record); the oldest beyond ``KEPT_RUNS`` go."""
    folder = data_dir / TEST_RUNS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{run_id}.json"
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(path)
    for old in sorted(folder.glob("*.json"))[:-KEPT_RUNS]:
        old.unlink(missing_ok=True)
    return path


def list_runs(data_dir: Path) -> list[dict[str, Any]]:
    """Every kept run, newest first, without its per-test details (id, times, counts, names)."""
    runs: list[dict[str, Any]] = []
    for path in sorted((data_dir / TEST_RUNS_DIR).glob("*.json"), reverse=True):
        record = _read(path)
        if record is None:
            continue
        results = record.get("results") or []
        runs.append(
            {
                "run_id": record.get("run_id", path.stem),
                "started_at": record.get("started_at"),
                "finished_at": record.get("finished_at"),
                "model": record.get("model"),
                "passed": record.get("passed", 0),
                "failed": record.get("failed", 0),
                "tests": [{"name": r.get("name"), "passed": r.get("passed")} for r in results],
            }
        )
    return runs


def read_run(data_dir: Path, run_id: str) -> dict[str, Any] | None:
    """One run in full (checks and diffs), or None for an unknown or malformed id."""
    if not RUN_ID.match(run_id):
        return None
    return _read(data_dir / TEST_RUNS_DIR / f"{run_id}.json")


def save_test(data_dir: Path, call_id: str, text: str) -> Path:
    """Write a recorded call's test file; returns where (``tests/<call id>.toml``)."""
    if not CALL_ID.match(call_id):
        raise ValueError(f"{call_id!r} is not a call id")
    folder = data_dir / SAVED_TESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{call_id}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def saved_tests(data_dir: Path) -> list[str]:
    return sorted(path.name for path in (data_dir / SAVED_TESTS_DIR).glob("*.toml"))


ERASED = "the call was erased"


def forget_call(data_dir: Path, call_id: str) -> int:
    """An erased call leaves no words here either: its saved tests are deleted, and each kept run's
    results that replayed it keep their name and pass/fail only (checks, diff and error dropped).
    Returns how many files changed. Called by erasure, wherever it was made (``projections/erasure.py``)."""
    changed = 0
    replaying = f'call = "{call_id}"'
    for saved in sorted((data_dir / SAVED_TESTS_DIR).glob("*.toml")):  # the saved one, and renamed copies
        try:
            mine = saved.name == f"{call_id}.toml" or replaying in saved.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if mine:
            saved.unlink(missing_ok=True)
            changed += 1
    for path in sorted((data_dir / TEST_RUNS_DIR).glob("*.json")):
        record = _read(path)
        results = record.get("results") if record is not None else None
        if record is None or not isinstance(results, list):
            continue
        hits = [r for r in results if isinstance(r, dict) and r.get("original_call") == call_id and not r.get("erased")]
        for result in hits:
            result.update(checks=[], diff=None, error=None, erased=True, note=ERASED)
        if hits:
            tmp = path.with_suffix(".partial")
            tmp.write_text(json.dumps(record), encoding="utf-8")
            tmp.replace(path)
            changed += 1
    return changed


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
