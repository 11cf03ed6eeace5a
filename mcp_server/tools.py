"""The MCP tools: conversations, full-text search, a call's raw events, and metrics.

Every tool only reads (``read_only_hint``; there are no write tools at all). Parameters are
validated twice: their types by the SDK from the signatures, their values by the projections'
queries, whose :class:`~projections.views_db.QueryError` becomes a :class:`ToolError` that starts
with the parameter's name (``since: 'yesterday' is not an ISO 8601 time ...``), so the assistant
can correct itself. An unknown call id is a ``ToolError`` too, never an empty success.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from callbridge.engine.events import Event
from callbridge.engine.store import RecordedEvent
from callbridge.mcp_server.data import CallData, ViewsQuery
from callbridge.mcp_server.schemas import (
    CallEvent,
    CallEvents,
    CallMetrics,
    Conversation,
    ConversationList,
    MetricsResult,
    MetricsSummary,
    SearchResults,
)
from callbridge.projections import conversations_query, metrics_query
from callbridge.projections.timeline import event_record
from callbridge.projections.views_db import QueryError, check_limit

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MAX_EVENTS = 10_000

TimeParam = Annotated[
    str | float | None,
    Field(description="ISO 8601 time (2026-01-01, 2026-01-01T09:30:00Z; no zone means UTC) or Unix seconds"),
]
CallIdParam = Annotated[str, Field(description="The call's id: its Twilio CallSid (CA...)")]


def unknown_call(call_id: str) -> ToolError:
    return ToolError(f"call_id: unknown call {call_id!r} (list_conversations shows the known ones)")


async def query_views(data: CallData, query: ViewsQuery[T]) -> T:
    """Run a views query; a bad parameter becomes a ``ToolError`` naming it."""
    try:
        return await data.views(query)
    except QueryError as error:
        raise ToolError(str(error)) from None


def _without_audio(recorded: RecordedEvent, record: dict[str, Any]) -> dict[str, Any]:
    """Replace bytes fields (audio) by ``{"omitted_bytes": N}``: base64 audio is no use to a model."""
    data = record["data"]
    for name in msgspec.structs.fields(type(recorded.event)):
        value = getattr(recorded.event, name.name)
        if isinstance(value, bytes | bytearray):
            data[name.name] = {"omitted_bytes": len(value)}
    return record


def check_event_types(types: list[str] | None) -> frozenset[str] | None:
    """The requested event type names, or a ``ToolError`` naming the unknown ones."""
    if types is None:
        return None
    unknown = sorted(set(types) - set(Event.registry))
    if unknown:
        known = ", ".join(sorted(Event.registry))
        raise ToolError(f"types: unknown event type(s) {', '.join(map(repr, unknown))}; known types: {known}")
    return frozenset(types)


def select_events(
    recorded: list[RecordedEvent],
    *,
    types: frozenset[str] | None,
    include_audio: bool,
    after_position: int,
    limit: int,
) -> tuple[list[CallEvent], bool]:
    """The events to return, in order, and whether ``limit`` cut the list."""
    chosen = [r for r in recorded if r.position > after_position and (types is None or type(r.event).__name__ in types)]
    more = len(chosen) > limit
    records: list[CallEvent] = []
    for r in chosen[:limit]:
        record = event_record(r)
        records.append(record if include_audio else _without_audio(r, record))  # type: ignore[arg-type]
    return records, more


def register_tools(mcp: MCPServer, data: CallData) -> None:
    """Add the tools to ``mcp``; they answer from ``data``."""

    def tool(fn: Callable[..., Any]) -> None:
        mcp.add_tool(fn, annotations=READ_ONLY)

    async def list_conversations(
        phone_number: Annotated[str | None, Field(description="Only calls to this number (E.164, +1555...)")] = None,
        caller_number: Annotated[str | None, Field(description="Only calls from this number (E.164)")] = None,
        since: TimeParam = None,
        until: TimeParam = None,
        limit: Annotated[int, Field(description="At most this many calls (1-1000)")] = 50,
    ) -> ConversationList:
        """List phone calls (conversations), newest first: who called which number, when, for how long,
        how many messages were exchanged and whether the call is still in progress. ``since`` is
        inclusive and ``until`` exclusive, both on the start time."""
        found = await query_views(
            data,
            lambda db: conversations_query.list_conversations(
                db,
                limit=limit,
                phone_number=phone_number or None,
                caller_number=caller_number or None,
                since=since,
                until=until,
            ),
        )
        return {"conversations": found}  # type: ignore[typeddict-item]

    async def get_conversation(call_id: CallIdParam) -> Conversation:
        """One call with its full transcript: the caller's and the assistant's messages, and the tool
        calls the assistant made with their arguments and outputs, in conversation order."""
        found = await query_views(data, lambda db: conversations_query.get_conversation(db, call_id))
        if found is None:
            raise unknown_call(call_id)
        return found  # type: ignore[return-value]

    async def search_conversations(
        query: Annotated[str, Field(description="Words to find in transcripts; a trailing * matches a prefix")],
        limit: Annotated[int, Field(description="At most this many calls (1-1000)")] = 20,
    ) -> SearchResults:
        """Full-text search over every call's transcripts: calls in which all the words occur, best
        match first, each with up to five matching snippets (matched words in **)."""
        if conversations_query.fts_query(query) is None:
            raise ToolError("query: give at least one word to search for")
        found = await query_views(data, lambda db: conversations_query.search_conversations(db, query, limit))
        return {"query": query, "results": found}  # type: ignore[typeddict-item]

    async def get_call_events(
        call_id: CallIdParam,
        types: Annotated[
            list[str] | None,
            Field(description="Only events of these types, e.g. ['CallStarted', 'ToolCallRequested', 'CallEnded']"),
        ] = None,
        include_audio: Annotated[
            bool, Field(description="Include audio payloads (base64); otherwise only their size")
        ] = False,
        after_position: Annotated[int, Field(description="Only events after this log position (paging)")] = 0,
        limit: Annotated[int, Field(description=f"At most this many events (1-{MAX_EVENTS})")] = 1000,
    ) -> CallEvents:
        """The raw event log of one call, in order: everything the engine recorded (Twilio frames,
        model events sent and received, barge-in decisions, tool calls, the end of the call), each
        with its log position, type, time and data."""
        wanted = check_event_types(types)
        try:
            count = check_limit(limit, maximum=MAX_EVENTS)
        except QueryError as error:
            raise ToolError(str(error)) from None
        recorded = await data.call_events(call_id)
        if not recorded:
            raise unknown_call(call_id)
        events, more = select_events(
            recorded, types=wanted, include_audio=include_audio, after_position=after_position, limit=count
        )
        return {"call_id": call_id, "events": events, "more": more}

    async def get_call_metrics(
        call_id: Annotated[str | None, Field(description="One call's metrics (omit for a period)")] = None,
        since: TimeParam = None,
        until: TimeParam = None,
    ) -> MetricsResult:
        """Latency, barge-ins and truncations, model reconnects, tool calls, tokens and estimated cost:
        of one call (``call_id``, with each turn and tool call), or totals over the calls started in
        [since, until) (all calls when neither is given)."""
        if call_id is not None:
            if since is not None or until is not None:
                raise ToolError("call_id: give either call_id or since/until, not both")
            found = await query_views(data, lambda db: metrics_query.get_call_metrics(db, call_id))
            if found is None:
                raise unknown_call(call_id)
            return {"call": cast(CallMetrics, found), "period": None}
        summary = await query_views(data, lambda db: metrics_query.metrics_summary(db, since, until))
        return {"call": None, "period": cast(MetricsSummary, summary)}

    for fn in (list_conversations, get_conversation, search_conversations, get_call_events, get_call_metrics):
        tool(fn)
