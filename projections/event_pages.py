"""One call's stored events a page at a time, as ``GET /api/calls/{call_id}/events`` and the MCP
tool ``get_call_events`` show them.

Why pages: a call's log can be long (an hour is 7,200 half-second audio chunks each way), and
reading all of it at once cost one client 500 MB of server memory. A page is read from the store
by position (``EventStore.read_call_page``), so memory is bounded by the page, not the call.
Why audio is left out unless asked: base64 audio is most of a log's bytes and of no use to a
person or a model reading events; each ``bytes`` field becomes ``{"omitted_bytes": N}``.

``after`` is a log position (0 = from the start); the answer carries ``next_after``, the position
to ask with for the next page, or None on the last page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from callbridge.engine.store import EventStore, RecordedEvent
from callbridge.projections.event_json import event_record

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
_READ_BATCH = 2000
"""Events read from the store at a time while looking for a page (with a type filter)."""


@dataclass(frozen=True)
class EventPage:
    records: list[dict[str, Any]]
    """``{position, type, at, data}`` in log order."""
    next_after: int | None
    """Ask again with ``after`` = this for the next page; None when this page is the last."""


def without_audio(recorded: RecordedEvent, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with each ``bytes`` field of the event (audio) replaced by ``{"omitted_bytes": N}``."""
    data = record["data"]
    for field in msgspec.structs.fields(type(recorded.event)):
        value = getattr(recorded.event, field.name)
        if isinstance(value, bytes | bytearray):
            data[field.name] = {"omitted_bytes": len(value)}
    return record


def read_event_page(
    store: EventStore,
    call_id: str,
    *,
    after: int = 0,
    limit: int = DEFAULT_LIMIT,
    include_audio: bool = False,
    types: frozenset[str] | None = None,
) -> EventPage | None:
    """Up to ``limit`` events of ``call_id`` after position ``after`` (only ``types``, when given);
    None when the store has no event of that call at all. Blocking: run it in a worker thread."""
    records: list[dict[str, Any]] = []
    cursor = after
    while True:
        batch = store.read_call_page(call_id, after=cursor, limit=min(limit + 1, _READ_BATCH))
        for recorded in batch:
            if types is not None and type(recorded.event).__name__ not in types:
                continue
            if len(records) == limit:  # one more exists: this page is full
                return EventPage(records, next_after=records[-1]["position"])
            record = event_record(recorded)
            records.append(record if include_audio else without_audio(recorded, record))
        if len(batch) < min(limit + 1, _READ_BATCH):
            break
        cursor = batch[-1].position
    if not records and not store.read_call_page(call_id, limit=1):
        return None
    return EventPage(records, next_after=None)
