"""Who carries which call: the calls not ended yet, by engine, and each engine's last heartbeat.

A small view (in ``views.db`` with the others, rebuilt like them) for ``projections.lost_calls``,
which ends the calls of engines that died. Folding only ``CallStarted``, ``CallEnded`` and
``EngineHeartbeat`` keeps it cheap, and "open calls of engine X" becomes one indexed query instead
of a scan of the log.

- ``open_calls``: one row per call started and not ended: its engine (``''`` in logs recorded before
  engines had names), the position and time of its ``CallStarted``. A call a warm transfer holds
  (``CallHeld``) is carried by no engine — Twilio holds it and the server records its end — so its
  row has no engine from the hold on (and is ended as lost only after Twilio's longest call, like an
  unowned one); when it comes back (``CallResumed``) the engine that resumed it carries it.
- ``engines``: one row per engine: its last heartbeat's position, time, process and interval.
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

from callbridge.engine.events import CallEnded, CallHeld, CallResumed, CallStarted, EngineHeartbeat
from callbridge.engine.store import RecordedEvent
from callbridge.projections.projection import Projection


class OpenCall(NamedTuple):
    call_id: str
    engine_id: str
    started_position: int
    started_at: float


class EngineSeen(NamedTuple):
    engine_id: str
    instance: str
    last_position: int
    """Position of its last heartbeat: it moves while the engine lives."""
    last_at: float
    interval_s: float
    host: str
    pid: int


class OwnershipProjection(Projection):
    name = "ownership"
    version = 2
    """2: held calls have no engine until they are resumed (``CallHeld``, ``CallResumed``)."""
    topics = frozenset({"CallStarted", "CallEnded", "EngineHeartbeat", "CallHeld", "CallResumed"})
    schema = (
        "CREATE TABLE IF NOT EXISTS open_calls (call_id TEXT PRIMARY KEY, engine_id TEXT NOT NULL,"
        " started_position INTEGER NOT NULL, started_at REAL NOT NULL)",
        "CREATE INDEX IF NOT EXISTS open_calls_by_engine ON open_calls (engine_id)",
        "CREATE TABLE IF NOT EXISTS engines (engine_id TEXT PRIMARY KEY, instance TEXT NOT NULL,"
        " last_position INTEGER NOT NULL, last_at REAL NOT NULL, interval_s REAL NOT NULL,"
        " host TEXT NOT NULL, pid INTEGER NOT NULL)",
    )
    tables = ("open_calls", "engines")

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, CallStarted):
            db.execute(
                "INSERT OR REPLACE INTO open_calls VALUES (?, ?, ?, ?)",
                (event.call_id, event.engine_id, recorded.position, event.at),
            )
        elif isinstance(event, CallEnded):
            db.execute("DELETE FROM open_calls WHERE call_id = ?", (event.call_id,))
        elif isinstance(event, CallHeld):
            db.execute(
                "UPDATE open_calls SET engine_id = '', started_position = ?, started_at = ? WHERE call_id = ?",
                (recorded.position, event.at, event.call_id),
            )
        elif isinstance(event, CallResumed):
            db.execute(
                "INSERT OR REPLACE INTO open_calls VALUES (?, ?, ?, ?)",
                (event.call_id, event.engine_id, recorded.position, event.at),
            )
        elif isinstance(event, EngineHeartbeat):
            db.execute(
                "INSERT OR REPLACE INTO engines VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    event.engine_id,
                    event.instance,
                    recorded.position,
                    event.at,
                    event.interval_s,
                    event.host,
                    event.pid,
                ),
            )


def open_calls(db: sqlite3.Connection) -> list[OpenCall]:
    """Every call started and not ended, oldest first."""
    rows = db.execute("SELECT call_id, engine_id, started_position, started_at FROM open_calls ORDER BY 3")
    return [OpenCall(*row) for row in rows]


def engines(db: sqlite3.Connection) -> dict[str, EngineSeen]:
    """Every engine that ever wrote a heartbeat, by id."""
    rows = db.execute(
        "SELECT engine_id, instance, last_position, last_at, interval_s, host, pid FROM engines ORDER BY 1"
    )
    return {row[0]: EngineSeen(*row) for row in rows}
