"""The shapes of the MCP tools' structured results.

Why TypedDicts: the SDK derives each tool's ``output_schema`` from its return annotation and
validates the returned dict against it, so these types are the published contract of the tools
(clients see them in ``tools/list``) and a query that drifts from them fails loudly in tests
rather than sending clients something else. ``typing_extensions.TypedDict`` because pydantic
refuses ``typing.TypedDict`` before Python 3.12. Keys not declared here are dropped by the
validation, so every field the views return must be listed.

Times are ISO 8601 UTC text (``2026-01-01T00:00:00.000Z``), as in the HTTP API.
"""

from __future__ import annotations

from typing import Any

from typing_extensions import TypedDict

# --- conversations --------------------------------------------------------------------------------


class ConversationSummary(TypedDict):
    """One call as the conversations view knows it (the contract's fields (docs/contract.md), then ours)."""

    call_id: str
    stream_sid: str | None
    phone_number: str | None
    """The number that was called (Twilio ``To``)."""
    caller_number: str | None
    """Who called (Twilio ``From``)."""
    started_at: str | None
    ended_at: str | None
    """None while the call is in progress."""
    duration_seconds: float | None
    message_count: int
    status: str
    """``in_progress``, ``completed`` or ``failed``."""
    end_reason: str | None
    last_event_at: str | None
    model: str | None
    direction: str
    """``inbound``, or ``outbound`` (placed through ``POST /api/calls``)."""
    outcome: str | None
    """How the call ended: ``hung_up_by_agent``, ``hung_up_by_operator``, ``hung_up_silence``,
    ``hung_up_max_duration``, ``voicemail_left``, ``transferred`` (see ``transfer_target``), ``busy``,
    ``no-answer``, ``failed``, ``canceled``, or the end reason (``caller_hangup``, …)."""
    transfer_target: str | None
    twilio_status: str | None
    """Twilio's last reported call status (``ringing``, ``in-progress``, ``completed``, ``busy``, …)."""
    erased_at: str | None
    """When the call was erased (its texts then read ``[erased]``), else None."""


class ConversationItem(TypedDict):
    """One item of a conversation: a message, a function call or a function call's output."""

    item_id: str
    type: str
    """``message``, ``function_call`` or ``function_call_output``."""
    role: str | None
    """``user`` (the caller) or ``assistant`` for messages."""
    text: str | None
    """The transcript of a message."""
    status: str
    created_at: str
    call_id: str
    name: str | None
    """The function's name (function calls)."""
    arguments: str | None
    """The function's JSON arguments (function calls)."""
    output: str | None
    """The function's output (function call outputs)."""
    tool_call_id: str | None
    response_id: str | None
    truncated_at_ms: int | None
    """Where the caller barged in: the assistant's audio was cut after this many ms."""
    position: int


class Conversation(ConversationSummary):
    """A conversation with its items in conversation order."""

    items: list[ConversationItem]


class ConversationList(TypedDict):
    conversations: list[ConversationSummary]
    """Newest first."""


class SearchMatch(TypedDict):
    item_id: str
    role: str | None
    created_at: str
    snippet: str
    """The matching text with the matched words in ``**``."""


class SearchHit(ConversationSummary):
    matches: list[SearchMatch]
    """Up to five matching items, best first."""


class SearchResults(TypedDict):
    query: str
    results: list[SearchHit]
    """Best match first."""


# --- events ---------------------------------------------------------------------------------------


class CallEvent(TypedDict):
    """One stored event, as ``GET /api/calls/{call_id}/events`` shows it."""

    position: int
    """Global position in the event log."""
    type: str
    """The event class name (``CallStarted``, ``ModelEventReceived``, ...)."""
    at: str
    data: dict[str, Any]


class CallEvents(TypedDict):
    call_id: str
    events: list[CallEvent]
    more: bool
    """True when more events follow this page."""
    next_after: int | None
    """Ask again with ``after`` = this for the next page; None on the last page."""


class TimelineLine(TypedDict):
    """One line of ``callbridge replay``'s timeline."""

    t_ms: int
    """Milliseconds since the call started."""
    clock: str
    """The same as ``+MM:SS.mmm``."""
    kind: str
    """``call``, ``caller``, ``assistant``, ``tool``, ``barge_in``, ``model``, ``error``, ``dtmf`` or ``twilio``."""
    summary: str


class CallTimeline(TypedDict):
    call_id: str
    entries: list[TimelineLine]


# --- metrics --------------------------------------------------------------------------------------


class Distribution(TypedDict):
    """Measurements in ms: nearest-rank percentiles (values that really occurred)."""

    count: int
    p50: float | None
    p95: float | None
    mean: float | None
    max: float | None


class TurnMetrics(TypedDict):
    turn: int
    response_id: str | None
    item_id: str | None
    created_at: str | None
    status: str
    response_latency_ms: float | None
    """End of the caller's speech to the first assistant audio sent."""
    first_audio_ms: float | None
    """``response.created`` to the response's first audio."""
    truncated: bool
    played_ms: int | None
    generated_ms: int | None
    tokens: dict[str, int]


class ToolMetrics(TypedDict):
    tool_call_id: str
    name: str
    requested_at: str | None
    handler: str | None
    outcome: str
    """``completed``, ``failed``, ``timed_out`` or ``pending``."""
    duration_ms: float | None
    error: str | None


class CallControl(TypedDict):
    """One call's call-control figures."""

    greeting_latency_ms: float | None
    """Call start to the greeting's first audio."""
    transfers: int
    transfers_refused: int
    transfer_target: str | None
    hung_up_by: str | None
    """Who asked for the end: ``model``, ``operator``, ``silence``, ``max_duration``, ``voicemail``."""
    answered_by: str | None
    """Answering-machine detection's result for an outbound call (``human``, ``machine_end_beep``, …)."""
    dtmf_received: int
    dtmf_sent: int
    silence_reprompts: int
    session_recycles: int


class CallControlSummary(TypedDict):
    greeting_latency_ms: Distribution
    transfers: int
    transfers_refused: int
    voicemails_left: int
    hang_ups_by: dict[str, int]
    dtmf_received: int
    dtmf_sent: int
    silence_reprompts: int
    session_recycles: int


class CallMetrics(TypedDict):
    """One call's numbers, turn by turn and tool by tool."""

    call_id: str
    started_at: str | None
    ended_at: str | None
    duration_seconds: float | None
    status: str
    end_reason: str | None
    model: str | None
    caller_turns: int
    responses: int
    barge_ins: int
    truncations: int
    truncated_played_ms: int
    truncated_generated_ms: int
    reconnects: int
    disconnects: int
    connection_failures: int
    reconnect_downtime_ms: float
    model_errors: int
    task_crashes: int
    tool_calls: int
    tool_failures: int
    tool_timeouts: int
    tool_ms_total: float
    tokens: dict[str, int]
    """Token counts by kind (disjoint: cached input is not in the plain input kinds)."""
    cost_usd: float
    """Estimated from the token counts and the price table in force."""
    turns: list[TurnMetrics]
    tools: list[ToolMetrics]
    response_latency_ms: Distribution
    first_audio_ms: Distribution
    call_control: CallControl


class CallCounts(TypedDict):
    total: int
    in_progress: int
    completed: int
    failed: int


class ToolCallCounts(TypedDict):
    total: int
    completed: int
    failed: int
    timed_out: int
    pending: int
    mean_ms: float | None


class MetricsSummary(TypedDict):
    """Totals over the calls started in ``[since, until)``."""

    since: str | None
    until: str | None
    calls: CallCounts
    responses: int
    response_latency_ms: Distribution
    first_audio_ms: Distribution
    barge_ins: int
    truncations: int
    truncated_played_ms: int
    truncated_generated_ms: int
    reconnects: int
    disconnects: int
    connection_failures: int
    model_errors: int
    tool_calls: ToolCallCounts
    tokens: dict[str, int]
    cost_usd: float
    call_control: CallControlSummary


class MetricsResult(TypedDict):
    """Exactly one of ``call`` (when a ``call_id`` was given) and ``period`` is set."""

    call: CallMetrics | None
    period: MetricsSummary | None
