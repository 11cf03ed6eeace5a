"""Reading the conversations view: the queries behind ``/api/conversations`` and the MCP tools.

Every function takes a connection from :func:`projections.views_db.open_views`, blocks (call it in a
thread), validates its parameters (raising :class:`projections.views_db.QueryError` naming the bad
one) and returns plain JSON-ready dicts. Times are ISO 8601 UTC text (``2026-01-01T00:00:00.000Z``);
``since`` is inclusive, ``until`` exclusive, both on ``started_at``.

Full-text queries come from people: :func:`fts_query` turns any text into a safe FTS5 query (every
word quoted, all words required, a trailing ``*`` kept as a prefix match), so a stray quote or
``AND`` is never an FTS syntax error.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from callbridge.projections.views_db import QueryError, check_limit, parse_time, rows_as_dicts

CONVERSATION_FIELDS = (
    "call_id",
    "stream_sid",
    "phone_number",
    "caller_number",
    "started_at",
    "ended_at",
    "duration_seconds",
    "message_count",
    "status",
    "end_reason",
    "last_event_at",
    "model",
    "direction",
    "outcome",
    "transfer_target",
    "twilio_status",
    "erased_at",
)
"""A conversation summary: the contract's fields (docs/contract.md), then ours. ``erased_at``: when the
call was erased (``callbridge erase``; its texts then read ``[erased]``), else null."""

ITEM_FIELDS = (
    "item_id",
    "type",
    "role",
    "text",
    "status",
    "created_at",
    "call_id",
    "name",
    "arguments",
    "output",
    "tool_call_id",
    "response_id",
    "truncated_at_ms",
    "position",
)
"""A conversation item: the contract's fields (docs/contract.md), then ours."""

MAX_TERMS = 32
MATCHES_PER_CONVERSATION = 5
_COLUMNS = {"erased_at": "(SELECT e.erased_at FROM erased_calls e WHERE e.call_id = c.call_id) AS erased_at"}
_SELECT_CONVERSATION = (
    "SELECT " + ", ".join(_COLUMNS.get(name, f"c.{name}") for name in CONVERSATION_FIELDS) + " FROM conversations c"
)
_TERM = re.compile(r"(\w+)(\*?)")


def fts_query(text: str) -> str | None:
    """A safe FTS5 query matching items containing every word of ``text`` (None when it has no word)."""
    terms = [f'"{word}"' + ("*" if star else "") for word, star in _TERM.findall(text)]
    return " ".join(terms[:MAX_TERMS]) or None


def list_conversations(
    db: sqlite3.Connection,
    *,
    limit: int = 50,
    phone_number: str | None = None,
    caller_number: str | None = None,
    since: str | float | None = None,
    until: str | float | None = None,
    q: str | None = None,
) -> list[dict[str, Any]]:
    """Conversation summaries, newest first, filtered by the called number (``phone_number``), the
    caller (``caller_number``), start time, and transcript words (``q``; each result then carries
    ``matches``, the snippets that matched, as :func:`search_conversations`)."""
    count = check_limit(limit)
    clauses: list[str] = []
    params: list[Any] = []
    if phone_number:
        clauses.append("c.phone_number = ?")
        params.append(phone_number)
    if caller_number:
        clauses.append("c.caller_number = ?")
        params.append(caller_number)
    start, end = parse_time(since, "since"), parse_time(until, "until")
    if start is not None:
        clauses.append("c.started_at >= ?")
        params.append(start)
    if end is not None:
        clauses.append("c.started_at < ?")
        params.append(end)
    if q is not None and q.strip():
        match = fts_query(q)
        if match is None:
            return []
        clauses.append("c.call_id IN (SELECT call_id FROM conversation_items_fts WHERE conversation_items_fts MATCH ?)")
        params.append(match)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    cursor = db.execute(
        f"{_SELECT_CONVERSATION}{where} ORDER BY c.started_at DESC, c.call_id DESC LIMIT ?", [*params, count]
    )
    rows = rows_as_dicts(cursor)
    if q is not None and q.strip() and rows:  # say why each call matched
        found = _matches(db, params[-1], [row["call_id"] for row in rows])
        rows = [{**row, "matches": found[row["call_id"]]} for row in rows]
    return rows


def _matches(db: sqlite3.Connection, match: str, call_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Up to five ``{item_id, role, created_at, snippet}`` per call (FTS5 ``snippet()``, matched
    words in ``**``), best first."""
    marks = ", ".join("?" * len(call_ids))
    snippets = db.execute(
        "SELECT f.call_id, f.item_id, i.role, i.created_at, "
        "snippet(conversation_items_fts, 0, '**', '**', '…', 12) "
        "FROM conversation_items_fts f JOIN conversation_items i ON i.rowid = f.rowid "
        f"WHERE conversation_items_fts MATCH ? AND f.call_id IN ({marks}) ORDER BY f.rank, i.position",
        [match, *call_ids],
    ).fetchall()
    matches: dict[str, list[dict[str, Any]]] = {call_id: [] for call_id in call_ids}
    for call_id, item_id, role, created_at, snippet in snippets:
        found = matches[call_id]
        if len(found) < MATCHES_PER_CONVERSATION:
            found.append({"item_id": item_id, "role": role, "created_at": created_at, "snippet": snippet})
    return matches


def get_conversation(db: sqlite3.Connection, call_id: str) -> dict[str, Any] | None:
    """One conversation with its ``items`` in conversation order, or None when the call is unknown."""
    if not isinstance(call_id, str) or not call_id:
        raise QueryError("call_id", "must be a non-empty string")
    found = rows_as_dicts(db.execute(f"{_SELECT_CONVERSATION} WHERE c.call_id = ?", (call_id,)))
    if not found:
        return None
    conversation = found[0]
    conversation["items"] = rows_as_dicts(
        db.execute(
            f"SELECT {', '.join(ITEM_FIELDS)} FROM conversation_items WHERE call_id = ? ORDER BY position",
            (call_id,),
        )
    )
    return conversation


def search_conversations(db: sqlite3.Connection, query: str, limit: int = 20) -> list[dict[str, Any]]:
    """Conversations whose transcripts contain every word of ``query``, best match first, each with
    ``matches``: up to five ``{item_id, role, created_at, snippet}`` (matched words in ``**``)."""
    if not isinstance(query, str):
        raise QueryError("query", "must be text")
    count = check_limit(limit)
    match = fts_query(query)
    if match is None:
        return []
    ranked = db.execute(
        "SELECT call_id, min(rank) AS best FROM conversation_items_fts WHERE conversation_items_fts MATCH ? "
        "GROUP BY call_id ORDER BY best, call_id LIMIT ?",
        (match, count),
    ).fetchall()
    if not ranked:
        return []
    call_ids = [row[0] for row in ranked]
    marks = ", ".join("?" * len(call_ids))
    summaries = {
        row["call_id"]: row
        for row in rows_as_dicts(db.execute(f"{_SELECT_CONVERSATION} WHERE c.call_id IN ({marks})", call_ids))
    }
    matches = _matches(db, match, call_ids)
    results = []
    for call_id in call_ids:
        summary = summaries.get(call_id) or {"call_id": call_id}
        results.append({**summary, "matches": matches[call_id]})
    return results
