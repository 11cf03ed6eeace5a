"""The conversations view: each call and what was said in it, as the console and the MCP server read it.

Tables (the reference's ``conversations`` and ``conversation_items``, shaped for docs/contract.md's
``/api/conversations``):

- ``conversations``: one row per call. ``status`` is ``in_progress`` until ``CallEnded``, then
  ``completed``, or ``failed`` when the call ended because of us (see :data:`FAILED_REASONS`). A call
  whose process died has no ``CallEnded``: it stays ``in_progress`` with ``ended_at`` null, and
  ``last_event_at`` (time of the last event this view folded) shows it went quiet.
  ``message_count`` counts ``message`` items (caller and assistant turns).
- ``conversation_items``: caller transcripts (``input_audio_transcription``), assistant transcripts
  (``response.output_audio_transcript``/``output_text``, deltas while in progress), function calls
  (``response.function_call_arguments.done``) and their outputs (``ToolCallCompleted``/``Failed``,
  item id ``<tool_call_id>:output``), in conversation order (``position``). Item ``status``:
  ``in_progress``, ``completed``, ``truncated`` (the caller barged in; the generated text is kept),
  ``cancelled``/``incomplete``/``failed`` (the response or transcription did not finish; also every
  item still open when the model socket dropped or the call ended).
- ``conversation_items_fts``: FTS5 over message text, kept in step by triggers.

- ``erased_calls``: when each erased call was erased. At ``CallErased`` every text the call left in
  these tables (transcripts, tool arguments and outputs, the numbers) becomes ``[erased]`` (empty stays
  empty), and the search index is rewritten (FTS5 ``optimize``) so no token of it remains in the file.
  A rebuild folds the erased events' placeholders into the same rows.

Items are created from the events that belong to speech (``input_audio_buffer.committed``,
``response.output_item.added``, transcripts), never from ``conversation.item.added``: after a model
reconnect the engine re-seeds the conversation and the model echoes those items with new ids, which
must not appear twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from callbridge.engine.events import (
    BargeInDecided,
    CallEnded,
    CallErased,
    CallStarted,
    ModelDisconnected,
    ModelEventReceived,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.store import RecordedEvent
from callbridge.projections.conversations_erasure import ERASED_CALLS, call_erased
from callbridge.projections.conversations_outcome import (
    FAILED_REASONS,
    apply_outcome,
    call_ended,
    call_started,
    call_status,
)
from callbridge.projections.conversations_outcome import TOPICS as OUTCOME_TOPICS
from callbridge.projections.conversations_query import get_conversation, list_conversations, search_conversations
from callbridge.projections.projection import Projection
from callbridge.projections.server_events import ServerEvent, parse_server_event
from callbridge.projections.views_db import iso

__all__ = [
    "FAILED_REASONS",
    "ConversationsProjection",
    "call_status",
    "get_conversation",
    "list_conversations",
    "search_conversations",
]

RESPONSE_ITEM_STATUS = {"completed": "completed", "cancelled": "cancelled", "failed": "failed"}

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS conversations (
        call_id TEXT PRIMARY KEY,
        stream_sid TEXT,
        phone_number TEXT,
        caller_number TEXT,
        started_at TEXT,
        ended_at TEXT,
        duration_seconds REAL,
        message_count INTEGER NOT NULL DEFAULT 0,
        item_count INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'in_progress',
        end_reason TEXT,
        model TEXT,
        last_event_at TEXT,
        started_at_unix REAL,
        direction TEXT NOT NULL DEFAULT 'inbound',
        outcome TEXT,
        transfer_target TEXT,
        twilio_status TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS conversations_by_start ON conversations(started_at, call_id)",
    "CREATE INDEX IF NOT EXISTS conversations_by_number ON conversations(phone_number, started_at)",
    "CREATE INDEX IF NOT EXISTS conversations_by_caller ON conversations(caller_number, started_at)",
    """CREATE TABLE IF NOT EXISTS conversation_items (
        call_id TEXT NOT NULL REFERENCES conversations(call_id) ON DELETE CASCADE,
        item_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        type TEXT NOT NULL,
        role TEXT,
        text TEXT,
        status TEXT NOT NULL,
        created_at TEXT NOT NULL,
        response_id TEXT,
        tool_call_id TEXT,
        name TEXT,
        arguments TEXT,
        output TEXT,
        truncated_at_ms INTEGER,
        PRIMARY KEY (call_id, item_id),
        UNIQUE (call_id, position)
    )""",
    "CREATE INDEX IF NOT EXISTS conversation_items_by_response ON conversation_items(call_id, response_id)",
    "CREATE INDEX IF NOT EXISTS conversation_items_by_tool_call ON conversation_items(call_id, tool_call_id)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS conversation_items_fts USING fts5(
        text, call_id UNINDEXED, item_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER IF NOT EXISTS conversation_items_fts_insert AFTER INSERT ON conversation_items
        WHEN new.type = 'message' AND coalesce(new.text, '') != '' BEGIN
        INSERT INTO conversation_items_fts(rowid, text, call_id, item_id)
        VALUES (new.rowid, new.text, new.call_id, new.item_id);
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversation_items_fts_update AFTER UPDATE OF text ON conversation_items
        WHEN new.type = 'message' BEGIN
        DELETE FROM conversation_items_fts WHERE rowid = old.rowid;
        INSERT INTO conversation_items_fts(rowid, text, call_id, item_id)
        SELECT new.rowid, new.text, new.call_id, new.item_id WHERE coalesce(new.text, '') != '';
    END""",
    """CREATE TRIGGER IF NOT EXISTS conversation_items_fts_delete AFTER DELETE ON conversation_items BEGIN
        DELETE FROM conversation_items_fts WHERE rowid = old.rowid;
    END""",
    ERASED_CALLS,
)

_ENSURE_ITEM = (
    "INSERT OR IGNORE INTO conversation_items"
    "(call_id, item_id, position, type, role, status, created_at, response_id) "
    "SELECT call_id, ?, item_count, ?, ?, 'in_progress', ?, ? FROM conversations WHERE call_id=?"
)
_COUNT_ITEM = "UPDATE conversations SET item_count=item_count+1, message_count=message_count+? WHERE call_id=?"

ServerHandler = Callable[[sqlite3.Connection, str, str, ServerEvent], None]


class ConversationsProjection(Projection):
    name = "conversations"
    version = 3
    """2: ``direction``, ``outcome``, ``transfer_target``, ``twilio_status`` (``conversations_outcome``);
    3: warm transfers (``CallHeld``, ``TransferNotAnswered``: the ``on_hold`` outcome)."""
    topics = OUTCOME_TOPICS | frozenset(
        {
            "CallStarted",
            "CallEnded",
            "ModelEventReceived",
            "AssistantAudioSent",
            "BargeInDecided",
            "ModelDisconnected",
            "ToolCallRequested",
            "ToolCallCompleted",
            "ToolCallFailed",
            "CallErased",
        }
    )
    schema = SCHEMA
    tables = ("erased_calls", "conversation_items_fts", "conversation_items", "conversations")

    def __init__(self) -> None:
        self._server: dict[str, ServerHandler] = {
            "input_audio_buffer.committed": _caller_committed,
            "conversation.item.input_audio_transcription.delta": _caller_delta,
            "conversation.item.input_audio_transcription.completed": _caller_transcribed,
            "conversation.item.input_audio_transcription.failed": _caller_failed,
            "response.output_item.added": _output_item_added,
            "response.output_item.done": _output_item_done,
            "response.output_audio_transcript.delta": _assistant_delta,
            "response.output_text.delta": _assistant_delta,
            "response.output_audio_transcript.done": _assistant_done,
            "response.output_text.done": _assistant_done,
            "response.function_call_arguments.done": _function_call_done,
            "conversation.item.truncated": _item_truncated,
            "response.done": _response_done,
        }

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        call_id, at = event.call_id, iso(event.at)
        touched = db.execute(
            "UPDATE conversations SET last_event_at=? WHERE call_id=? AND (last_event_at IS NULL OR last_event_at<?)",
            (at, call_id, at),
        )
        if not touched.rowcount:
            db.execute("INSERT OR IGNORE INTO conversations(call_id, last_event_at) VALUES (?, ?)", (call_id, at))
        if isinstance(event, ModelEventReceived):
            handler = self._server.get(event.type)
            if handler is not None:
                parsed = parse_server_event(event)
                if parsed is not None:
                    handler(db, call_id, at, parsed)
        elif isinstance(event, CallStarted):
            call_started(db, event, at)
        elif isinstance(event, CallEnded):
            call_ended(db, event, at)
        elif type(event).__name__ in OUTCOME_TOPICS:
            apply_outcome(db, event)
        elif isinstance(event, BargeInDecided):
            if event.action == "truncated" and event.item_id:
                db.execute(
                    "UPDATE conversation_items SET status='truncated', truncated_at_ms=? WHERE call_id=? AND item_id=?",
                    (event.audio_end_ms, call_id, event.item_id),
                )
        elif isinstance(event, ToolCallRequested):
            _tool_requested(db, event, at)
        elif isinstance(event, ToolCallCompleted | ToolCallFailed):
            _tool_answered(db, event, at)
        elif isinstance(event, ModelDisconnected):
            _close_open_items(db, call_id, "incomplete")
        elif isinstance(event, CallErased):
            call_erased(db, call_id, at)


# --- item helpers ----------------------------------------------------------------------------------


def _ensure_item(
    db: sqlite3.Connection,
    call_id: str,
    item_id: str,
    kind: str,
    role: str | None,
    at: str,
    response_id: str | None = None,
) -> None:
    """Create the item at the end of the conversation unless it exists."""
    if db.execute(_ENSURE_ITEM, (item_id, kind, role, at, response_id, call_id)).rowcount:
        db.execute(_COUNT_ITEM, (1 if kind == "message" else 0, call_id))


def _close_open_items(db: sqlite3.Connection, call_id: str, status: str) -> None:
    db.execute("UPDATE conversation_items SET status=? WHERE call_id=? AND status='in_progress'", (status, call_id))


# --- the caller ------------------------------------------------------------------------------------


def _caller_committed(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id:
        _ensure_item(db, call_id, e.item_id, "message", "user", at)


def _caller_delta(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id and e.delta:
        _ensure_item(db, call_id, e.item_id, "message", "user", at)
        db.execute(
            "UPDATE conversation_items SET text=coalesce(text, '')||? "
            "WHERE call_id=? AND item_id=? AND status='in_progress'",
            (e.delta, call_id, e.item_id),
        )


def _caller_transcribed(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id:
        _ensure_item(db, call_id, e.item_id, "message", "user", at)
        db.execute(
            "UPDATE conversation_items SET text=?, status='completed' WHERE call_id=? AND item_id=?",
            (e.transcript or "", call_id, e.item_id),
        )


def _caller_failed(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id:
        _ensure_item(db, call_id, e.item_id, "message", "user", at)
        db.execute(
            "UPDATE conversation_items SET status='failed' WHERE call_id=? AND item_id=? AND status='in_progress'",
            (call_id, e.item_id),
        )


# --- the assistant ---------------------------------------------------------------------------------


def _output_item_added(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    item = e.item
    if item is None or not item.id:
        return
    if item.type == "message":
        _ensure_item(db, call_id, item.id, "message", item.role or "assistant", at, e.response_id)
    elif item.type == "function_call":
        _ensure_item(db, call_id, item.id, "function_call", None, at, e.response_id)
        db.execute(
            "UPDATE conversation_items SET name=coalesce(?, name), tool_call_id=coalesce(?, tool_call_id) "
            "WHERE call_id=? AND item_id=?",
            (item.name or None, item.call_id or None, call_id, item.id),
        )


def _output_item_done(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    item = e.item
    if item is None or not item.id:
        return
    if item.type == "function_call" and item.arguments is not None:
        db.execute(
            "UPDATE conversation_items SET arguments=coalesce(arguments, ?) WHERE call_id=? AND item_id=?",
            (item.arguments, call_id, item.id),
        )
    status = "completed" if item.status in (None, "completed") else "incomplete"
    db.execute(
        "UPDATE conversation_items SET status=? WHERE call_id=? AND item_id=? AND status='in_progress'",
        (status, call_id, item.id),
    )


def _assistant_delta(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id and e.delta:
        _ensure_item(db, call_id, e.item_id, "message", "assistant", at, e.response_id)
        db.execute(
            "UPDATE conversation_items SET text=coalesce(text, '')||? "
            "WHERE call_id=? AND item_id=? AND status='in_progress'",
            (e.delta, call_id, e.item_id),
        )


def _assistant_done(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    text = e.transcript if e.type == "response.output_audio_transcript.done" else e.text
    if e.item_id:
        _ensure_item(db, call_id, e.item_id, "message", "assistant", at, e.response_id)
        db.execute(
            "UPDATE conversation_items SET text=?, "
            "status=CASE WHEN status='in_progress' THEN 'completed' ELSE status END "
            "WHERE call_id=? AND item_id=?",
            (text or "", call_id, e.item_id),
        )


def _item_truncated(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if e.item_id:
        db.execute(
            "UPDATE conversation_items SET status='truncated', truncated_at_ms=coalesce(truncated_at_ms, ?) "
            "WHERE call_id=? AND item_id=? AND type='message'",
            (e.audio_end_ms, call_id, e.item_id),
        )


def _response_done(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    response = e.response
    if response is None or not response.id:
        return
    status = RESPONSE_ITEM_STATUS.get(response.status or "completed", "incomplete")
    db.execute(
        "UPDATE conversation_items SET status=? WHERE call_id=? AND response_id=? AND status='in_progress'",
        (status, call_id, response.id),
    )


# --- tools -----------------------------------------------------------------------------------------


def _function_call_done(db: sqlite3.Connection, call_id: str, at: str, e: ServerEvent) -> None:
    if not e.item_id:
        return
    _ensure_item(db, call_id, e.item_id, "function_call", None, at, e.response_id)
    db.execute(
        "UPDATE conversation_items SET name=coalesce(?, name), tool_call_id=coalesce(?, tool_call_id), "
        "arguments=coalesce(?, arguments), status='completed' WHERE call_id=? AND item_id=?",
        (e.name, e.call_id, e.arguments, call_id, e.item_id),
    )


def _tool_requested(db: sqlite3.Connection, event: ToolCallRequested, at: str) -> None:
    """Usually the function call item exists already; this covers a log without the model's event."""
    found = db.execute(
        "SELECT 1 FROM conversation_items WHERE call_id=? AND tool_call_id=? AND type='function_call'",
        (event.call_id, event.tool_call_id),
    ).fetchone()
    if found is not None:
        return
    item_id = event.item_id or event.tool_call_id
    _ensure_item(db, event.call_id, item_id, "function_call", None, at, event.response_id or None)
    db.execute(
        "UPDATE conversation_items SET name=?, tool_call_id=?, arguments=coalesce(arguments, ?), status='completed' "
        "WHERE call_id=? AND item_id=?",
        (event.name, event.tool_call_id, event.arguments, event.call_id, item_id),
    )


def _tool_answered(db: sqlite3.Connection, event: ToolCallCompleted | ToolCallFailed, at: str) -> None:
    status = "completed" if isinstance(event, ToolCallCompleted) else "failed"
    item_id = f"{event.tool_call_id}:output"
    _ensure_item(db, event.call_id, item_id, "function_call_output", None, at)
    db.execute(
        "UPDATE conversation_items SET status=?, name=?, tool_call_id=?, output=? WHERE call_id=? AND item_id=?",
        (status, event.name, event.tool_call_id, event.output, event.call_id, item_id),
    )
    db.execute(
        "UPDATE conversation_items SET output=? WHERE call_id=? AND tool_call_id=? AND type='function_call'",
        (event.output, event.call_id, event.tool_call_id),
    )
