"""Call-control figures in the metrics view: greeting latency, transfers, hang-ups and by whom,
answering machines, the keypad, silence re-prompts and session recycles.

Part of ``projections/metrics.py`` (columns of ``call_metrics``, :data:`COLUMNS`); read back by
:func:`call_control_of` (one call), :func:`call_control_summary` (a period: the totals, keys and
re-prompts and recycles included) and
:mod:`projections.metrics_prometheus` (greeting latency, and every count here as a counter). ``hung_up_by`` is who
asked for the end (``model``, ``operator``, ``silence``, ``max_duration``, ``voicemail``), null when
the caller hung up or the call never ended by our decision; ``greeting_latency_ms`` is from the
call's start to the greeting's first audio. ``transfers`` counts transfers put through: a cold
one's ``<Dial>`` sent, a warm one's caller held while the person is called (``CallHeld``) — whether
the person then answers is not counted here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from callbridge.engine.events import (
    CallEndRequested,
    CallHeld,
    DtmfReceived,
    DtmfSent,
    Event,
    GreetingAudioStarted,
    MachineDetected,
    ModelSessionRecycled,
    SilenceReprompted,
    TransferDialed,
    TransferRefused,
)

COLUMNS = (
    ("greeting_latency_ms", "REAL"),
    ("transfers", "INTEGER NOT NULL DEFAULT 0"),
    ("transfers_refused", "INTEGER NOT NULL DEFAULT 0"),
    ("transfer_target", "TEXT"),
    ("hung_up_by", "TEXT"),
    ("answered_by", "TEXT"),
    ("dtmf_received", "INTEGER NOT NULL DEFAULT 0"),
    ("dtmf_sent", "INTEGER NOT NULL DEFAULT 0"),
    ("silence_reprompts", "INTEGER NOT NULL DEFAULT 0"),
    ("session_recycles", "INTEGER NOT NULL DEFAULT 0"),
)
COLUMNS_SQL = ",\n        ".join(f"{name} {kind}" for name, kind in COLUMNS)
NAMES = tuple(name for name, _ in COLUMNS)
TOPICS = frozenset(
    {
        "GreetingAudioStarted",
        "TransferDialed",
        "TransferRefused",
        "CallEndRequested",
        "MachineDetected",
        "DtmfReceived",
        "DtmfSent",
        "SilenceReprompted",
        "ModelSessionRecycled",
        "CallHeld",
    }
)
HANG_UP_BY = ("model", "operator", "silence", "max_duration", "voicemail")
SUMMED = ("dtmf_received", "dtmf_sent", "silence_reprompts", "session_recycles")
"""Per-call counts the summary adds up over its period."""

_SET = "UPDATE call_metrics SET {} WHERE call_id=?"
_FOLD: dict[type[Event], Callable[[Any], tuple[str, tuple[Any, ...]]]] = {
    GreetingAudioStarted: lambda e: ("greeting_latency_ms=coalesce(greeting_latency_ms, ?)", (e.latency_ms,)),
    TransferDialed: lambda e: (
        "transfers=transfers+?, transfer_target=coalesce(?, transfer_target)",
        (1 if e.ok else 0, e.label if e.ok else None),
    ),
    CallHeld: lambda e: ("transfers=transfers+1, transfer_target=coalesce(?, transfer_target)", (e.label,)),
    TransferRefused: lambda e: ("transfers_refused=transfers_refused+1", ()),
    CallEndRequested: lambda e: ("hung_up_by=coalesce(hung_up_by, ?)", (e.by,)),
    MachineDetected: lambda e: ("answered_by=coalesce(answered_by, ?)", (e.answered_by,)),
    DtmfReceived: lambda e: ("dtmf_received=dtmf_received+1", ()),
    DtmfSent: lambda e: ("dtmf_sent=dtmf_sent+?", (len(e.digits),)),
    SilenceReprompted: lambda e: ("silence_reprompts=silence_reprompts+1", ()),
    ModelSessionRecycled: lambda e: ("session_recycles=session_recycles+1", ()),
}


def handles(event: Event) -> bool:
    return type(event) in _FOLD


def apply_call_control(db: sqlite3.Connection, event: Event) -> None:
    """Fold one call-control fact into its call's row (which exists already)."""
    assignments, values = _FOLD[type(event)](event)
    db.execute(_SET.format(assignments), (*values, event.call_id))


def call_control_of(db: sqlite3.Connection, call_id: str) -> dict[str, Any]:
    row = db.execute(f"SELECT {', '.join(NAMES)} FROM call_metrics WHERE call_id=?", (call_id,)).fetchone()
    return dict(zip(NAMES, row, strict=True)) if row is not None else {}


def call_control_summary(
    db: sqlite3.Connection, where: str, params: list[Any], distribution: Callable[[list[float]], Any]
) -> dict[str, Any]:
    """Totals over the calls ``where`` selects (the summary's own filter)."""
    latencies = [
        row[0]
        for row in db.execute(
            f"SELECT greeting_latency_ms FROM call_metrics {where} {'AND' if where else 'WHERE'} "
            "greeting_latency_ms IS NOT NULL ORDER BY greeting_latency_ms",
            params,
        )
    ]
    transfers, refused, voicemails, *keypad_and_session = db.execute(
        "SELECT coalesce(sum(transfers), 0), coalesce(sum(transfers_refused), 0), "
        "coalesce(sum(hung_up_by = 'voicemail'), 0), "
        f"{', '.join(f'coalesce(sum({name}), 0)' for name in SUMMED)} FROM call_metrics {where}",
        params,
    ).fetchone()
    hang_ups = dict.fromkeys(HANG_UP_BY, 0)
    clause = f"{where} {'AND' if where else 'WHERE'} hung_up_by IS NOT NULL"
    hang_ups.update(dict(db.execute(f"SELECT hung_up_by, count(*) FROM call_metrics {clause} GROUP BY 1", params)))
    return {
        "greeting_latency_ms": distribution(latencies),
        "transfers": transfers,
        "transfers_refused": refused,
        "voicemails_left": voicemails,
        "hang_ups_by": hang_ups,
        **dict(zip(SUMMED, keypad_and_session, strict=True)),
    }
