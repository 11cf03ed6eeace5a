"""The view database helpers: where views live, the time format, and parameter checks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from callbridge.projections.views_db import QueryError, check_limit, data_dir_for_store, iso, parse_time, views_path


def test_iso_is_utc_with_milliseconds_rounded() -> None:
    assert iso(1_767_225_600.0) == "2026-01-01T00:00:00.000Z"
    assert iso(1_767_225_600.4705) == "2026-01-01T00:00:00.471Z"
    assert iso(1_767_225_600.9996) == "2026-01-01T00:00:01.000Z"
    assert iso(1_767_225_602.46) == "2026-01-01T00:00:02.460Z"  # no float fuzz: 2.4599999...


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2026-01-01", "2026-01-01T00:00:00.000Z"),
        ("2026-01-01T10:30", "2026-01-01T10:30:00.000Z"),
        ("2026-01-01T10:30:00Z", "2026-01-01T10:30:00.000Z"),
        ("2026-01-01T12:30:00+02:00", "2026-01-01T10:30:00.000Z"),
        ("2026-01-01T10:30:00.25Z", "2026-01-01T10:30:00.250Z"),
        (1_767_225_600, "2026-01-01T00:00:00.000Z"),
        ("1767225600.5", "2026-01-01T00:00:00.500Z"),
        ("  ", None),
        (None, None),
    ],
)
def test_parse_time_accepts_iso_8601_and_unix_seconds(given: str | float | None, expected: str | None) -> None:
    assert parse_time(given, "since") == expected


@pytest.mark.parametrize("given", ["yesterday", "2026", "2026-02-30", "1e400", float("nan"), -5, True])
def test_parse_time_refuses_other_things_naming_the_parameter(given: object) -> None:
    with pytest.raises(QueryError) as raised:
        parse_time(given, "until")  # type: ignore[arg-type]
    assert raised.value.param == "until"


@pytest.mark.parametrize(("given", "expected"), [(1, 1), ("25", 25), (1000, 1000)])
def test_check_limit_accepts_whole_numbers_in_range(given: object, expected: int) -> None:
    assert check_limit(given) == expected


@pytest.mark.parametrize("given", [0, 1001, -1, 2.5, "x", None, True])
def test_check_limit_refuses_the_rest(given: object) -> None:
    with pytest.raises(QueryError) as raised:
        check_limit(given)
    assert raised.value.param == "limit"


def test_views_live_next_to_the_store_unless_configured(tmp_path: Path) -> None:
    store = tmp_path / "data" / "callbridge.db"
    assert data_dir_for_store(str(store)) == store.parent
    assert data_dir_for_store(f"sqlite:///{store}") == store.parent
    assert data_dir_for_store("postgresql://u@h/db") == Path("./data").resolve()
    assert views_path(store.parent, {}) == store.parent / "views.db"
    assert views_path(store.parent, {"CALLBRIDGE_VIEWS": "/srv/v.db"}) == Path("/srv/v.db")


PROCESSES_OPENING_NEW_VIEWS_AT_ONCE = """
import multiprocessing, sys
from pathlib import Path
from callbridge.projections.views_db import open_views

def open_once(path, barrier, results):
    barrier.wait()  # every process opens the new file at the same moment
    try:
        db = open_views(path)
        results.put(db.execute("PRAGMA journal_mode").fetchone()[0])
        db.close()
    except Exception as exc:
        results.put(repr(exc))

if __name__ == "__main__":
    folder, files, processes = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    outcomes = []
    for n in range(files):
        barrier, results = multiprocessing.Barrier(processes), multiprocessing.Queue()
        path = str(folder / f"views-{n}.db")
        started = [multiprocessing.Process(target=open_once, args=(path, barrier, results)) for _ in range(processes)]
        for process in started:
            process.start()
        outcomes += [results.get() for _ in started]
        for process in started:
            process.join()
    print(sorted(set(outcomes)))
"""


def test_processes_opening_a_new_views_file_at_once_all_get_it_in_wal_mode(tmp_path: Path) -> None:
    """The workers of a fresh ``serve --workers N`` open the new views file together. Switching it to
    WAL, SQLite answered "database is locked" at once to all but one (about one file in eight, four
    processes at a time, before the switch waited its turn)."""
    script = tmp_path / "race.py"  # a file: multiprocessing's children import the parent's __main__
    script.write_text(PROCESSES_OPENING_NEW_VIEWS_AT_ONCE)
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path), "24", "4"], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "['wal']"
