"""The conversations view: each call and what was said in it, as the console and the MCP server read it.

Tables (the reference's ``conversations`` and ``conversation_items``, shaped for docs/contract.md's
``/api/conversations``):

- ``conversations``: one row per call. ``status`` is ``in_progress`` until ``CallEnded``, then
  ``completed``, or ``failed`` when the call ended because of us (see :data:`FAILED_REASONS`). A call
  whose process died has no ``CallEnded``: it stays ``in_progress`` with ``ended_at`` null, and
  ``last_event_at`` (time of the last event this view folded) shows it went quiet.
  ``message_count`` counts ``message`` items (caller and assistant turns).
- ``conversation_items``: what the caller said (``CallerSaid``), what the assistant said
  (``AssistantSaid``), function calls (``ToolCallRequested``) and their outputs
  (``ToolCallCompleted``/``Failed``, item id ``<tool_call_id>:output``), in conversation order
  (``position``). Item ``status``: ``in_progress``, ``completed``, ``truncated`` (the caller barged
  in; the generated text is kept), ``failed`` (the caller's words could not be transcribed),
  ``incomplete`` (the response did not finish; also every item still open when the model socket
  dropped or the call ended).
- ``conversation_items_fts``: FTS5 over message text. A new item is indexed by a trigger; a changed
  text once per page, at its end (:meth:`ConversationsProjection.page_done`), however often it grew in
  the page — re-indexing at every update (a trigger, before) cost a rebuild ~40 % of its time, once per
  item and page ~11 % (py-spy) — and an erased call's at once.

- ``erased_calls``: when each erased call was erased. At ``CallErased`` every text the call left in
  these tables (transcripts, tool arguments and outputs, the numbers) becomes ``[erased]`` (empty stays
  empty), and the search index is rewritten (FTS5 ``optimize``) so no token of it remains in the file.
  A rebuild folds the erased events' placeholders into the same rows.

The fold reads the engine's typed facts, never the model's JSON (a log recorded before the facts
existed is read through ``projections/legacy_facts.py``); the words of an item whose transcript is
not done yet are its ``TranscriptDelta`` so far. Items take their place when the caller's audio is
committed (``CallerAudioCommitted``) or a response adds them (``ResponseItemAdded``), never from the
items the model echoes after a reconnect re-seeds the conversation, which must not appear twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from callbridge.engine.events import (
    AssistantSaid,
    BargeInDecided,
    CallEnded,
    CallErased,
    CallerAudioCommitted,
    CallerSaid,
    CallerTranscriptionFailed,
    CallStarted,
    ModelDisconnected,
    ResponseFinished,
    ResponseItemAdded,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TranscriptDelta,
)
from callbridge.engine.store import RecordedEvent
from callbridge.projections.conversations_erasure import ERASED_CALLS, call_erased
from callbridge.projections.conversations_index import INDEX_ITEM, UNINDEX_ITEM
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
from callbridge.projections.views_db import iso

__all__ = [
    "FAILED_REASONS",
    "ConversationsProjection",
    "call_status",
    "get_conversation",
    "list_conversations",
    "search_conversations",
]

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
    # a message's changed text is indexed at the page's end (ConversationsProjection.page_done): views
    # made before that had a trigger re-indexing it at every update
    "DROP TRIGGER IF EXISTS conversation_items_fts_update",
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
_APPEND_TEXT = (
    "UPDATE conversation_items SET text=coalesce(text, '')||? WHERE call_id=? AND item_id=? AND status='in_progress'"
)
_LAST_EVENT_AT = (
    "UPDATE conversations SET last_event_at=? WHERE call_id=? AND (last_event_at IS NULL OR last_event_at<?)"
)
_COUNT_ITEM = "UPDATE conversations SET item_count=item_count+1, message_count=message_count+? WHERE call_id=?"
_TEXT_CHANGES = (TranscriptDelta, CallerSaid, AssistantSaid)
"""The facts whose fold may change a message's text (and so its entry in the search index)."""

Handler = Callable[[sqlite3.Connection, Any, str], None]


class ConversationsProjection(Projection):
    name = "conversations"
    version = 4
    """2: ``direction``, ``outcome``, ``transfer_target``, ``twilio_status`` (``conversations_outcome``);
    3: warm transfers (``CallHeld``, ``TransferNotAnswered``: the ``on_hold`` outcome); 4: folds the
    typed facts, never the model's JSON (an unfinished response's items end ``incomplete``)."""
    topics = OUTCOME_TOPICS | frozenset(
        {
            "CallStarted",
            "CallEnded",
            "CallerAudioCommitted",
            "CallerSaid",
            "CallerTranscriptionFailed",
            "ResponseItemAdded",
            "AssistantSaid",
            "TranscriptDelta",
            "ResponseFinished",
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
    clear_only = frozenset({"AssistantAudioSent"})
    """Folded for its time, item and response: its audio is never read."""

    def __init__(self) -> None:
        self._last_at: dict[str, str] = {}
        """The time of each call's last event folded in this page: written once at the page's end
        (:meth:`page_done`), not once per event (a tenth of a rebuild's time)."""
        self._texts_changed: dict[tuple[str, str], None] = {}
        """(call, item) of each message whose text a fold in this page may have changed: re-indexed
        once at the page's end from the row as it then is (so an event the runner rolled back for its
        error leaves the index as the row is)."""

    def page_started(self) -> None:
        self._last_at = {}
        self._texts_changed = {}

    def page_done(self, db: sqlite3.Connection) -> None:
        db.executemany(_LAST_EVENT_AT, [(at, call_id, at) for call_id, at in self._last_at.items()])
        db.executemany(UNINDEX_ITEM, self._texts_changed)
        db.executemany(INDEX_ITEM, self._texts_changed)
        self._last_at = {}
        self._texts_changed = {}

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        event = recorded.event
        call_id, at = event.call_id, iso(event.at)
        last = self._last_at.get(call_id)
        if last is None:  # the call's first event in this page
            db.execute("INSERT OR IGNORE INTO conversations(call_id) VALUES (?)", (call_id,))
        self._fold(db, event, call_id, at)
        if last is None or last < at:  # once folded: an event the runner skips for its error leaves no trace
            self._last_at[call_id] = at
        if isinstance(event, _TEXT_CHANGES) and event.item_id:
            self._texts_changed[(call_id, event.item_id)] = None

    def _fold(self, db: sqlite3.Connection, event: Any, call_id: str, at: str) -> None:
        said = _SAID.get(type(event))
        if said is not None:
            said(db, event, at)
        elif isinstance(event, CallStarted):
            call_started(db, event, at)
        elif isinstance(event, CallEnded):
            call_ended(db, event, at)
        elif type(event).__name__ in OUTCOME_TOPICS:
            apply_outcome(db, event)
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


def _caller_committed(db: sqlite3.Connection, e: CallerAudioCommitted, at: str) -> None:
    if e.item_id:
        _ensure_item(db, e.call_id, e.item_id, "message", "user", at)


def _caller_said(db: sqlite3.Connection, e: CallerSaid, at: str) -> None:
    if e.item_id:
        _ensure_item(db, e.call_id, e.item_id, "message", "user", at)
        db.execute(
            "UPDATE conversation_items SET text=?, status='completed' WHERE call_id=? AND item_id=?",
            (e.text, e.call_id, e.item_id),
        )


def _caller_not_transcribed(db: sqlite3.Connection, e: CallerTranscriptionFailed, at: str) -> None:
    if e.item_id:
        _ensure_item(db, e.call_id, e.item_id, "message", "user", at)
        db.execute(
            "UPDATE conversation_items SET status='failed' WHERE call_id=? AND item_id=? AND status='in_progress'",
            (e.call_id, e.item_id),
        )


def _transcript_delta(db: sqlite3.Connection, e: TranscriptDelta, at: str) -> None:
    """The words of an item so far, until its transcript is done (or for good, when it never was)."""
    if not e.item_id or not e.delta:
        return
    grown = db.execute(_APPEND_TEXT, (e.delta, e.call_id, e.item_id))
    if not grown.rowcount:  # the item's first words (or words of an item already ended: nothing)
        _ensure_item(db, e.call_id, e.item_id, "message", e.role, at, e.response_id or None)
        db.execute(_APPEND_TEXT, (e.delta, e.call_id, e.item_id))


# --- the assistant ---------------------------------------------------------------------------------


def _item_added(db: sqlite3.Connection, e: ResponseItemAdded, at: str) -> None:
    if e.item_type == "message":
        _ensure_item(db, e.call_id, e.item_id, "message", e.role or "assistant", at, e.response_id)
    elif e.item_type == "function_call":
        _ensure_item(db, e.call_id, e.item_id, "function_call", None, at, e.response_id)
        db.execute(
            "UPDATE conversation_items SET name=coalesce(?, name), tool_call_id=coalesce(?, tool_call_id) "
            "WHERE call_id=? AND item_id=?",
            (e.name or None, e.tool_call_id or None, e.call_id, e.item_id),
        )


def _assistant_said(db: sqlite3.Connection, e: AssistantSaid, at: str) -> None:
    if e.item_id:
        _ensure_item(db, e.call_id, e.item_id, "message", "assistant", at, e.response_id)
        db.execute(
            "UPDATE conversation_items SET text=?, "
            "status=CASE WHEN status='in_progress' THEN 'completed' ELSE status END "
            "WHERE call_id=? AND item_id=?",
            (e.text, e.call_id, e.item_id),
        )


def _barge_in(db: sqlite3.Connection, e: BargeInDecided, at: str) -> None:
    if e.action == "truncated" and e.item_id:
        db.execute(
            "UPDATE conversation_items SET status='truncated', truncated_at_ms=? WHERE call_id=? AND item_id=?",
            (e.audio_end_ms, e.call_id, e.item_id),
        )


def _response_finished(db: sqlite3.Connection, e: ResponseFinished, at: str) -> None:
    """The response's items still open end with it: ``completed``, or ``incomplete`` when it was
    cancelled, failed or cut short (the model ends each such item ``incomplete``)."""
    if not e.response_id:
        return
    status = "completed" if e.status in ("completed", "") else "incomplete"
    db.execute(
        "UPDATE conversation_items SET status=? WHERE call_id=? AND response_id=? AND status='in_progress'",
        (status, e.call_id, e.response_id),
    )


# --- tools -----------------------------------------------------------------------------------------


def _tool_requested(db: sqlite3.Connection, event: ToolCallRequested, at: str) -> None:
    """The function call item (added by its response, or here for a log without that fact)."""
    found = db.execute(
        "SELECT item_id FROM conversation_items WHERE call_id=? AND tool_call_id=? AND type='function_call'",
        (event.call_id, event.tool_call_id),
    ).fetchone()
    item_id = found[0] if found is not None else (event.item_id or event.tool_call_id)
    _ensure_item(db, event.call_id, item_id, "function_call", None, at, event.response_id or None)
    db.execute(
        "UPDATE conversation_items SET name=?, tool_call_id=?, arguments=?, status='completed' "
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


_SAID: dict[type, Handler] = {
    CallerAudioCommitted: _caller_committed,
    CallerSaid: _caller_said,
    CallerTranscriptionFailed: _caller_not_transcribed,
    TranscriptDelta: _transcript_delta,
    ResponseItemAdded: _item_added,
    AssistantSaid: _assistant_said,
    BargeInDecided: _barge_in,
    ResponseFinished: _response_finished,
    ToolCallRequested: _tool_requested,
    ToolCallCompleted: _tool_answered,
    ToolCallFailed: _tool_answered,
}
"""What was said, and how each turn ended: one fold per fact."""
