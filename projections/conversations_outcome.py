"""How each call came out, for the conversations view: its start and end, status, direction,
outcome and Twilio's status.

Part of ``projections/conversations.py`` (its table's columns ``status``, ``end_reason``, ``direction``,
``outcome``, ``transfer_target``, ``twilio_status``). ``outcome`` says in one word how the call ended:

- ``hung_up_by_agent`` (the model's ``end_call``), ``hung_up_by_operator`` (console or API),
  ``hung_up_silence``, ``hung_up_max_duration``, ``voicemail_left``: a ``CallEndRequested`` by
  ``model``, ``operator``, ``silence``, ``max_duration``, ``voicemail``;
- ``transferred`` (``transfer_target`` says to whom): a ``TransferDialed`` that went through, or
  a warm transfer the person took (``CallEnded(reason="transferred")`` after ``CallHeld``);
- ``on_hold`` (``transfer_target`` says to whom), while the call is not over: a warm transfer holds
  the caller while the person is called (``CallHeld``). When nobody answers (``TransferNotAnswered``)
  the caller is back with the agent and the outcome is open again; the call stays one row, whose
  items are the whole talk (both streams);
- ``busy``, ``no-answer``, ``failed``, ``canceled``: an outbound call that never connected
  (Twilio's status callback; there is no stream, so no ``CallEnded``: the conversation ends here);
- otherwise the ``CallEnded`` reason (``caller_hangup``, ``model_unavailable``, …).

An outbound call exists in the view from its ``OutboundCallPlaced`` (``started_at`` is when it
was placed until the stream starts), so a call nobody answered is listed too.
"""

from __future__ import annotations

import sqlite3

from callbridge.engine.events import (
    CallEnded,
    CallEndRequested,
    CallHeld,
    CallStarted,
    CallStatusReported,
    Event,
    OutboundCallPlaced,
    TransferDialed,
    TransferNotAnswered,
)
from callbridge.projections.views_db import iso

TOPICS = frozenset({"OutboundCallPlaced", "CallStatusReported", "CallEndRequested", "TransferDialed"}) | frozenset(
    {"CallHeld", "TransferNotAnswered"}  # warm transfers
)
COLUMNS = (
    ("direction", "TEXT"),
    ("outcome", "TEXT"),
    ("transfer_target", "TEXT"),
    ("twilio_status", "TEXT"),
)
NEVER_CONNECTED = frozenset({"busy", "no-answer", "failed", "canceled"})
END_OUTCOMES = {
    "model": "hung_up_by_agent",
    "operator": "hung_up_by_operator",
    "silence": "hung_up_silence",
    "max_duration": "hung_up_max_duration",
    "voicemail": "voicemail_left",
}


FAILED_REASONS = frozenset({"model_unavailable", "supervisor_gave_up", "twilio_task_crashed"})
"""``CallEnded`` reasons that mean the call failed (rather than ended normally)."""


def call_status(end_reason: str | None) -> str:
    """``in_progress`` (no end yet), ``failed`` (ended because of us) or ``completed``."""
    if end_reason is None:
        return "in_progress"
    return "failed" if end_reason in FAILED_REASONS else "completed"


def call_ended(db: sqlite3.Connection, event: CallEnded, at: str) -> None:
    """The call is over: its end, length and status; items still open did not finish; its outcome."""
    db.execute(
        "UPDATE conversations SET ended_at=?, end_reason=?, status=?, "
        "duration_seconds=CASE WHEN started_at_unix IS NULL THEN NULL ELSE round(? - started_at_unix, 3) END "
        "WHERE call_id=?",
        (at, event.reason, call_status(event.reason), event.at, event.call_id),
    )
    db.execute(
        "UPDATE conversation_items SET status='incomplete' WHERE call_id=? AND status='in_progress'", (event.call_id,)
    )
    apply_outcome(db, event)


def call_started(db: sqlite3.Connection, event: CallStarted, at: str) -> None:
    """The stream started: who called whom, when, on which model, in which direction."""
    direction = "outbound" if event.custom_parameters.get("Direction", "").startswith("outbound") else "inbound"
    db.execute(
        "UPDATE conversations SET stream_sid=?, phone_number=?, caller_number=?, started_at=?, "
        "started_at_unix=?, model=?, direction=? WHERE call_id=?",
        (event.stream_sid, event.to_number, event.from_number, at, event.at, event.model, direction, event.call_id),
    )


def apply_outcome(db: sqlite3.Connection, event: Event) -> None:
    """Fold one call-control fact into the call's row (which exists already)."""
    call_id = event.call_id
    if isinstance(event, OutboundCallPlaced):
        db.execute(
            "UPDATE conversations SET direction='outbound', phone_number=coalesce(phone_number, ?), "
            "caller_number=coalesce(caller_number, ?), started_at=coalesce(started_at, ?), "
            "started_at_unix=coalesce(started_at_unix, ?), twilio_status=coalesce(twilio_status, ?) WHERE call_id=?",
            (event.to_number, event.from_number, iso(event.at), event.at, event.status or None, call_id),
        )
    elif isinstance(event, CallStatusReported):
        db.execute("UPDATE conversations SET twilio_status=? WHERE call_id=?", (event.status, call_id))
        if event.status in NEVER_CONNECTED:
            db.execute(
                "UPDATE conversations SET status=?, outcome=coalesce(outcome, ?), end_reason=coalesce(end_reason, ?), "
                "ended_at=coalesce(ended_at, ?) WHERE call_id=? AND status='in_progress'",
                (event.status, event.status, event.status, iso(event.at), call_id),
            )
    elif isinstance(event, CallEndRequested):
        outcome = END_OUTCOMES.get(event.by, f"hung_up_by_{event.by}")
        db.execute(  # an operator may hang up a call a warm transfer holds: that, not the hold, is its outcome
            "UPDATE conversations SET transfer_target=CASE WHEN outcome='on_hold' THEN NULL ELSE transfer_target END, "
            "outcome=CASE WHEN outcome IS NULL OR outcome='on_hold' THEN ? ELSE outcome END WHERE call_id=?",
            (outcome, call_id),
        )
    elif isinstance(event, TransferDialed):
        if event.ok:
            db.execute(
                "UPDATE conversations SET outcome='transferred', transfer_target=? WHERE call_id=?",
                (event.label, call_id),
            )
    elif isinstance(event, CallHeld):
        db.execute(
            "UPDATE conversations SET outcome='on_hold', transfer_target=? WHERE call_id=? AND ended_at IS NULL",
            (event.label, call_id),
        )
    elif isinstance(event, TransferNotAnswered):
        db.execute(
            "UPDATE conversations SET outcome=NULL, transfer_target=NULL WHERE call_id=? AND outcome='on_hold'",
            (call_id,),
        )
    elif isinstance(event, CallEnded):
        db.execute(  # a held call's end says how the hold ended (transferred, or the caller hung up)
            "UPDATE conversations SET outcome=CASE WHEN outcome IS NULL OR outcome='on_hold' THEN ? ELSE outcome END, "
            "transfer_target=CASE WHEN outcome='on_hold' AND ?<>'transferred' THEN NULL ELSE transfer_target END "
            "WHERE call_id=?",
            (event.reason, event.reason, call_id),
        )
