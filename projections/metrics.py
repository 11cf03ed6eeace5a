"""The metrics view: how well each call went, per call and per turn, from the events' timestamps.

Tables:

- ``turn_metrics``: one row per model response. ``response_latency_ms`` is the time from the end
  of the caller's speech (``CallerSpeechDetected``, stopped) to the first assistant audio sent to
  Twilio, measured on the first response started after that speech which produced audio (so a turn
  that went through a tool includes the tool's time); new caller speech cancels a pending
  measurement. ``first_audio_ms`` is the model's time from ``ResponseStarted`` to that response's
  first audio (the engine forwards a delta the moment it arrives, so first audio sent is first delta
  received). ``truncated``/``played_ms``/``generated_ms`` come from ``BargeInDecided``; tokens from
  ``ResponseFinished``.
- ``call_metrics``: one row per call: status, duration, counts (caller turns, responses, barge-ins,
  truncations, skipped barge-in decisions, reconnects, disconnects, failed connection attempts,
  model errors, task crashes, tool calls and failures) and token totals. A *barge-in* is a real
  interruption: the caller spoke over assistant audio that was playing and the reply was cut
  (``BargeInDecided.action == "truncated"``), so ``barge_ins`` equals ``truncations``. The caller
  starting to speak while nothing was playing (or after the reply had fully played) interrupts
  nothing: those decisions are counted apart, in ``barge_ins_skipped``. ``speech_stopped_at`` and
  ``disconnected_at`` are the fold's pending state (a measurement waiting for its end).
- ``tool_metrics``: one row per tool call: name, outcome (``pending``, ``completed``, ``failed``,
  ``timed_out``), duration, and the error (``[erased]`` once the call is erased). Everything else
  here is numbers and states, which an erasure keeps.

Token columns are ``tokens_<kind>`` for the disjoint kinds of :mod:`projections.pricing`. When the
model does not say how cached input splits into text and audio, cached tokens are counted as text
first (the cached prefix is mostly instructions and tools), the rest as audio.
"""

from __future__ import annotations

import sqlite3

from callbridge.engine.events import (
    AssistantAudioSent,
    BargeInDecided,
    CallEnded,
    CallErased,
    CallerSpeechDetected,
    CallStarted,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelErrorReported,
    ResponseFinished,
    ResponseStarted,
    TaskCrashed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.store import RecordedEvent
from callbridge.engine.usage import TOKEN_KINDS, usage_tokens
from callbridge.projections.conversations import call_status
from callbridge.projections.metrics_call_control import COLUMNS_SQL as CALL_CONTROL_COLUMNS
from callbridge.projections.metrics_call_control import TOPICS as CALL_CONTROL_TOPICS
from callbridge.projections.metrics_call_control import apply_call_control, handles
from callbridge.projections.metrics_prometheus import view_metric_families
from callbridge.projections.metrics_query import get_call_metrics, metrics_summary
from callbridge.projections.projection import Projection
from callbridge.projections.views_db import erased_text, iso

__all__ = ["MetricsProjection", "get_call_metrics", "metrics_summary", "usage_tokens", "view_metric_families"]

_TOKEN_COLUMNS = ", ".join(f"tokens_{kind} INTEGER NOT NULL DEFAULT 0" for kind in TOKEN_KINDS)

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS call_metrics (
        call_id TEXT PRIMARY KEY,
        started_at TEXT,
        ended_at TEXT,
        started_at_unix REAL,
        duration_seconds REAL,
        status TEXT NOT NULL DEFAULT 'in_progress',
        end_reason TEXT,
        model TEXT,
        caller_turns INTEGER NOT NULL DEFAULT 0,
        responses INTEGER NOT NULL DEFAULT 0,
        barge_ins INTEGER NOT NULL DEFAULT 0,
        barge_ins_skipped INTEGER NOT NULL DEFAULT 0,
        truncations INTEGER NOT NULL DEFAULT 0,
        truncated_played_ms INTEGER NOT NULL DEFAULT 0,
        truncated_generated_ms INTEGER NOT NULL DEFAULT 0,
        reconnects INTEGER NOT NULL DEFAULT 0,
        disconnects INTEGER NOT NULL DEFAULT 0,
        connection_failures INTEGER NOT NULL DEFAULT 0,
        reconnect_downtime_ms REAL NOT NULL DEFAULT 0,
        model_errors INTEGER NOT NULL DEFAULT 0,
        task_crashes INTEGER NOT NULL DEFAULT 0,
        tool_calls INTEGER NOT NULL DEFAULT 0,
        tool_failures INTEGER NOT NULL DEFAULT 0,
        tool_timeouts INTEGER NOT NULL DEFAULT 0,
        tool_ms_total REAL NOT NULL DEFAULT 0,
        {_TOKEN_COLUMNS},
        speech_stopped_at REAL,
        disconnected_at REAL,
        {CALL_CONTROL_COLUMNS}
    )""",
    "CREATE INDEX IF NOT EXISTS call_metrics_by_start ON call_metrics(started_at)",
    f"""CREATE TABLE IF NOT EXISTS turn_metrics (
        call_id TEXT NOT NULL REFERENCES call_metrics(call_id) ON DELETE CASCADE,
        response_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        created_at TEXT,
        created_at_unix REAL,
        status TEXT NOT NULL DEFAULT 'in_progress',
        item_id TEXT,
        speech_stopped_at REAL,
        first_audio_at REAL,
        response_latency_ms REAL,
        first_audio_ms REAL,
        truncated INTEGER NOT NULL DEFAULT 0,
        played_ms INTEGER,
        generated_ms INTEGER,
        {_TOKEN_COLUMNS},
        PRIMARY KEY (call_id, response_id)
    )""",
    """CREATE TABLE IF NOT EXISTS tool_metrics (
        call_id TEXT NOT NULL REFERENCES call_metrics(call_id) ON DELETE CASCADE,
        tool_call_id TEXT NOT NULL,
        name TEXT NOT NULL,
        requested_at TEXT,
        handler TEXT,
        outcome TEXT NOT NULL DEFAULT 'pending',
        duration_ms REAL,
        error TEXT,
        PRIMARY KEY (call_id, tool_call_id)
    )""",
)

_NEW_TURN = (
    "INSERT OR IGNORE INTO turn_metrics(call_id, response_id, turn, created_at, created_at_unix, speech_stopped_at) "
    "SELECT call_id, ?, responses + 1, ?, ?, speech_stopped_at FROM call_metrics WHERE call_id=?"
)
_ADD_TOKENS_TURN = (
    "UPDATE turn_metrics SET status=?, "
    + ", ".join(f"tokens_{kind}=tokens_{kind}+?" for kind in TOKEN_KINDS)
    + " WHERE call_id=? AND response_id=?"
)
_ADD_TOKENS_CALL = (
    "UPDATE call_metrics SET "
    + ", ".join(f"tokens_{kind}=tokens_{kind}+?" for kind in TOKEN_KINDS)
    + " WHERE call_id=?"
)
_FIRST_AUDIO = (
    "UPDATE turn_metrics SET first_audio_at=?, item_id=?, "
    "first_audio_ms=CASE WHEN created_at_unix IS NULL THEN NULL ELSE round((? - created_at_unix) * 1000, 1) END "
    "WHERE call_id=? AND response_id=? AND first_audio_at IS NULL"
)


class MetricsProjection(Projection):
    name = "metrics"
    version = 5
    """2: ``barge_ins`` counts real interruptions only; ``barge_ins_skipped`` the other decisions.
    3: call-control figures (``projections/metrics_call_control.py``); 4: a warm transfer (``CallHeld``)
    counts as a transfer; 5: folds the typed facts (``CallerSpeechDetected``, ``ResponseStarted``,
    ``ResponseFinished``), never the model's JSON."""
    topics = CALL_CONTROL_TOPICS | frozenset(
        {
            "CallStarted",
            "CallEnded",
            "CallerSpeechDetected",
            "ResponseStarted",
            "ResponseFinished",
            "AssistantAudioSent",
            "BargeInDecided",
            "ModelConnected",
            "ModelDisconnected",
            "ModelConnectionFailed",
            "ModelErrorReported",
            "TaskCrashed",
            "ToolCallRequested",
            "ToolCallCompleted",
            "ToolCallFailed",
            "CallErased",
        }
    )
    schema = SCHEMA
    tables = ("tool_metrics", "turn_metrics", "call_metrics")
    clear_only = frozenset({"AssistantAudioSent"})
    """Folded for its time, item and response: its audio is never read."""

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        if isinstance(event, AssistantAudioSent):  # the hot path: most events here are audio chunks
            _audio_sent(db, event)
            return
        call_id = event.call_id
        db.execute("INSERT OR IGNORE INTO call_metrics(call_id) VALUES (?)", (call_id,))
        if isinstance(event, CallerSpeechDetected):
            _caller_speech(db, event)
        elif isinstance(event, ResponseStarted):
            if event.response_id:
                _new_turn(db, call_id, event.response_id, iso(event.at), event.at)
        elif isinstance(event, ResponseFinished):
            _response_finished(db, event)
        elif isinstance(event, CallStarted):
            db.execute(
                "UPDATE call_metrics SET started_at=?, started_at_unix=?, model=? WHERE call_id=?",
                (iso(event.at), event.at, event.model, call_id),
            )
        elif isinstance(event, CallEnded):
            db.execute(
                "UPDATE call_metrics SET ended_at=?, end_reason=?, status=?, duration_seconds="
                "CASE WHEN started_at_unix IS NULL THEN NULL ELSE round(? - started_at_unix, 3) END WHERE call_id=?",
                (iso(event.at), event.reason, call_status(event.reason), event.at, call_id),
            )
            db.execute(
                "UPDATE turn_metrics SET status='incomplete' WHERE call_id=? AND status='in_progress'", (call_id,)
            )
        elif isinstance(event, BargeInDecided):
            _barge_in(db, event)
        elif isinstance(event, ModelConnected):
            if event.attempt > 0:
                db.execute(
                    "UPDATE call_metrics SET reconnects=reconnects+1, reconnect_downtime_ms=reconnect_downtime_ms+"
                    "CASE WHEN disconnected_at IS NULL THEN 0 ELSE round((? - disconnected_at) * 1000, 1) END, "
                    "disconnected_at=NULL WHERE call_id=?",
                    (event.at, call_id),
                )
        elif isinstance(event, ModelDisconnected):
            db.execute(
                "UPDATE call_metrics SET disconnects=disconnects+1, disconnected_at=coalesce(disconnected_at, ?) "
                "WHERE call_id=?",
                (event.at, call_id),
            )
            db.execute(
                "UPDATE turn_metrics SET status='incomplete' WHERE call_id=? AND status='in_progress'", (call_id,)
            )
        elif isinstance(event, ModelConnectionFailed):
            db.execute("UPDATE call_metrics SET connection_failures=connection_failures+1 WHERE call_id=?", (call_id,))
        elif isinstance(event, ModelErrorReported):
            db.execute("UPDATE call_metrics SET model_errors=model_errors+1 WHERE call_id=?", (call_id,))
        elif isinstance(event, TaskCrashed):
            db.execute("UPDATE call_metrics SET task_crashes=task_crashes+1 WHERE call_id=?", (call_id,))
        elif isinstance(event, ToolCallRequested | ToolCallCompleted | ToolCallFailed):
            _tool_event(db, event)
        elif handles(event):
            apply_call_control(db, event)
        elif isinstance(event, CallErased):  # a tool's error often quotes what it was given
            db.execute(f"UPDATE tool_metrics SET error={erased_text('error')} WHERE call_id=?", (call_id,))


def _caller_speech(db: sqlite3.Connection, event: CallerSpeechDetected) -> None:
    if event.started:
        db.execute("UPDATE call_metrics SET speech_stopped_at=NULL WHERE call_id=?", (event.call_id,))
    else:
        db.execute(
            "UPDATE call_metrics SET speech_stopped_at=?, caller_turns=caller_turns+1 WHERE call_id=?",
            (event.at, event.call_id),
        )


def _response_finished(db: sqlite3.Connection, event: ResponseFinished) -> None:
    call_id, response_id = event.call_id, event.response_id
    if not response_id:
        return
    _new_turn(db, call_id, response_id, None, None)
    tokens = [event.tokens.get(kind, 0) for kind in TOKEN_KINDS]
    db.execute(_ADD_TOKENS_TURN, (event.status or "completed", *tokens, call_id, response_id))
    db.execute(_ADD_TOKENS_CALL, (*tokens, call_id))


def _new_turn(db: sqlite3.Connection, call_id: str, response_id: str, at_text: str | None, at: float | None) -> None:
    if db.execute(_NEW_TURN, (response_id, at_text, at, call_id)).rowcount:
        db.execute("UPDATE call_metrics SET responses=responses+1 WHERE call_id=?", (call_id,))


def _audio_sent(db: sqlite3.Connection, event: AssistantAudioSent) -> None:
    call_id, response_id = event.call_id, event.response_id
    first = db.execute(_FIRST_AUDIO, (event.at, event.item_id, event.at, call_id, response_id))
    if not first.rowcount:
        return
    # The first audio of this response: does it end a caller turn still waiting for an answer?
    waiting = db.execute(
        "SELECT t.speech_stopped_at FROM turn_metrics t JOIN call_metrics m ON m.call_id = t.call_id "
        "WHERE t.call_id=? AND t.response_id=? AND t.speech_stopped_at = m.speech_stopped_at",
        (call_id, response_id),
    ).fetchone()
    if waiting is None:
        return
    db.execute(
        "UPDATE turn_metrics SET response_latency_ms=round((? - speech_stopped_at) * 1000, 1) "
        "WHERE call_id=? AND response_id=?",
        (event.at, call_id, response_id),
    )
    db.execute("UPDATE call_metrics SET speech_stopped_at=NULL WHERE call_id=?", (call_id,))


def _barge_in(db: sqlite3.Connection, event: BargeInDecided) -> None:
    call_id = event.call_id
    if event.action != "truncated":
        db.execute("UPDATE call_metrics SET barge_ins_skipped=barge_ins_skipped+1 WHERE call_id=?", (call_id,))
        return
    db.execute(
        "UPDATE call_metrics SET barge_ins=barge_ins+1, truncations=truncations+1, "
        "truncated_played_ms=truncated_played_ms+?, truncated_generated_ms=truncated_generated_ms+? WHERE call_id=?",
        (event.played_ms, event.received_ms, call_id),
    )
    if event.item_id:
        db.execute(
            "UPDATE turn_metrics SET truncated=1, played_ms=?, generated_ms=? WHERE call_id=? AND item_id=?",
            (event.played_ms, event.received_ms, call_id, event.item_id),
        )


def _tool_event(db: sqlite3.Connection, event: ToolCallRequested | ToolCallCompleted | ToolCallFailed) -> None:
    call_id = event.call_id
    created = db.execute(
        "INSERT OR IGNORE INTO tool_metrics(call_id, tool_call_id, name, requested_at, handler) VALUES (?, ?, ?, ?, ?)",
        (
            call_id,
            event.tool_call_id,
            event.name,
            iso(event.at) if isinstance(event, ToolCallRequested) else None,
            event.handler if isinstance(event, ToolCallRequested) else None,
        ),
    )
    if created.rowcount:
        db.execute("UPDATE call_metrics SET tool_calls=tool_calls+1 WHERE call_id=?", (call_id,))
    if isinstance(event, ToolCallRequested):
        return
    if isinstance(event, ToolCallCompleted):
        outcome, error, failures, timeouts = "completed", None, 0, 0
    else:
        outcome = "timed_out" if event.timed_out else "failed"
        error, failures, timeouts = event.error, 1, int(event.timed_out)
    db.execute(
        "UPDATE tool_metrics SET outcome=?, duration_ms=?, error=? WHERE call_id=? AND tool_call_id=?",
        (outcome, event.duration_ms, error, call_id, event.tool_call_id),
    )
    db.execute(
        "UPDATE call_metrics SET tool_failures=tool_failures+?, tool_timeouts=tool_timeouts+?, "
        "tool_ms_total=tool_ms_total+? WHERE call_id=?",
        (failures, timeouts, event.duration_ms, call_id),
    )
