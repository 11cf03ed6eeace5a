"""The live feed (``WS /logs``) as a projection of the event log: recorded events → feed messages.

Why a fold over events rather than hooks in the engine: the console must show exactly what the log
says, live or replayed, and a call's tasks must never wait for a browser. The hub
(``web.live_feed``) follows the store and runs every new event through :class:`LiveProjection`;
a replay runs the call's stored events through a fresh one. Same events, same messages.

Every message is one JSON object with ``type``, ``call_id`` (the Twilio CallSid; None for messages
about no call) and ``stream_sid`` (from the call's ``CallStarted``; None when not known):

- OpenAI server events (``ModelEventReceived.raw``, and well-formed unknown ones) verbatim, plus
  ``call_id`` and ``stream_sid``. A server event's own top-level ``call_id`` (the function call id
  of ``response.function_call_arguments.*``) is moved to ``tool_call_id``.
- Client events the bridge sent (``ModelEventSent``, audio appends excepted) verbatim, plus the two
  fields and ``"direction": "client"``.
- Engine events: ``call.started``, ``call.ended`` and ``callbridge.*`` extras (see
  :meth:`LiveProjection.messages`). Audio never reaches the feed.

The projection remembers a little per call (stream sid, start, pending tool calls) for the
envelope, ``call.ended``'s duration and the hello's list of live calls; at most ``max_calls`` calls
are remembered, oldest forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from callbridge.engine.events import (
    SETTINGS_STREAM,
    BargeInDecided,
    CallEnded,
    CallEndRequested,
    CallHeld,
    CallResumed,
    CallSessionConfigChanged,
    CallStarted,
    CallStatusReported,
    DefaultSessionConfigSaved,
    DtmfForwarded,
    DtmfReceived,
    DtmfSent,
    DurationWarningGiven,
    Event,
    GoodbyeHeard,
    GreetingAudioStarted,
    MachineDetected,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
    ModelSessionRecycled,
    OutboundCallPlaced,
    PhoneHangUpSent,
    SilenceReprompted,
    TaskCrashed,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    TransferBriefed,
    TransferDialed,
    TransferNotAnswered,
    TransferRefused,
    TransferRequested,
    TwilioFrameRejected,
)
from callbridge.projections.timeline_call_control import CALL_CONTROL_FACTS
from callbridge.projections.views_db import iso

Message = dict[str, Any]

CALL_CONTROL_MESSAGES: dict[type[Event], str] = {
    OutboundCallPlaced: "callbridge.outbound.placed",
    GreetingAudioStarted: "callbridge.greeting.started",
    CallEndRequested: "callbridge.hangup.requested",
    GoodbyeHeard: "callbridge.goodbye.heard",
    PhoneHangUpSent: "callbridge.phone.hung_up",
    TransferRequested: "callbridge.transfer.requested",
    TransferRefused: "callbridge.transfer.refused",
    TransferDialed: "callbridge.transfer.dialed",
    DtmfForwarded: "callbridge.dtmf.forwarded",
    DtmfSent: "callbridge.dtmf.sent",
    SilenceReprompted: "callbridge.silence.reprompted",
    DurationWarningGiven: "callbridge.duration.warning",
    MachineDetected: "callbridge.machine.detected",
    ModelSessionRecycled: "callbridge.model.recycled",
    CallHeld: "callbridge.call.held",
    TransferBriefed: "callbridge.transfer.briefed",
    TransferNotAnswered: "callbridge.transfer.not_answered",
    CallResumed: "callbridge.call.resumed",
}
"""Call-control facts on the feed: the event's fields plus ``summary`` (the timeline's line)."""

SKIPPED_CLIENT_EVENTS = frozenset({"input_audio_buffer.append"})
"""Client events never put on the feed (audio)."""

_decoder = msgspec.json.Decoder()


def envelope(kind: str, call_id: str | None, stream_sid: str | None, **fields: Any) -> Message:
    """A feed message: ``type``, ``call_id`` and ``stream_sid`` first, then ``fields``."""
    return {"type": kind, "call_id": call_id, "stream_sid": stream_sid, **fields}


def _object(raw: str) -> dict[str, Any] | None:
    """``raw`` as a JSON object, or None (a log is never trusted to be well-formed)."""
    try:
        value = _decoder.decode(raw)
    except msgspec.DecodeError:
        return None
    return value if isinstance(value, dict) and isinstance(value.get("type"), str) else None


@dataclass
class _Call:
    stream_sid: str
    started_at: float
    from_number: str
    to_number: str
    model: str
    ended: bool = False
    pending: dict[str, Message] = field(default_factory=dict)
    """Tool calls requested and not yet completed or failed, by tool call id."""


STATE_EVENTS: tuple[type[Event], ...] = (
    CallStarted,
    CallEnded,
    CallResumed,
    ToolCallRequested,
    ToolCallCompleted,
    ToolCallFailed,
)
"""The events that change what the projection knows (live calls, their stream ids, pending tool
calls). The hub folds only these while no browser listens (``web.live_feed``)."""


class LiveProjection:
    """Turns recorded events into feed messages (no I/O; one instance per followed log)."""

    def __init__(self, max_calls: int = 1000) -> None:
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        self._max_calls = max_calls
        self._handlers: dict[type[Event], Callable[[Any], list[Message]]] = {
            CallStarted: self._call_started,
            CallEnded: self._call_ended,
            ModelEventReceived: self._server_event,
            ModelEventUnknown: self._server_event,
            ModelEventSent: self._client_event,
            ModelConnected: self._model_connected,
            ModelDisconnected: self._model_disconnected,
            ModelConnectionFailed: self._model_connection_failed,
            BargeInDecided: self._barge_in,
            ToolCallRequested: self._tool_requested,
            ToolCallCompleted: self._tool_completed,
            ToolCallFailed: self._tool_failed,
            CallSessionConfigChanged: self._session_changed,
            DefaultSessionConfigSaved: self._default_saved,
            DtmfReceived: self._dtmf,
            CallStatusReported: self._status,
            TwilioFrameRejected: self._frame_rejected,
            TaskCrashed: self._task_crashed,
        }
        for kind in CALL_CONTROL_MESSAGES:
            self._handlers[kind] = self._call_control

    @property
    def event_names(self) -> tuple[str, ...]:
        """The event classes that can produce messages (the hub reads only these from the store)."""
        return tuple(sorted(kind.__name__ for kind in self._handlers))

    @property
    def state_event_names(self) -> tuple[str, ...]:
        """:data:`STATE_EVENTS` by name: what a hub with no listener still reads."""
        return tuple(sorted(kind.__name__ for kind in STATE_EVENTS))

    def messages(self, event: Event) -> list[Message]:
        """The feed messages for one recorded event (often none)."""
        handler = self._handlers.get(type(event))
        return handler(event) if handler is not None else []

    # --- what the projection knows ---------------------------------------------------------------

    def stream_sid(self, call_id: str | None) -> str | None:
        call = self._calls.get(call_id) if call_id else None
        return call.stream_sid if call is not None else None

    def live_calls(self) -> list[Message]:
        """Calls started and not ended, oldest first, each with its pending tool calls."""
        return [
            {
                "call_id": call_id,
                "stream_sid": call.stream_sid,
                "from": call.from_number,
                "to": call.to_number,
                "started_at": iso(call.started_at),
                "model": call.model,
                "pending_tool_calls": list(call.pending.values()),
            }
            for call_id, call in self._calls.items()
            if not call.ended
        ]

    def is_live(self, call_id: str) -> bool:
        call = self._calls.get(call_id)
        return call is not None and not call.ended

    def is_pending(self, call_id: str, tool_call_id: str) -> bool:
        call = self._calls.get(call_id)
        return call is not None and tool_call_id in call.pending

    # --- one handler per event class ---------------------------------------------------------------

    def _message(self, event: Event, kind: str, **fields: Any) -> list[Message]:
        return [envelope(kind, event.call_id, self.stream_sid(event.call_id), at=iso(event.at), **fields)]

    def _call_started(self, e: CallStarted) -> list[Message]:
        self._calls[e.call_id] = _Call(e.stream_sid, e.at, e.from_number, e.to_number, e.model)
        self._calls.move_to_end(e.call_id)
        while len(self._calls) > self._max_calls:
            self._calls.popitem(last=False)
        return [
            envelope(
                "call.started",
                e.call_id,
                e.stream_sid,
                **{"from": e.from_number, "to": e.to_number},
                started_at=iso(e.at),
                model=e.model,
                session=e.session_config,
            )
        ]

    def _call_ended(self, e: CallEnded) -> list[Message]:
        call = self._calls.get(e.call_id)
        duration = None
        if call is not None:
            call.ended = True
            call.pending.clear()
            duration = round(max(0.0, e.at - call.started_at), 3)
        return [
            envelope(
                "call.ended",
                e.call_id,
                self.stream_sid(e.call_id),
                reason=e.reason,
                detail=e.detail,
                duration=duration,
                ended_at=iso(e.at),
            )
        ]

    def _relay(self, event: Event, raw: str, **extra: Any) -> list[Message]:
        body = _object(raw)
        if body is None:
            return []
        if "call_id" in body:
            body["tool_call_id"] = body.pop("call_id")
        body.update(call_id=event.call_id, stream_sid=self.stream_sid(event.call_id), **extra)
        return [body]

    def _server_event(self, e: ModelEventReceived | ModelEventUnknown) -> list[Message]:
        return self._relay(e, e.raw)

    def _client_event(self, e: ModelEventSent) -> list[Message]:
        if e.type in SKIPPED_CLIENT_EVENTS:
            return []
        return self._relay(e, e.raw, direction="client")

    def _model_connected(self, e: ModelConnected) -> list[Message]:
        if e.attempt == 0:
            return self._message(e, "callbridge.model.connected", url=e.url)
        return self._message(
            e, "callbridge.model.reconnected", url=e.url, attempt=e.attempt, seeded_items=e.seeded_items
        )

    def _model_disconnected(self, e: ModelDisconnected) -> list[Message]:
        return self._message(e, "callbridge.model.disconnected", code=e.code, reason=e.reason, error=e.error)

    def _model_connection_failed(self, e: ModelConnectionFailed) -> list[Message]:
        return self._message(
            e, "callbridge.model.connection_failed", attempt=e.attempt, error=e.error, retry_in_s=e.retry_in_s
        )

    def _barge_in(self, e: BargeInDecided) -> list[Message]:
        return self._message(
            e,
            "callbridge.barge_in",
            item_id=e.item_id,
            action=e.action,
            played_ms=e.played_ms,
            received_ms=e.received_ms,
            audio_end_ms=e.audio_end_ms,
        )

    def _tool_requested(self, e: ToolCallRequested) -> list[Message]:
        fields = {
            "tool_call_id": e.tool_call_id,
            "name": e.name,
            "arguments": e.arguments,
            "handler": e.handler,
            "response_id": e.response_id,
            "item_id": e.item_id,
        }
        call = self._calls.get(e.call_id)
        if call is not None and not call.ended:
            call.pending[e.tool_call_id] = {**fields, "requested_at": iso(e.at)}
        return self._message(e, "callbridge.tool_call.requested", **fields)

    def _tool_done(self, e: ToolCallCompleted | ToolCallFailed) -> str | None:
        """Forget the pending call; returns who it was for (``backend``/``human``), if known."""
        call = self._calls.get(e.call_id)
        pending = call.pending.pop(e.tool_call_id, None) if call is not None else None
        return pending["handler"] if pending is not None else None

    def _tool_completed(self, e: ToolCallCompleted) -> list[Message]:
        handler = self._tool_done(e) or e.source
        return self._message(
            e,
            "callbridge.tool_call.completed",
            tool_call_id=e.tool_call_id,
            name=e.name,
            output=e.output,
            handler=handler,
            source=e.source,
            duration_ms=e.duration_ms,
        )

    def _tool_failed(self, e: ToolCallFailed) -> list[Message]:
        handler = self._tool_done(e)
        return self._message(
            e,
            "callbridge.tool_call.failed",
            tool_call_id=e.tool_call_id,
            name=e.name,
            error=e.error,
            output=e.output,
            handler=handler,
            timed_out=e.timed_out,
            duration_ms=e.duration_ms,
        )

    def _session_changed(self, e: CallSessionConfigChanged) -> list[Message]:
        return self._message(e, "callbridge.session.changed", session=e.session_config, source=e.source)

    def _default_saved(self, e: DefaultSessionConfigSaved) -> list[Message]:
        call_id = None if e.call_id == SETTINGS_STREAM else e.call_id
        return [
            envelope(
                "callbridge.default_session.saved",
                call_id,
                None,
                at=iso(e.at),
                session=e.session_config,
                source=e.source,
            )
        ]

    def _dtmf(self, e: DtmfReceived) -> list[Message]:
        return self._message(e, "callbridge.dtmf", digit=e.digit)

    def _status(self, e: CallStatusReported) -> list[Message]:
        return self._message(e, "callbridge.call.status", status=e.status, duration_s=e.duration_s)

    def _frame_rejected(self, e: TwilioFrameRejected) -> list[Message]:
        return self._message(e, "callbridge.twilio.frame_rejected", error=e.error)

    def _task_crashed(self, e: TaskCrashed) -> list[Message]:
        return self._message(e, "callbridge.task_crashed", task=e.task, error=e.error, action=e.action)

    def _call_control(self, e: Event) -> list[Message]:
        """A call-control fact: its fields, and the timeline's line for it as ``summary``."""
        call = self._calls.get(e.call_id)
        if isinstance(e, CallResumed) and call is not None:  # the call's messages carry the new stream's id
            call.stream_sid = e.stream_sid
        fields: dict[str, Any] = msgspec.to_builtins(e)
        del fields["call_id"], fields["at"]
        fields.pop("stream_sid", None)  # the envelope's (CallResumed: the new stream's)
        summary = CALL_CONTROL_FACTS[type(e)][1](e)
        return self._message(e, CALL_CONTROL_MESSAGES[type(e)], **fields, summary=summary)


def replay_messages(events: Sequence[Event]) -> list[tuple[float, Message]]:
    """One recorded call's feed, each message with its offset in seconds from the first event
    (what ``WS /logs?replay=`` plays back, scaled by its speed)."""
    if not events:
        return []
    projection = LiveProjection()
    first = events[0].at
    return [(max(0.0, event.at - first), message) for event in events for message in projection.messages(event)]
