"""What a webhook says: the event kinds operators subscribe to, which log events make them, and the
JSON each one carries.

Every message is ``{"type": KIND, "timestamp": ISO 8601 of the event, "data": {...}}`` (docs/contract.md,
"Webhooks out"). The kinds and the events they come from:

- ``call.started`` ← ``CallStarted``: ids, numbers, model, engine, the stream's custom parameters;
- ``call.ended`` ← ``CallEnded``: outcome (``end_reason``, ``status``, ``detail``), duration, the
  transcript (the conversation's items, as ``GET /api/conversations/{id}`` shows them) and the
  metrics summary (counts, tokens, cost, latency distributions, as ``GET /api/calls/{id}/metrics``
  without its per-turn lists);
- ``tool.called`` ← ``ToolCallCompleted`` / ``ToolCallFailed``: name, arguments, output, ``ok``;
- ``call.transferred`` ← ``TransferDialed``;
- ``voicemail.left`` ← ``CallEnded`` with reason ``voicemail_left``;
- ``agent.failed`` ← ``TaskCrashed`` (``reason`` ``task_crashed``) and a ``ModelConnectionFailed``
  that gave up (``reason`` ``model_unavailable``).

A message is built when it is sent (each attempt), from the log and the views, so what it says is
what callbridge shows at that moment: masked under redaction rules, ``[erased]`` after an erasure.
``call.ended``, ``voicemail.left`` and ``tool.called`` read the views, once they have folded the event.
"""

from __future__ import annotations

import sqlite3
from typing import Any, NamedTuple

import msgspec

from callbridge.engine.events import (
    CallEnded,
    CallStarted,
    Event,
    ModelConnectionFailed,
    TaskCrashed,
    ToolCallCompleted,
    ToolCallFailed,
    TransferDialed,
)
from callbridge.projections.conversations_query import get_conversation
from callbridge.projections.metrics_query import get_call_metrics
from callbridge.projections.views_db import iso

KINDS = ("call.started", "call.ended", "tool.called", "call.transferred", "voicemail.left", "agent.failed")
SOURCES: dict[str, frozenset[str]] = {
    "call.started": frozenset({"CallStarted"}),
    "call.ended": frozenset({"CallEnded"}),
    "tool.called": frozenset({"ToolCallCompleted", "ToolCallFailed"}),
    "call.transferred": frozenset({"TransferDialed"}),
    "voicemail.left": frozenset({"CallEnded"}),
    "agent.failed": frozenset({"TaskCrashed", "ModelConnectionFailed"}),
}
"""Kind → the event classes it is made from."""
NEEDS_VIEWS = frozenset({"call.ended", "voicemail.left", "tool.called"})


class Delivery(NamedTuple):
    """One message queued for one endpoint."""

    delivery_id: str
    """``<trigger>-<kind>``: unique per endpoint."""
    message_id: str
    """The ``webhook-id`` header: ``msg_<source>_<kind>``, the same on every attempt and redelivery."""
    kind: str
    subject: str
    """The call it is about (deliveries of one call go in order)."""
    source: int
    """Position of the event it describes."""
    trigger: int
    """Position that queued it: the event itself, or a redelivery request."""


def message_id(source: int, kind: str) -> str:
    return f"msg_{source}_{kind}"


def delivery(kind: str, subject: str, source: int, trigger: int | None = None) -> Delivery:
    trigger = source if trigger is None else trigger
    return Delivery(f"{trigger}-{kind}", message_id(source, kind), kind, subject, source, trigger)


def kinds_of(event: Event) -> list[str]:
    """The kinds ``event`` is reported as (most events: none)."""
    if isinstance(event, CallStarted):
        return ["call.started"]
    if isinstance(event, CallEnded):
        return ["call.ended", "voicemail.left"] if event.reason == "voicemail_left" else ["call.ended"]
    if isinstance(event, ToolCallCompleted | ToolCallFailed):
        return ["tool.called"]
    if isinstance(event, TransferDialed):
        return ["call.transferred"]
    if isinstance(event, TaskCrashed):
        return ["agent.failed"]
    if isinstance(event, ModelConnectionFailed) and event.retry_in_s is None:
        return ["agent.failed"]
    return []


def topics_for(kinds: list[str] | tuple[str, ...]) -> set[str]:
    return set().union(*(SOURCES[kind] for kind in kinds))


_json = msgspec.json.Encoder()


def message_body(kind: str, event: Event, db: sqlite3.Connection | None) -> bytes:
    """The JSON a delivery POSTs (``db``: the views, for the kinds in :data:`NEEDS_VIEWS`)."""
    return _json.encode({"type": kind, "timestamp": iso(event.at), "data": message_data(kind, event, db)})


def message_data(kind: str, event: Event, db: sqlite3.Connection | None) -> dict[str, Any]:
    call_id = event.call_id
    if kind == "call.started" and isinstance(event, CallStarted):
        return {
            "call_id": call_id,
            "stream_sid": event.stream_sid,
            "account_sid": event.account_sid,
            "from": event.from_number,
            "to": event.to_number,
            "model": event.model,
            "engine_id": event.engine_id,
            "started_at": iso(event.at),
            "custom_parameters": dict(event.custom_parameters),
        }
    if kind in ("call.ended", "voicemail.left") and isinstance(event, CallEnded):
        conversation = (get_conversation(db, call_id) if db is not None else None) or {}
        data: dict[str, Any] = {
            "call_id": call_id,
            "from": conversation.get("caller_number"),
            "to": conversation.get("phone_number"),
            "started_at": conversation.get("started_at"),
            "ended_at": iso(event.at),
            "duration_seconds": conversation.get("duration_seconds"),
            "end_reason": event.reason,
            "detail": event.detail,
        }
        if kind == "voicemail.left":
            return data
        metrics = (get_call_metrics(db, call_id) if db is not None else None) or {}
        data["status"] = conversation.get("status")
        data["erased_at"] = conversation.get("erased_at")
        data["transcript"] = [_item(item) for item in conversation.get("items", [])]
        data["metrics"] = {key: value for key, value in metrics.items() if key not in ("turns", "tools", "call_id")}
        return data
    if kind == "tool.called" and isinstance(event, ToolCallCompleted | ToolCallFailed):
        ok = isinstance(event, ToolCallCompleted)
        data = {
            "call_id": call_id,
            "tool_call_id": event.tool_call_id,
            "name": event.name,
            "arguments": _arguments(db, call_id, event.tool_call_id),
            "output": event.output,
            "ok": ok,
            "duration_ms": event.duration_ms,
        }
        if isinstance(event, ToolCallCompleted):
            data["answered_by"] = event.source
        else:
            data["error"] = event.error
            data["timed_out"] = event.timed_out
        return data
    if kind == "call.transferred" and isinstance(event, TransferDialed):
        return {
            "call_id": call_id,
            "label": event.label,
            "to": event.to,
            "method": event.method,
            "ok": event.ok,
            "error": event.error,
        }
    if kind == "agent.failed" and isinstance(event, TaskCrashed):
        return {
            "call_id": call_id,
            "reason": "task_crashed",
            "task": event.task,
            "error": event.error,
            "action": event.action,
        }
    if kind == "agent.failed" and isinstance(event, ModelConnectionFailed):
        return {"call_id": call_id, "reason": "model_unavailable", "error": event.error, "attempts": event.attempt}
    raise ValueError(f"{type(event).__name__} is not reported as {kind}")


_ITEM_KEYS = ("item_id", "type", "role", "text", "status", "created_at", "name", "arguments", "output", "tool_call_id")


def _item(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item.get(key) for key in _ITEM_KEYS}


def _arguments(db: sqlite3.Connection | None, call_id: str, tool_call_id: str) -> str | None:
    """The function call's arguments as the conversations view holds them."""
    if db is None:
        return None
    row = db.execute(
        "SELECT arguments FROM conversation_items WHERE call_id=? AND tool_call_id=? AND type='function_call' "
        "ORDER BY position LIMIT 1",
        (call_id, tool_call_id),
    ).fetchone()
    return None if row is None else row[0]
