"""The view database: one SQLite file holding every projection's tables.

Why one file: a projection records how far it has read the log (``projection_positions``) in the
same transaction as its view update, which only works when both live in one database; and the
console's readers then need a single connection. WAL mode lets those readers run while the
projections write; foreign keys are on so an item can never outlive its conversation.

Also here: the time format every view stores and answers with (ISO 8601 UTC with milliseconds,
which sorts as text), parsing of user-supplied times, and :func:`dump_views`, the sorted-rows
picture of every table that tests use to prove a rebuild equals the incrementally built view.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sqlite3
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from callbridge.engine.privacy import ERASED

VIEWS_ENV = "CALLBRIDGE_VIEWS"
VIEWS_FILE = "views.db"
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another writer (a rebuild in another process, say)."""


class QueryError(ValueError):
    """A query parameter is invalid; ``param`` names it (the API answers 400 with it)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


# --- where the views live ------------------------------------------------------------------------


def data_dir_for_store(store_url: str) -> Path:
    """The data folder of a ``CALLBRIDGE_STORE`` value: the SQLite file's folder, else ``./data``.

    The one rule for where data lives: ``web.settings`` uses it too (for the API token file).
    """
    text = store_url.strip()
    if text.startswith(("postgresql://", "postgres://")):
        return Path("./data").resolve()
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    if text in ("", ":memory:"):
        return Path("./data").resolve()
    return Path(text).expanduser().resolve().parent


def views_path(data_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    """``CALLBRIDGE_VIEWS`` when set, else ``<data dir>/views.db``."""
    configured = (os.environ if env is None else env).get(VIEWS_ENV, "").strip()
    return Path(configured).expanduser() if configured else data_dir / VIEWS_FILE


def open_views(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the view database: WAL, foreign keys on, autocommit mode.

    Autocommit (``isolation_level=None``) because callers manage transactions explicitly
    (``BEGIN IMMEDIATE`` ... ``COMMIT``). ``check_same_thread=False`` because trio runs each database
    call on some worker thread; callers must not use one connection from two threads at once.
    """
    text = str(path)
    if text != ":memory:":
        Path(text).expanduser().parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(text, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
    try:
        if text != ":memory:":
            use_wal(db)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        db.execute("PRAGMA secure_delete=ON")  # text replaced at an erasure leaves no copy in free space
    except sqlite3.Error:
        db.close()
        raise
    return db


WAL_RETRY_S = 0.01


def use_wal(db: sqlite3.Connection, timeout_s: float = BUSY_TIMEOUT_S) -> None:
    """Switch ``db``'s file to write-ahead logging, waiting out other processes doing the same.

    Switching needs the file to itself, and SQLite answers "database is locked" at once, without the
    busy timeout, to the connections it would otherwise deadlock — say, every worker of a new server
    opening the new views file at the same moment (a worker of a fresh ``serve --workers 2`` stopped
    so). A file already in WAL mode needs no switch and meets no lock."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(WAL_RETRY_S)


def erased_text(column: str) -> str:
    """SQL for an erased text column: ``[erased]`` where it held something, unchanged where it was empty
    (what an erased event's placeholders fold into, so a rebuild gives the same rows)."""
    return f"CASE WHEN coalesce({column}, '') = '' THEN {column} ELSE '{ERASED}' END"


def rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """Every remaining row of ``cursor`` as a dict keyed by column name."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def dump_views(db: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted: the comparable picture of the views.

    FTS5 tables are dumped through the virtual table (``rowid`` and columns), never through their
    shadow tables, whose segment layout depends on commit boundaries rather than on content.
    """
    master = db.execute("SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name").fetchall()
    virtual = [name for name, sql in master if (sql or "").upper().startswith("CREATE VIRTUAL TABLE")]
    shadow_suffixes = ("_data", "_idx", "_content", "_docsize", "_config")
    shadows = {f"{name}{suffix}" for name in virtual for suffix in shadow_suffixes}
    dump: dict[str, list[tuple[Any, ...]]] = {}
    for name, _sql in master:
        if name.startswith("sqlite_") or name in shadows:
            continue
        select = f'SELECT rowid, * FROM "{name}"' if name in virtual else f'SELECT * FROM "{name}"'
        dump[name] = sorted(db.execute(select).fetchall(), key=_sort_key)
    return dump


def _sort_key(row: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    # NULLs and mixed types must not break sorting: order by (type rank, value).
    return tuple((0, 0) if v is None else (1, v) if isinstance(v, int | float) else (2, str(v)) for v in row)


# --- time ----------------------------------------------------------------------------------------


def iso(at: float) -> str:
    """Unix seconds as the views' time text: ``2026-01-01T00:00:00.000Z`` (UTC, milliseconds)."""
    millis = math.floor(at * 1000 + 0.5)
    seconds, ms = divmod(millis, 1000)
    return f"{_second(seconds)}.{ms:03d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    """``2026-01-01T00:00:00`` for Unix ``seconds``: a call's events share their seconds, and a rebuild
    formats one time per event, so each second is formatted once."""
    return f"{datetime.fromtimestamp(seconds, UTC):%Y-%m-%dT%H:%M:%S}"


_UNIX_SECONDS = re.compile(r"\d{9,}(\.\d*)?")


def parse_time(value: str | float | int | None, param: str) -> str | None:
    """A user-supplied time as the views' time text (None stays None).

    Accepts ISO 8601 (``2026-01-01``, ``2026-01-01T10:00``, with ``Z`` or an offset; no zone means
    UTC) or Unix seconds (a number, or text of at least nine digits, so ``"2026"`` is not taken for
    a second of 1970). Raises :class:`QueryError` naming ``param`` otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise QueryError(param, "expected an ISO 8601 time or Unix seconds")
    if isinstance(value, int | float):
        return _iso_checked(float(value), param)
    text = value.strip()
    if not text:
        return None
    if _UNIX_SECONDS.fullmatch(text):
        return _iso_checked(float(text), param)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(param, f"{value!r} is not an ISO 8601 time (e.g. 2026-01-01T09:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(moment.timestamp())


def _iso_checked(seconds: float, param: str) -> str:
    if not math.isfinite(seconds) or not 0 <= seconds < 253_402_300_800:  # year 10000
        raise QueryError(param, f"{seconds!r} is out of range for a time")
    return iso(seconds)


def check_limit(limit: Any, param: str = "limit", *, maximum: int = 1000) -> int:
    """``limit`` as an int in 1..maximum, or :class:`QueryError`."""
    if isinstance(limit, bool):
        raise QueryError(param, "expected an integer")
    try:
        number = int(limit)
    except (TypeError, ValueError):
        raise QueryError(param, f"{limit!r} is not an integer") from None
    if number != limit and not isinstance(limit, str):
        raise QueryError(param, f"{limit!r} is not an integer")
    if not 1 <= number <= maximum:
        raise QueryError(param, f"must be between 1 and {maximum}, got {number}")
    return number
