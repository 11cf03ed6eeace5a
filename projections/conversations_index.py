"""The conversations' search index (FTS5 over message text): which rows it holds, and the statements that
index them anew from the rows as they are.

Why apart: the view re-indexes the messages whose text changed once per page (``conversations.py``
``page_done``) and an erased call's at once (``conversations_erasure.py``); both take their statements
from :func:`_reindexing`, so the rule for what is indexed is written once. A deletion by rowid needs
no row text: FTS5 keeps its own copy of what it indexed.
"""

from __future__ import annotations


def _reindexing(rows: str) -> tuple[str, str]:
    """(unindex, index) statements for the items matching the SQL condition ``rows``."""
    return (
        f"DELETE FROM conversation_items_fts WHERE rowid IN (SELECT rowid FROM conversation_items WHERE {rows})",
        "INSERT INTO conversation_items_fts(rowid, text, call_id, item_id) SELECT rowid, text, call_id, item_id "
        f"FROM conversation_items WHERE {rows} AND type = 'message' AND coalesce(text, '') != ''",
    )


UNINDEX_ITEM, INDEX_ITEM = _reindexing("call_id = ? AND item_id = ?")
"""One item, by (call, item)."""
UNINDEX_CALL, INDEX_CALL = _reindexing("call_id = ?")
"""Every item of a call."""
