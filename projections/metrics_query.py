"""Reading the metrics view: one call's numbers and a summary over a period (the same view as Prometheus
metric families: :mod:`projections.metrics_prometheus`).

Percentiles are nearest-rank (the smallest value with at least p % of the values at or below it),
so they are always values that really occurred. Costs are computed from token counts with the
price table in force (:func:`projections.pricing.load_prices` unless one is passed).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from callbridge.projections.metrics_call_control import call_control_of, call_control_summary
from callbridge.projections.pricing import TOKEN_KINDS, cost_usd, load_prices
from callbridge.projections.views_db import QueryError, parse_time, rows_as_dicts

CALL_STATUSES = ("in_progress", "completed", "failed")
TOOL_OUTCOMES = ("completed", "failed", "timed_out", "pending")

_CALL_FIELDS = (
    "call_id",
    "started_at",
    "ended_at",
    "duration_seconds",
    "status",
    "end_reason",
    "model",
    "caller_turns",
    "responses",
    "barge_ins",
    "barge_ins_skipped",
    "truncations",
    "truncated_played_ms",
    "truncated_generated_ms",
    "reconnects",
    "disconnects",
    "connection_failures",
    "reconnect_downtime_ms",
    "model_errors",
    "task_crashes",
    "tool_calls",
    "tool_failures",
    "tool_timeouts",
    "tool_ms_total",
)
_TURN_FIELDS = (
    "turn",
    "response_id",
    "item_id",
    "created_at",
    "status",
    "response_latency_ms",
    "first_audio_ms",
    "truncated",
    "played_ms",
    "generated_ms",
)
_TOOL_FIELDS = ("tool_call_id", "name", "requested_at", "handler", "outcome", "duration_ms", "error")
TOKEN_SUMS_SQL = ", ".join(f"coalesce(sum(tokens_{kind}), 0)" for kind in TOKEN_KINDS)


def percentile(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def distribution(values: Sequence[float]) -> dict[str, Any]:
    """``{count, p50, p95, mean, max}`` of some measurements (ms)."""
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "mean": round(sum(ordered) / len(ordered), 1) if ordered else None,
        "max": ordered[-1] if ordered else None,
    }


def tokens_by_kind(row: Sequence[Any]) -> dict[str, int]:
    return {kind: int(count) for kind, count in zip(TOKEN_KINDS, row, strict=True)}


def get_call_metrics(
    db: sqlite3.Connection, call_id: str, *, prices: Mapping[str, float] | None = None
) -> dict[str, Any] | None:
    """One call's metrics with its ``turns`` and ``tools``, or None when the call is unknown."""
    if not isinstance(call_id, str) or not call_id:
        raise QueryError("call_id", "must be a non-empty string")
    token_columns = ", ".join(f"tokens_{kind}" for kind in TOKEN_KINDS)
    row = db.execute(
        f"SELECT {', '.join(_CALL_FIELDS)}, {token_columns} FROM call_metrics WHERE call_id=?", (call_id,)
    ).fetchone()
    if row is None:
        return None
    metrics: dict[str, Any] = dict(zip(_CALL_FIELDS, row[: len(_CALL_FIELDS)], strict=True))
    metrics["tokens"] = tokens_by_kind(row[len(_CALL_FIELDS) :])
    metrics["cost_usd"] = cost_usd(metrics["tokens"], load_prices() if prices is None else prices)
    turns = []
    for turn_row in db.execute(
        f"SELECT {', '.join(_TURN_FIELDS)}, {token_columns} FROM turn_metrics WHERE call_id=? ORDER BY turn",
        (call_id,),
    ).fetchall():
        turn = dict(zip(_TURN_FIELDS, turn_row[: len(_TURN_FIELDS)], strict=True))
        turn["truncated"] = bool(turn["truncated"])
        turn["tokens"] = tokens_by_kind(turn_row[len(_TURN_FIELDS) :])
        turns.append(turn)
    metrics["turns"] = turns
    metrics["call_control"] = call_control_of(db, call_id)
    metrics["tools"] = rows_as_dicts(
        db.execute(
            f"SELECT {', '.join(_TOOL_FIELDS)} FROM tool_metrics WHERE call_id=? ORDER BY requested_at, tool_call_id",
            (call_id,),
        )
    )
    metrics["response_latency_ms"] = distribution(
        [t["response_latency_ms"] for t in turns if t["response_latency_ms"] is not None]
    )
    metrics["first_audio_ms"] = distribution([t["first_audio_ms"] for t in turns if t["first_audio_ms"] is not None])
    return metrics


def metrics_summary(
    db: sqlite3.Connection,
    since: str | float | None = None,
    until: str | float | None = None,
    *,
    prices: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Totals over the calls started in ``[since, until)`` (all calls when both are None)."""
    start, end = parse_time(since, "since"), parse_time(until, "until")
    clauses, params = [], []
    if start is not None:
        clauses.append("started_at >= ?")
        params.append(start)
    if end is not None:
        clauses.append("started_at < ?")
        params.append(end)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    calls = f"SELECT call_id FROM call_metrics {where}"
    by_status = dict.fromkeys(CALL_STATUSES, 0)
    for status, count in db.execute(f"SELECT status, count(*) FROM call_metrics {where} GROUP BY status", params):
        by_status[status] = count
    sums = db.execute(
        "SELECT coalesce(sum(responses), 0), coalesce(sum(barge_ins), 0), coalesce(sum(truncations), 0), "
        "coalesce(sum(truncated_played_ms), 0), coalesce(sum(truncated_generated_ms), 0), "
        "coalesce(sum(reconnects), 0), coalesce(sum(disconnects), 0), coalesce(sum(connection_failures), 0), "
        "coalesce(sum(model_errors), 0), coalesce(sum(barge_ins_skipped), 0), "
        f"{TOKEN_SUMS_SQL} FROM call_metrics {where}",
        params,
    ).fetchone()
    latencies = [
        r[0]
        for r in db.execute(
            f"SELECT response_latency_ms FROM turn_metrics WHERE response_latency_ms IS NOT NULL "
            f"AND call_id IN ({calls})",
            params,
        )
    ]
    first_audio = [
        r[0]
        for r in db.execute(
            f"SELECT first_audio_ms FROM turn_metrics WHERE first_audio_ms IS NOT NULL AND call_id IN ({calls})",
            params,
        )
    ]
    tools = dict.fromkeys(TOOL_OUTCOMES, 0)
    durations = []
    for outcome, count, total in db.execute(
        f"SELECT outcome, count(*), coalesce(sum(duration_ms), 0) FROM tool_metrics WHERE call_id IN ({calls}) "
        "GROUP BY outcome",
        params,
    ):
        tools[outcome] = count
        durations.append((count if outcome != "pending" else 0, total))
    finished = sum(count for count, _ in durations)
    tokens = tokens_by_kind(sums[10:])
    return {
        "since": start,
        "until": end,
        "calls": {"total": sum(by_status.values()), **by_status},
        "responses": sums[0],
        "response_latency_ms": distribution(latencies),
        "first_audio_ms": distribution(first_audio),
        "barge_ins": sums[1],
        "barge_ins_skipped": sums[9],
        "truncations": sums[2],
        "truncated_played_ms": sums[3],
        "truncated_generated_ms": sums[4],
        "reconnects": sums[5],
        "disconnects": sums[6],
        "connection_failures": sums[7],
        "model_errors": sums[8],
        "tool_calls": {
            "total": sum(tools.values()),
            **tools,
            "mean_ms": round(sum(total for _, total in durations) / finished, 1) if finished else None,
        },
        "tokens": tokens,
        "cost_usd": cost_usd(tokens, load_prices() if prices is None else prices),
        "call_control": call_control_summary(db, where, params, distribution),
    }
