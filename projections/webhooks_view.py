"""The webhooks view: registered endpoints, every delivery and every attempt, folded from the log.

The log is where webhook state lives — registrations (``WebhookRegistered``/``Removed``) and each
endpoint's record of attempts (``WebhookAttempted``, ``WebhookDeadLettered``,
``WebhookRedeliveryRequested`` in the stream ``webhook:<id>``) — so every engine sees it and it
survives any crash. This view makes it queryable:

- ``webhook_endpoints``: one row per endpoint (never its secret) with its **low-water mark**: every
  delivery queued at or before it is done. A sender resumes there (``projections.webhook_sender``).
- ``webhook_deliveries``: one row per delivery (``<trigger>-<kind>``): its state — ``retrying``,
  ``delivered``, ``dead_lettered``, or ``queued`` for a redelivery not tried yet — attempts, first
  attempt time (the retry window counts from it), last status and error.
- ``webhook_attempts``: one row per attempt: when, status, latency, error, which engine.

The delivery log of ``GET /api/webhooks/{id}/deliveries`` and the console read these tables.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, NamedTuple

from callbridge.engine.events import (
    WebhookAttempted,
    WebhookDeadLettered,
    WebhookRedeliveryRequested,
    WebhookRegistered,
    WebhookRemoved,
)
from callbridge.engine.store import RecordedEvent
from callbridge.projections.projection import Projection
from callbridge.projections.views_db import QueryError, check_limit, iso, rows_as_dicts

DONE = ("delivered", "dead_lettered")
STATES = ("queued", "retrying", "delivered", "dead_lettered")


class WebhooksProjection(Projection):
    name = "webhooks"
    version = 1
    topics = frozenset(
        {
            "WebhookRegistered",
            "WebhookRemoved",
            "WebhookAttempted",
            "WebhookDeadLettered",
            "WebhookRedeliveryRequested",
        }
    )
    schema = (
        "CREATE TABLE IF NOT EXISTS webhook_endpoints (webhook_id TEXT PRIMARY KEY, url TEXT NOT NULL,"
        " events TEXT NOT NULL, created_at TEXT NOT NULL, registered_position INTEGER NOT NULL,"
        " removed_at TEXT, low_water INTEGER NOT NULL)",
        "CREATE TABLE IF NOT EXISTS webhook_deliveries (webhook_id TEXT NOT NULL, delivery_id TEXT NOT NULL,"
        " message_id TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL, source INTEGER NOT NULL,"
        " trigger INTEGER NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
        " first_attempt_at REAL, last_attempt_at TEXT, last_status INTEGER, last_error TEXT,"
        " redelivery_of TEXT, PRIMARY KEY (webhook_id, delivery_id))",
        "CREATE INDEX IF NOT EXISTS webhook_deliveries_by_trigger ON webhook_deliveries (webhook_id, trigger)",
        "CREATE TABLE IF NOT EXISTS webhook_attempts (webhook_id TEXT NOT NULL, delivery_id TEXT NOT NULL,"
        " attempt INTEGER NOT NULL, at TEXT NOT NULL, ok INTEGER NOT NULL, status INTEGER,"
        " latency_ms REAL NOT NULL, error TEXT NOT NULL, engine_id TEXT NOT NULL,"
        " PRIMARY KEY (webhook_id, delivery_id, attempt))",
    )
    tables = ("webhook_attempts", "webhook_deliveries", "webhook_endpoints")

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, WebhookRegistered):
            db.execute(
                "INSERT OR REPLACE INTO webhook_endpoints VALUES (?, ?, ?, ?, ?, NULL, ?)",
                (
                    event.webhook_id,
                    event.url,
                    json.dumps(event.events),
                    iso(event.at),
                    recorded.position,
                    recorded.position,
                ),
            )
        elif isinstance(event, WebhookRemoved):
            db.execute(
                "UPDATE webhook_endpoints SET removed_at=? WHERE webhook_id=?", (iso(event.at), event.webhook_id)
            )
        elif isinstance(event, WebhookAttempted):
            _attempted(db, event)
        elif isinstance(event, WebhookDeadLettered):
            _upsert(db, event, event.trigger, "dead_lettered")
            db.execute(
                "UPDATE webhook_deliveries SET state='dead_lettered', last_error=?"
                " WHERE webhook_id=? AND delivery_id=?",
                (event.error, event.webhook_id, event.delivery_id),
            )
            _low_water(db, event.webhook_id, event.low_water)
        elif isinstance(event, WebhookRedeliveryRequested):
            db.execute(
                "INSERT OR IGNORE INTO webhook_deliveries (webhook_id, delivery_id, message_id, kind, subject, source,"
                " trigger, state, redelivery_of) SELECT webhook_id, ? || '-' || kind, message_id, kind, subject,"
                " source, ?, 'queued', delivery_id FROM webhook_deliveries WHERE webhook_id=? AND delivery_id=?",
                (str(recorded.position), recorded.position, event.webhook_id, event.delivery_id),
            )


def _upsert(db: sqlite3.Connection, e: WebhookAttempted | WebhookDeadLettered, trigger: int, state: str) -> None:
    db.execute(
        "INSERT OR IGNORE INTO webhook_deliveries (webhook_id, delivery_id, message_id, kind, subject, source,"
        " trigger, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (e.webhook_id, e.delivery_id, e.message_id, e.kind, e.subject, e.source, trigger, state),
    )


def _attempted(db: sqlite3.Connection, e: WebhookAttempted) -> None:
    _upsert(db, e, e.trigger, "retrying")
    db.execute(
        "UPDATE webhook_deliveries SET state=CASE WHEN ? THEN 'delivered' ELSE 'retrying' END,"
        " attempts=max(attempts, ?), first_attempt_at=coalesce(first_attempt_at, ?), last_attempt_at=?,"
        " last_status=?, last_error=? WHERE webhook_id=? AND delivery_id=?",
        (e.ok, e.attempt, e.at, iso(e.at), e.status, e.error, e.webhook_id, e.delivery_id),
    )
    db.execute(
        "INSERT OR REPLACE INTO webhook_attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (e.webhook_id, e.delivery_id, e.attempt, iso(e.at), e.ok, e.status, e.latency_ms, e.error, e.engine_id),
    )
    _low_water(db, e.webhook_id, e.low_water)


def _low_water(db: sqlite3.Connection, webhook_id: str, low_water: int) -> None:
    db.execute("UPDATE webhook_endpoints SET low_water=max(low_water, ?) WHERE webhook_id=?", (low_water, webhook_id))


# --- reading ---------------------------------------------------------------------------------------

_ENDPOINT = (
    "SELECT webhook_id, url, events, created_at, registered_position, removed_at, low_water FROM webhook_endpoints"
)


def _endpoint(row: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": row["webhook_id"],
        "url": row["url"],
        "events": json.loads(row["events"]),
        "created_at": row["created_at"],
        "deliveries": {state: counts.get(state, 0) for state in STATES},
    }


def _counts(db: sqlite3.Connection, webhook_id: str) -> dict[str, int]:
    return dict(
        db.execute("SELECT state, count(*) FROM webhook_deliveries WHERE webhook_id=? GROUP BY state", (webhook_id,))
    )


def list_endpoints(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """The endpoints not removed, oldest first (never a secret)."""
    rows = rows_as_dicts(db.execute(f"{_ENDPOINT} WHERE removed_at IS NULL ORDER BY registered_position"))
    return [_endpoint(row, _counts(db, row["webhook_id"])) for row in rows]


def get_endpoint(db: sqlite3.Connection, webhook_id: str) -> dict[str, Any] | None:
    rows = rows_as_dicts(db.execute(f"{_ENDPOINT} WHERE webhook_id=? AND removed_at IS NULL", (webhook_id,)))
    return _endpoint(rows[0], _counts(db, webhook_id)) if rows else None


_DELIVERY = (
    "SELECT delivery_id, message_id, kind, subject, source, trigger, state, attempts, first_attempt_at,"
    " last_attempt_at, last_status, last_error, redelivery_of FROM webhook_deliveries"
)


def list_deliveries(
    db: sqlite3.Connection, webhook_id: str, *, limit: Any = 50, state: str | None = None
) -> list[dict[str, Any]]:
    """Deliveries to one endpoint, newest first, each with its ``attempts``."""
    count = check_limit(limit)
    if state is not None and state not in STATES:
        raise QueryError("state", f"{state[:40]!r} is not one of {', '.join(STATES)}")
    where, params = "WHERE webhook_id=?", [webhook_id]
    if state is not None:
        where += " AND state=?"
        params.append(state)
    rows = rows_as_dicts(
        db.execute(f"{_DELIVERY} {where} ORDER BY trigger DESC, delivery_id LIMIT ?", [*params, count])
    )
    return [_delivery(db, webhook_id, row) for row in rows]


def get_delivery(db: sqlite3.Connection, webhook_id: str, delivery_id: str) -> dict[str, Any] | None:
    rows = rows_as_dicts(db.execute(f"{_DELIVERY} WHERE webhook_id=? AND delivery_id=?", (webhook_id, delivery_id)))
    return _delivery(db, webhook_id, rows[0]) if rows else None


def _delivery(db: sqlite3.Connection, webhook_id: str, row: dict[str, Any]) -> dict[str, Any]:
    attempts = rows_as_dicts(
        db.execute(
            "SELECT attempt, at, ok, status, latency_ms, error, engine_id FROM webhook_attempts"
            " WHERE webhook_id=? AND delivery_id=? ORDER BY attempt",
            (webhook_id, row["delivery_id"]),
        )
    )
    first = row.pop("first_attempt_at")
    count = row.pop("attempts")
    return {
        **{key: value for key, value in row.items() if key != "subject"},
        "call_id": row["subject"],
        "first_attempt_at": None if first is None else iso(first),
        "attempt_count": count,
        "attempts": [{**attempt, "ok": bool(attempt["ok"])} for attempt in attempts],
    }


class Resume(NamedTuple):
    """Where a sender of one endpoint starts (``projections.webhook_sender``)."""

    low_water: int
    done: frozenset[str]
    """Deliveries queued after the low-water mark that are delivered or dead-lettered."""
    tried: dict[str, tuple[int, float]]
    """Deliveries tried and not done: ``delivery_id`` → (attempts so far, first attempt's Unix time)."""


def resume(db: sqlite3.Connection, webhook_id: str) -> Resume | None:
    """None when the endpoint is unknown here (the views have not folded its registration yet)."""
    row = db.execute("SELECT low_water FROM webhook_endpoints WHERE webhook_id=?", (webhook_id,)).fetchone()
    if row is None:
        return None
    low = int(row[0])
    done: set[str] = set()
    tried: dict[str, tuple[int, float]] = {}
    for delivery_id, state, attempts, first in db.execute(
        "SELECT delivery_id, state, attempts, first_attempt_at FROM webhook_deliveries"
        " WHERE webhook_id=? AND trigger>?",
        (webhook_id, low),
    ):
        if state in DONE:
            done.add(delivery_id)
        elif attempts:
            tried[delivery_id] = (int(attempts), float(first))
    return Resume(low, frozenset(done), tried)


def redelivery(db: sqlite3.Connection, webhook_id: str, trigger: int) -> tuple[str, str, int] | None:
    """The redelivery a request at ``trigger`` queued: (kind, call id, source position), or None."""
    row = db.execute(
        "SELECT kind, subject, source FROM webhook_deliveries"
        " WHERE webhook_id=? AND trigger=? AND redelivery_of IS NOT NULL",
        (webhook_id, trigger),
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]), int(row[2]))
