"""The metrics view as Prometheus metric families, built with ``prometheus_client`` (the field's
standard client), for the ``/metrics`` collector of the web layer (``web/metrics_export.py``).

Why this shape:

- **Families, not text.** The view is read into ``prometheus_client`` metric families; the library
  names, escapes and formats them (``generate_latest``), so the exposition follows the format the
  scraper expects, and the families can be asserted on directly.
- **Latencies in seconds** (Prometheus convention: base units, ``_seconds``): the view keeps
  milliseconds, the families divide by 1000. Buckets are counted in SQL on the stored milliseconds
  (exact comparisons) and labelled in seconds.
- **Counters are named without ``_total``**: ``CounterMetricFamily`` adds it to the sample, so the
  served names are the ones we always exposed (``callbridge_calls_total``, …).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from callbridge.projections.metrics_call_control import HANG_UP_BY
from callbridge.projections.metrics_query import CALL_STATUSES, TOKEN_SUMS_SQL, TOOL_OUTCOMES, tokens_by_kind
from callbridge.projections.pricing import TOKEN_KINDS, cost_usd, load_prices

LATENCY_BUCKETS_MS = (100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
"""Upper bounds of the turn-latency buckets (served in seconds: 0.1 … 10)."""
GREETING_BUCKETS_MS = (250, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000)
"""Upper bounds of the greeting-latency buckets (served in seconds: 0.25 … 10)."""

_TURN_LATENCIES = (
    ("callbridge_turn_latency_seconds", "response_latency_ms", "End of caller speech to first assistant audio sent."),
    ("callbridge_first_audio_seconds", "first_audio_ms", "response.created to the response's first audio."),
)


def histogram_seconds(
    name: str, help_text: str, table: str, column: str, bounds_ms: Sequence[int], db: sqlite3.Connection
) -> HistogramMetricFamily:
    """A histogram in seconds of a millisecond ``column`` of ``table`` (its non-null values)."""
    counts = ", ".join(f"coalesce(sum({column} <= {le}), 0)" for le in bounds_ms)
    *cumulative, count, total_ms = db.execute(
        f"SELECT {counts}, count({column}), coalesce(sum({column}), 0) FROM {table} WHERE {column} IS NOT NULL"
    ).fetchone()
    buckets = [(floatToGoString(le / 1000), n) for le, n in zip(bounds_ms, cumulative, strict=True)]
    buckets.append(("+Inf", count))
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=total_ms / 1000, unit="seconds")


def counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    """An unlabelled counter (``name`` without ``_total``)."""
    return CounterMetricFamily(name, help_text, value=value)


def labelled_counter(name: str, help_text: str, label: str, values: Mapping[str, float]) -> CounterMetricFamily:
    """A counter with one label, a sample per key of ``values`` in key order."""
    family = CounterMetricFamily(name, help_text, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def view_metric_families(db: sqlite3.Connection, *, prices: Mapping[str, float] | None = None) -> list[Metric]:
    """Every family the metrics view gives ``/metrics``: calls by status, turn and first-audio latency,
    truncations, barge-ins, model reconnects and disconnects, tools by outcome, tokens by kind, cost,
    and the call-control figures (greeting latency, transfers, hang-ups by whom)."""
    statuses = dict.fromkeys(CALL_STATUSES, 0)
    statuses.update(dict(db.execute("SELECT status, count(*) FROM call_metrics GROUP BY status").fetchall()))
    families: list[Metric] = [labelled_counter("callbridge_calls", "Calls recorded, by status.", "status", statuses)]
    families += [
        histogram_seconds(name, help_text, "turn_metrics", column, LATENCY_BUCKETS_MS, db)
        for name, column, help_text in _TURN_LATENCIES
    ]
    truncations, barge_ins, reconnects, disconnects, *token_sums = db.execute(
        "SELECT coalesce(sum(truncations), 0), coalesce(sum(barge_ins), 0), coalesce(sum(reconnects), 0), "
        f"coalesce(sum(disconnects), 0), {TOKEN_SUMS_SQL} FROM call_metrics"
    ).fetchone()
    families += [
        counter("callbridge_truncations", "Assistant replies cut by a barge-in.", truncations),
        counter(
            "callbridge_barge_ins",
            "Times the caller interrupted assistant audio that was playing (the reply was cut).",
            barge_ins,
        ),
        counter("callbridge_model_reconnects", "Model sessions reopened mid-call.", reconnects),
        counter("callbridge_model_disconnects", "Model sockets lost mid-call.", disconnects),
    ]
    outcomes = dict.fromkeys(TOOL_OUTCOMES, 0)
    outcomes.update(dict(db.execute("SELECT outcome, count(*) FROM tool_metrics GROUP BY outcome").fetchall()))
    families.append(labelled_counter("callbridge_tool_calls", "Tool calls, by outcome.", "outcome", outcomes))
    tokens = tokens_by_kind(token_sums)
    tokens_family = CounterMetricFamily(
        "callbridge_tokens",
        "Model tokens, by kind (disjoint: cached input is not in input_text/input_audio).",
        labels=["kind"],
    )
    for kind in TOKEN_KINDS:  # the price table's order, as the API lists them
        tokens_family.add_metric([kind], tokens[kind])
    families.append(tokens_family)
    cost = cost_usd(tokens, load_prices() if prices is None else prices)
    families.append(counter("callbridge_cost_usd", "Estimated model cost in USD from the price table.", cost))
    return families + call_control_families(db)


_CALL_CONTROL_COUNTERS = (
    ("callbridge_transfers", "transfers", "Calls handed to a transfer target."),
    ("callbridge_transfers_refused", "transfers_refused", "Transfers refused (an unknown or unusable target)."),
    ("callbridge_dtmf_received", "dtmf_received", "Keys the caller pressed."),
    ("callbridge_dtmf_sent", "dtmf_sent", "Keys the agent pressed (digits sent to the line)."),
    ("callbridge_silence_reprompts", "silence_reprompts", "Times a silent caller was asked if they are still there."),
    ("callbridge_session_recycles", "session_recycles", "Model sessions replaced mid-call before their time cap."),
)
"""(name without ``_total``, ``call_metrics`` column, help) of the call-control counters."""


def call_control_families(db: sqlite3.Connection) -> list[Metric]:
    """Greeting latency (histogram, seconds), transfers, refused transfers, keys each way, silence
    re-prompts, session recycles, and hang-ups by whom (counters)."""
    sums_sql = ", ".join(f"coalesce(sum({column}), 0)" for _, column, _ in _CALL_CONTROL_COUNTERS)
    sums = db.execute(f"SELECT {sums_sql} FROM call_metrics").fetchone()
    hang_ups = dict.fromkeys(HANG_UP_BY, 0)
    hang_ups.update(
        dict(db.execute("SELECT hung_up_by, count(*) FROM call_metrics WHERE hung_up_by IS NOT NULL GROUP BY 1"))
    )
    return [
        histogram_seconds(
            "callbridge_greeting_latency_seconds",
            "Call start to the greeting's first audio.",
            "call_metrics",
            "greeting_latency_ms",
            GREETING_BUCKETS_MS,
            db,
        ),
        *(
            counter(name, help_text, value)
            for (name, _, help_text), value in zip(_CALL_CONTROL_COUNTERS, sums, strict=True)
        ),
        labelled_counter(
            "callbridge_hangups",
            "Calls we ended, by who decided (the caller's hang-ups are not counted).",
            "by",
            hang_ups,
        ),
    ]
