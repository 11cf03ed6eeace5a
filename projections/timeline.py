"""The replayable timeline: what happened in one call, in order, in words.

A fold over the call's events (never the live state), so replaying a log gives the same lines
every time: times are relative to ``CallStarted.at``, nothing reads a clock, ties keep the log's
order. One entry per thing a person debugging a call asks about — who spoke when and what was
said, how long the assistant took to answer, tool calls and their results, barge-ins with the
numbers the decision was made from, model drops and errors, odd Twilio frames, and how the call
ended (or that it was cut off). Audio chunks, mark echoes and client events are not entries:
they feed the numbers (latency, heard audio) instead. What was said is read from the engine's typed
facts (``CallerSaid``, ``AssistantSaid``, ``ResponseFinished``, …), never from the model's JSON; a
log recorded before those facts existed gets them from ``projections/legacy_facts.py``.

Transcripts and tool payloads are untrusted text: :func:`render_text` strips control characters
so nothing in a call can drive the reader's terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from callbridge.engine.events import (
    AgentRouted,
    AssistantAudioDiscarded,
    AssistantAudioPlayed,
    AssistantAudioSent,
    AssistantSaid,
    BargeInDecided,
    CallEnded,
    CallErased,
    CallerAudioCommitted,
    CallerAudioReceived,
    CallerSaid,
    CallerSpeechDetected,
    CallerTranscriptionFailed,
    CallSessionConfigChanged,
    CallStarted,
    CallStatusReported,
    DefaultSessionConfigSaved,
    DtmfReceived,
    Event,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelErrorReported,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
    PlaybackCleared,
    ResponseFinished,
    ResponseItemAdded,
    ResponseStarted,
    TaskCrashed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TranscriptDelta,
    TwilioEventIgnored,
    TwilioFrameRejected,
    TwilioSocketClosed,
)
from callbridge.projections.legacy_facts import expand_events
from callbridge.projections.recording import SAMPLES_PER_MS, assistant_playback, call_span, heard_bytes_by_item
from callbridge.projections.timeline_call_control import CALL_CONTROL_FACTS, never_connected, on_hold

KINDS = ("call", "caller", "assistant", "tool", "barge_in", "model", "error", "dtmf", "twilio", "control")
TEXT_LIMIT = 120
"""Longest transcript or payload quoted in a summary (``data`` keeps the whole text)."""

_SILENT = (
    AssistantAudioPlayed,
    CallerAudioReceived,
    ModelEventSent,
    DefaultSessionConfigSaved,
    ModelEventReceived,  # the model's JSON: its facts are what the timeline tells
    CallerAudioCommitted,
    ResponseStarted,
    ResponseItemAdded,
    TranscriptDelta,
    AssistantSaid,  # told with the reply's audio (gathered first)
)


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the timeline."""

    t_ms: int
    """Milliseconds since the call started."""
    kind: str
    """One of :data:`KINDS`."""
    summary: str
    data: dict[str, Any] = {}


def _clip(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(text: str) -> str:
    return '"' + _clip(text.strip()) + '"'


class _Reply(msgspec.Struct):
    """What the log says about one assistant response, gathered before the timeline is written."""

    item_id: str = ""
    transcript: str | None = None
    deltas: list[str] = []
    status: str = ""
    audio_bytes: int = 0
    discarded_bytes: int = 0

    @property
    def text(self) -> str | None:
        return self.transcript if self.transcript is not None else ("".join(self.deltas) or None)


def _gather_replies(events: Sequence[Event]) -> dict[str, _Reply]:
    """Per response id: transcript, final status and audio totals (looked up when the reply is
    first heard, which is before its transcript is complete)."""
    replies: dict[str, _Reply] = {}
    for event in events:
        if isinstance(event, AssistantAudioSent):
            reply = replies.setdefault(event.response_id, _Reply(item_id=event.item_id))
            reply.audio_bytes += len(event.payload)
        elif isinstance(event, AssistantAudioDiscarded):
            replies.setdefault(event.response_id, _Reply(item_id=event.item_id)).discarded_bytes += event.byte_count
        elif isinstance(event, ResponseFinished):
            replies.setdefault(event.response_id, _Reply()).status = event.status
        elif isinstance(event, AssistantSaid):
            reply = replies.setdefault(event.response_id, _Reply())
            reply.item_id = reply.item_id or event.item_id
            reply.transcript = event.text
        elif isinstance(event, TranscriptDelta) and event.role == "assistant":
            reply = replies.setdefault(event.response_id, _Reply())
            reply.item_id = reply.item_id or event.item_id
            reply.deltas.append(event.delta)
    return replies


def _barge_in_summary(e: BargeInDecided) -> str:
    if e.action == "truncated":
        return (
            f"caller interrupted: heard {e.played_ms} ms of {e.received_ms} ms received, "
            f"truncated at {e.audio_end_ms} ms"
        )
    if e.action == "skipped_fully_played":
        return f"caller spoke after the reply was fully played ({e.played_ms} ms): no truncate"
    if e.action == "skipped_nothing_playing":
        return "caller spoke while nothing was playing: no truncate"
    return f"barge-in {e.action}: heard {e.played_ms} ms of {e.received_ms} ms"


def _tool_failed(e: ToolCallFailed) -> str:
    how = "timed out" if e.timed_out else "failed"
    return f"{e.name} {how} after {e.duration_ms:.0f} ms: {_clip(e.error)}"


def _connection_failed(e: ModelConnectionFailed) -> str:
    then = "giving up" if e.retry_in_s is None else f"retrying in {e.retry_in_s:.1f} s"
    return f"connection attempt {e.attempt} failed: {_clip(e.error)}; {then}"


def _connected(e: ModelConnected) -> str:
    if e.attempt == 0:
        return f"connected to {e.url}"
    return f"reconnected (attempt {e.attempt}), {e.seeded_items} items re-seeded"


_FACTS: dict[type[Event], tuple[str | Callable[[Any], str], Callable[[Any], str]]] = {
    CallStarted: ("call", lambda e: f"call from {e.from_number or '?'} to {e.to_number or '?'} (model {e.model})"),
    AgentRouted: ("call", lambda e: f"answered by agent {e.agent} v{e.version}: {e.reason}"),
    PlaybackCleared: (
        "barge_in",
        lambda e: f"playback cleared: {e.unplayed_bytes // SAMPLES_PER_MS} ms unplayed dropped",
    ),
    ToolCallRequested: (
        "tool",
        lambda e: f"{e.name}({_clip(e.arguments)})" + (" (answered from the console)" if e.handler == "human" else ""),
    ),
    ToolCallCompleted: ("tool", lambda e: f"{e.name} -> {_clip(e.output)} ({e.duration_ms:.0f} ms)"),
    ToolCallFailed: ("tool", _tool_failed),
    ModelConnected: ("model", _connected),
    ModelDisconnected: ("model", lambda e: f"disconnected (code {e.code})" + (f": {e.error}" if e.error else "")),
    ModelConnectionFailed: (lambda e: "model" if e.retry_in_s is not None else "error", _connection_failed),
    ModelErrorReported: ("error", lambda e: f"model error {e.code or '(no code)'}: {_clip(e.message)}"),
    ModelEventUnknown: (
        "model",
        lambda e: f"unknown model event {e.type or '(untyped)'!r} ignored" + (f": {_clip(e.error)}" if e.error else ""),
    ),
    TwilioFrameRejected: ("twilio", lambda e: f"frame rejected: {_clip(e.error)}"),
    TwilioEventIgnored: ("twilio", lambda e: f"unknown event {e.event!r} ignored"),
    TwilioSocketClosed: (
        "twilio",
        lambda e: "stream stopped by Twilio" if e.reason == "stop" else f"socket closed (code {e.code})",
    ),
    CallStatusReported: (
        "twilio",
        lambda e: f"call status {e.status}" + (f" ({e.duration_s} s)" if e.duration_s is not None else ""),
    ),
    DtmfReceived: ("dtmf", lambda e: f"pressed {e.digit}"),
    CallSessionConfigChanged: ("model", lambda e: f"session config changed ({e.source})"),
    TaskCrashed: ("error", lambda e: f"task {e.task} crashed ({e.action}): {_clip(e.error)}"),
    **CALL_CONTROL_FACTS,
    CallErased: (
        "call",
        lambda e: f"call erased ({e.by}): its audio, transcripts, tool payloads and numbers read as [erased]",
    ),
}
"""Events that become one entry each, without context: kind (or a function of the event) and summary."""


class _Builder:
    def __init__(self, events: Sequence[Event]) -> None:
        self.span = call_span(events)
        self.replies = _gather_replies(events)
        self.heard = heard_bytes_by_item(assistant_playback(events, self.span))
        self.entries: list[TimelineEntry] = []
        self.speech_started: dict[str, float] = {}
        self.last_stopped: float | None = None
        self.heard_replies: set[str] = set()
        self.discard_noted: set[str] = set()

    def add(self, at: float, kind: str, summary: str, **data: Any) -> None:
        t_ms = round((at - self.span.start_at) * 1000)
        self.entries.append(TimelineEntry(t_ms=t_ms, kind=kind, summary=summary, data=data))

    def fact(self, e: Event, kind: str, summary: str, **extra: Any) -> None:
        """An entry whose ``data`` is the event's own fields (plus ``extra``)."""
        data: dict[str, Any] = msgspec.to_builtins(e)
        del data["call_id"], data["at"]
        self.add(e.at, kind, summary, **data, **extra)

    def event(self, e: Event) -> None:
        described = _FACTS.get(type(e))
        if described is not None:
            kind, describe = described
            self.fact(e, kind(e) if callable(kind) else kind, describe(e))
        elif isinstance(e, CallerSpeechDetected | CallerSaid | CallerTranscriptionFailed):
            self.caller(e)
        elif isinstance(e, ResponseFinished):
            self.response_finished(e)
        elif isinstance(e, AssistantAudioSent):
            self.assistant_audio(e)
        elif isinstance(e, AssistantAudioDiscarded):
            if e.item_id not in self.discard_noted:
                self.discard_noted.add(e.item_id)
                total = self.replies.get(e.response_id, _Reply()).discarded_bytes
                summary = f"{total // SAMPLES_PER_MS} ms of late audio dropped ({e.reason})"
                self.fact(e, "assistant", summary, discarded_bytes=total)
        elif isinstance(e, BargeInDecided):
            self.fact(e, "barge_in", _barge_in_summary(e))
        elif isinstance(e, CallEnded):
            seconds = e.at - self.span.start_at
            detail = f": {_clip(e.detail)}" if e.detail else ""
            self.fact(e, "call", f"call ended: {e.reason} after {seconds:.1f} s{detail}", duration_s=round(seconds, 3))
        elif not isinstance(e, _SILENT):
            self.add(e.at, "call", type(e).__name__, event=type(e).__name__)

    def caller(self, e: CallerSpeechDetected | CallerSaid | CallerTranscriptionFailed) -> None:
        if isinstance(e, CallerSaid):
            self.add(e.at, "caller", _quote(e.text), item_id=e.item_id, transcript=e.text)
        elif isinstance(e, CallerTranscriptionFailed):
            summary = f"caller transcription failed: {_clip(e.error)}"
            self.add(e.at, "error", summary, item_id=e.item_id, message=e.error)
        elif e.started:
            self.speech_started[e.item_id] = e.at
            self.add(e.at, "caller", "starts speaking", item_id=e.item_id)
        else:
            self.last_stopped = e.at
            began = self.speech_started.get(e.item_id)
            length = f" ({e.at - began:.2f} s)" if began is not None else ""
            self.add(e.at, "caller", f"stops speaking{length}", item_id=e.item_id)

    def response_finished(self, e: ResponseFinished) -> None:
        if e.status == "failed":
            self.add(
                e.at,
                "error",
                f"response failed: {_clip(e.error or 'no reason given')}",
                response_id=e.response_id,
                error=e.error,
            )
        reply = self.replies.get(e.response_id)
        if reply is not None and reply.text is not None and e.response_id not in self.heard_replies:
            self.reply(e.at, e.response_id, reply, latency_ms=None)  # a reply without audio

    def assistant_audio(self, e: AssistantAudioSent) -> None:
        if e.response_id in self.heard_replies:
            return
        latency = None
        if self.last_stopped is not None:
            latency = round((e.at - self.last_stopped) * 1000)
            self.last_stopped = None
        self.reply(e.at, e.response_id, self.replies.get(e.response_id, _Reply(item_id=e.item_id)), latency)

    def reply(self, at: float, response_id: str, reply: _Reply, latency_ms: int | None) -> None:
        self.heard_replies.add(response_id)
        text = reply.text
        heard_ms = self.heard.get(reply.item_id, 0) // SAMPLES_PER_MS
        notes = []
        if reply.status == "cancelled":
            notes.append(f"interrupted, {heard_ms} ms heard")
        elif reply.status and reply.status != "completed":
            notes.append(reply.status)
        if latency_ms is not None:
            notes.append(f"latency {latency_ms} ms")
        summary = (_quote(text) if text is not None else "speaks (no transcript)") + (
            f" ({'; '.join(notes)})" if notes else ""
        )
        self.add(
            at,
            "assistant",
            summary,
            response_id=response_id,
            item_id=reply.item_id,
            transcript=text,
            status=reply.status,
            latency_ms=latency_ms,
            audio_ms=reply.audio_bytes // SAMPLES_PER_MS,
            heard_ms=heard_ms,
        )


def build_timeline(events: Sequence[Event]) -> list[TimelineEntry]:
    """The call's timeline, in time order (ties in log order). Raises ``ValueError`` for no events."""
    events = expand_events(events)  # an old log's facts, read from its model events
    builder = _Builder(events)
    for event in events:
        builder.event(event)
    never = never_connected(events)
    held = on_hold(events) if not builder.span.ended else None
    if never is not None:
        builder.add(never.at, "call", f"the call never connected: {never.status}", ended=True, status=never.status)
    elif held is not None:  # Twilio holds the call: the server records how the transfer ends
        builder.add(builder.span.end_at, "call", f"on hold — transferring to {held.label}", ended=False, held=True)
    elif not builder.span.ended:
        builder.add(builder.span.end_at, "call", "no CallEnded: the call was cut off", ended=False)
    return sorted(builder.entries, key=lambda entry: entry.t_ms)


# --- rendering ------------------------------------------------------------------------------

_COLORS = {
    "call": "1",
    "caller": "36",
    "assistant": "32",
    "tool": "33",
    "barge_in": "35",
    "model": "34",
    "error": "31",
    "dtmf": "2",
    "twilio": "2",
    "control": "1;33",
}
_CONTROL = {c: " " if c in (9, 10, 13) else "?" for c in (*range(32), *range(127, 160))}


def clock(t_ms: int) -> str:
    """``+MM:SS.mmm`` (minutes keep counting past 59)."""
    sign = "-" if t_ms < 0 else "+"
    minutes, rest = divmod(abs(t_ms), 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{sign}{minutes:02d}:{seconds:02d}.{millis:03d}"


def render_text(entries: Sequence[TimelineEntry], *, color: bool) -> str:
    """One line per entry: ``+00:03.120  caller     "What's the weather…"``."""
    lines = []
    for entry in entries:
        kind = f"{entry.kind:<10}"
        summary = entry.summary.translate(_CONTROL)
        if color:
            code = _COLORS.get(entry.kind, "0")
            kind = f"\x1b[{code}m{kind}\x1b[0m"
            if entry.kind == "error":
                summary = f"\x1b[31m{summary}\x1b[0m"
        lines.append(f"{clock(entry.t_ms)}  {kind} {summary}")
    return "\n".join(lines) + ("\n" if lines else "")
