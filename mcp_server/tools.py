"""The MCP tools: conversations, full-text search, a call's raw events and timeline, and metrics.

Every tool only reads (``read_only_hint``; there are no write tools at all). Parameters are
validated twice: their types by the SDK from the signatures, their values by the projections'
queries, whose :class:`~projections.views_db.QueryError` becomes a :class:`ToolError` that starts
with the parameter's name (``since: 'yesterday' is not an ISO 8601 time ...``), so the assistant
can correct itself. An unknown call id is a ``ToolError`` too, never an empty success.

Each result is the structured content (checked against the tool's output schema) plus ONE text
block. The MCP specification (2025-11-25, Tools, "Structured Content") says a tool returning
structured content SHOULD also return it serialized in a text block, for clients that read only
``content`` (several forward nothing else to the model), so the text is kept — as compact JSON,
not the SDK's indented copy (about 40 % smaller). The timeline's text is the timeline as
``callbridge replay`` prints it. Call events come a page at a time, without audio unless asked
(:mod:`projections.event_pages`), so no answer carries a whole long call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar, cast

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import Field, TypeAdapter

from callbridge.engine.events import Event
from callbridge.mcp_server.data import CallData, ViewsQuery
from callbridge.mcp_server.schemas import (
    CallEvents,
    CallMetrics,
    CallTimeline,
    Conversation,
    ConversationList,
    MetricsResult,
    MetricsSummary,
    SearchResults,
)
from callbridge.projections import conversations_query, metrics_query
from callbridge.projections.event_pages import DEFAULT_LIMIT, MAX_LIMIT, read_event_page
from callbridge.projections.timeline import build_timeline, clock, render_text
from callbridge.projections.views_db import QueryError, check_limit

T = TypeVar("T")

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
MAX_EVENTS = MAX_LIMIT

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


_json = msgspec.json.Encoder()


_adapters: dict[object, TypeAdapter[Any]] = {}


def _adapter(shape: type[Any]) -> TypeAdapter[Any]:
    adapter = _adapters.get(shape)
    if adapter is None:
        adapter = _adapters[shape] = TypeAdapter(shape)
    return adapter


def tool_result(shape: type[Any], value: Mapping[str, Any], text: str | None = None) -> CallToolResult:
    """``value`` as the tool's structured content (validated against ``shape``, keys it does not
    declare dropped) and one text block: ``text``, or the structured content as compact JSON."""
    adapter = _adapter(shape)
    structured = adapter.dump_python(adapter.validate_python(value), mode="json")
    block = TextContent(type="text", text=_json.encode(structured).decode() if text is None else text)
    return CallToolResult(content=[block], structured_content=structured)


def check_event_types(types: list[str] | None) -> frozenset[str] | None:
    """The requested event type names, or a ``ToolError`` naming the unknown ones."""
    if types is None:
        return None
    unknown = sorted(set(types) - set(Event.registry))
    if unknown:
        known = ", ".join(sorted(Event.registry))
        raise ToolError(f"types: unknown event type(s) {', '.join(map(repr, unknown))}; known types: {known}")
    return frozenset(types)


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
    ) -> Annotated[CallToolResult, ConversationList]:
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
        return tool_result(ConversationList, {"conversations": found})

    async def get_conversation(call_id: CallIdParam) -> Annotated[CallToolResult, Conversation]:
        """One call with its full transcript: the caller's and the assistant's messages, and the tool
        calls the assistant made with their arguments and outputs, in conversation order."""
        found = await query_views(data, lambda db: conversations_query.get_conversation(db, call_id))
        if found is None:
            raise unknown_call(call_id)
        return tool_result(Conversation, found)

    async def search_conversations(
        query: Annotated[str, Field(description="Words to find in transcripts; a trailing * matches a prefix")],
        limit: Annotated[int, Field(description="At most this many calls (1-1000)")] = 20,
    ) -> Annotated[CallToolResult, SearchResults]:
        """Full-text search over every call's transcripts: calls in which all the words occur, best
        match first, each with up to five matching snippets (matched words in **)."""
        if conversations_query.fts_query(query) is None:
            raise ToolError("query: give at least one word to search for")
        found = await query_views(data, lambda db: conversations_query.search_conversations(db, query, limit))
        return tool_result(SearchResults, {"query": query, "results": found})

    async def get_call_events(
        call_id: CallIdParam,
        types: Annotated[
            list[str] | None,
            Field(description="Only events of these types, e.g. ['CallStarted', 'ToolCallRequested', 'CallEnded']"),
        ] = None,
        include_audio: Annotated[
            bool, Field(description="Include audio payloads (base64); otherwise only their size")
        ] = False,
        after: Annotated[
            int, Field(description="Only events after this log position: 0 from the start, else next_after")
        ] = 0,
        limit: Annotated[int, Field(description=f"At most this many events (1-{MAX_EVENTS})")] = DEFAULT_LIMIT,
    ) -> Annotated[CallToolResult, CallEvents]:
        """The raw event log of one call, in order, a page at a time: everything the engine recorded
        (Twilio frames, model events sent and received, barge-in decisions, tool calls, the end of
        the call), each with its log position, type, time and data. When ``next_after`` is not null,
        more events follow: ask again with ``after`` = ``next_after``. For a readable overview of a
        call use get_call_timeline."""
        wanted = check_event_types(types)
        try:
            count = check_limit(limit, maximum=MAX_EVENTS)
        except QueryError as error:
            raise ToolError(str(error)) from None
        if after < 0:
            raise ToolError("after: must be a log position (0 for the start)")
        page = await data.from_store(
            lambda store: read_event_page(
                store, call_id, after=after, limit=count, include_audio=include_audio, types=wanted
            )
        )
        if page is None:
            raise unknown_call(call_id)
        result = {"call_id": call_id, "events": page.records, "more": page.next_after is not None}
        return tool_result(CallEvents, {**result, "next_after": page.next_after})

    async def get_call_timeline(call_id: CallIdParam) -> Annotated[CallToolResult, CallTimeline]:
        """One call as a readable timeline (what ``callbridge replay`` prints): who spoke when with
        the transcripts, tool calls and results, barge-ins with what the caller really heard, model
        reconnects and errors, and how the call ended; times are from the start of the call."""
        recorded = await data.from_store(lambda store: store.read_call(call_id))
        if not recorded:
            raise unknown_call(call_id)
        entries = build_timeline([r.event for r in recorded])
        lines = [{"t_ms": e.t_ms, "clock": clock(e.t_ms), "kind": e.kind, "summary": e.summary} for e in entries]
        return tool_result(CallTimeline, {"call_id": call_id, "entries": lines}, render_text(entries, color=False))

    async def get_call_metrics(
        call_id: Annotated[str | None, Field(description="One call's metrics (omit for a period)")] = None,
        since: TimeParam = None,
        until: TimeParam = None,
    ) -> Annotated[CallToolResult, MetricsResult]:
        """Latency, barge-ins and truncations, model reconnects, tool calls, tokens and estimated cost:
        of one call (``call_id``, with each turn and tool call), or totals over the calls started in
        [since, until) (all calls when neither is given)."""
        if call_id is not None:
            if since is not None or until is not None:
                raise ToolError("call_id: give either call_id or since/until, not both")
            found = await query_views(data, lambda db: metrics_query.get_call_metrics(db, call_id))
            if found is None:
                raise unknown_call(call_id)
            return tool_result(MetricsResult, {"call": cast(CallMetrics, found), "period": None})
        summary = await query_views(data, lambda db: metrics_query.metrics_summary(db, since, until))
        return tool_result(MetricsResult, {"call": None, "period": cast(MetricsSummary, summary)})

    for fn in (
        list_conversations,
        get_conversation,
        search_conversations,
        get_call_events,
        get_call_timeline,
        get_call_metrics,
    ):
        tool(fn)
