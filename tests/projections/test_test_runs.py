"""Regression tests kept in the data folder forget an erased call: its saved tests (renamed copies
too) are deleted, and its results in kept runs keep their name and pass/fail only."""

from __future__ import annotations

import json
from pathlib import Path

from callbridge.projections.test_runs import forget_call, list_runs, read_run, save_test, store_run


def test_an_erased_call_is_forgotten_by_saved_tests_and_kept_runs(tmp_path: Path) -> None:
    save_test(tmp_path, "CAgone", 'call = "CAgone"\n')
    (tmp_path / "tests" / "renamed.toml").write_text('name = "x"\ncall = "CAgone"\n')
    save_test(tmp_path, "CAkept", 'call = "CAkept"\n')
    words = {"turns": [{"caller": "my card is 4111 1111 1111 1111"}]}
    gone = {"name": "a", "original_call": "CAgone", "passed": False, "checks": [{"name": "c"}], "diff": words}
    kept = {"name": "b", "original_call": "CAkept", "passed": True, "checks": [{"name": "c"}], "diff": words}
    store_run(tmp_path, "20261206T010203-004", {"run_id": "20261206T010203-004", "results": [gone, kept]})

    assert forget_call(tmp_path, "CAgone") == 3  # two test files and one run
    assert sorted(p.name for p in (tmp_path / "tests").iterdir()) == ["CAkept.toml"]
    run = read_run(tmp_path, "20261206T010203-004")
    assert run is not None
    assert run["results"][0] == {
        "name": "a",
        "original_call": "CAgone",
        "passed": False,
        "checks": [],
        "diff": None,
        "error": None,
        "erased": True,
        "note": "the call was erased",
    }
    assert run["results"][1] == kept
    assert "4111" not in json.dumps(run["results"][0])
    assert forget_call(tmp_path, "CAgone") == 0  # once is enough
    assert [r["run_id"] for r in list_runs(tmp_path)] == ["20261206T010203-004"]
    assert read_run(tmp_path, "../../etc/passwd") is None
