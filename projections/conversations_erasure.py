"""What the conversations view does at ``CallErased``: everything the call said, typed or was called from
reads ``[erased]`` (empty stays empty: what the erased events' placeholders fold into, so a rebuild gives
the same rows), the call is listed in ``erased_calls``, its messages are indexed anew with that text,
and the search index is rewritten (FTS5 ``optimize`` merges away deleted entries, whose tokens would
otherwise stay in the file)."""

from __future__ import annotations

import sqlite3

from callbridge.projections.conversations_index import INDEX_CALL, UNINDEX_CALL
from callbridge.projections.views_db import erased_text

ERASED_CALLS = "CREATE TABLE IF NOT EXISTS erased_calls (call_id TEXT PRIMARY KEY, erased_at TEXT NOT NULL)"


def call_erased(db: sqlite3.Connection, call_id: str, at: str) -> None:
    db.execute(
        f"UPDATE conversation_items SET text={erased_text('text')}, arguments={erased_text('arguments')}, "
        f"output={erased_text('output')} WHERE call_id=?",
        (call_id,),
    )
    db.execute(UNINDEX_CALL, (call_id,))  # now, not at the page's end: before the index is rewritten
    db.execute(INDEX_CALL, (call_id,))
    db.execute(
        f"UPDATE conversations SET caller_number={erased_text('caller_number')}, "
        f"phone_number={erased_text('phone_number')} WHERE call_id=?",
        (call_id,),
    )
    db.execute("INSERT OR IGNORE INTO erased_calls(call_id, erased_at) VALUES (?, ?)", (call_id, at))
    db.execute("INSERT INTO conversation_items_fts(conversation_items_fts) VALUES ('optimize')")
