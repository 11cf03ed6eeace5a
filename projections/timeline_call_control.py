"""Timeline lines for call control: the greeting, hang-ups, transfers (cold, and warm: the hold, the
person not answering, the caller back on a new stream), the keypad both ways, silence, the duration
limit, answering machines, session recycles and outbound calls.

Part of ``projections/timeline.py`` (merged into its one-line-per-event table): each entry is the
kind (``control``, ``dtmf`` or ``twilio``) and a function from the event to its summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from callbridge.engine.events import (
    CallEnded,
    CallEndRequested,
    CallHeld,
    CallResumed,
    CallStarted,
    CallStatusReported,
    DtmfForwarded,
    DtmfSent,
    DurationWarningGiven,
    Event,
    GoodbyeHeard,
    GreetingAudioStarted,
    MachineDetected,
    ModelSessionRecycled,
    OutboundCallPlaced,
    PhoneHangUpSent,
    SilenceReprompted,
    TransferBriefed,
    TransferDialed,
    TransferNotAnswered,
    TransferRefused,
    TransferRequested,
)
from callbridge.projections.conversations_outcome import NEVER_CONNECTED

BY = {
    "model": "the agent",
    "operator": "an operator",
    "silence": "silence",
    "max_duration": "the duration limit",
    "voicemail": "voicemail",
}
VIA = {"rest": "Twilio's REST API", "stream": "the stream's <Connect action>"}


def _failed(e: Any) -> str:
    return "" if e.ok else f" FAILED: {e.error}"


def _end_requested(e: CallEndRequested) -> str:
    return f"hang-up requested by {BY.get(e.by, e.by)}" + (f" ({e.reason})" if e.reason else "")


def _goodbye(e: GoodbyeHeard) -> str:
    what = "the wait for the goodbye hit its cap" if e.capped else "the goodbye was heard"
    return f"{what} after {e.waited_ms} ms"


def _outbound(e: OutboundCallPlaced) -> str:
    greeting = f', greeting "{e.greeting[:60]}"' if e.greeting else ""
    agent = f", for agent {e.agent}" if e.agent else ""
    return f"outbound call placed to {e.to_number} from {e.from_number}{greeting}{agent}"


CALL_CONTROL_FACTS: dict[type[Event], tuple[str, Callable[[Any], str]]] = {
    OutboundCallPlaced: ("control", _outbound),
    GreetingAudioStarted: ("control", lambda e: f"greeting starts playing ({e.latency_ms} ms after the call began)"),
    CallEndRequested: ("control", _end_requested),
    GoodbyeHeard: ("control", _goodbye),
    PhoneHangUpSent: ("control", lambda e: f"phone hung up through {VIA.get(e.method, e.method)}{_failed(e)}"),
    TransferRequested: (
        "control",
        lambda e: (
            f"transfer to {e.label} ({e.to}, {e.mode}) requested by {BY.get(e.by, e.by)}"
            + (f": {e.reason}" if e.reason else "")
        ),
    ),
    TransferRefused: ("error", lambda e: f"transfer to {e.label!r} refused: {e.reason}"),
    TransferDialed: (
        "control",
        lambda e: f"caller transferred to {e.label} ({e.to}) through {VIA.get(e.method, e.method)}{_failed(e)}",
    ),
    DtmfForwarded: ("dtmf", lambda e: f"keys {e.digits} given to the model ({e.mode})"),
    DtmfSent: ("dtmf", lambda e: f"agent pressed {e.digits} ({e.audio_ms} ms of tones)"),
    SilenceReprompted: ("control", lambda e: f"caller silent for {e.silent_ms} ms: asked if they are still there"),
    DurationWarningGiven: ("control", lambda e: f"duration limit near: {e.remaining_s:g} s left, told to wrap up"),
    MachineDetected: (
        "twilio",
        lambda e: (
            f"answered by {e.answered_by}"
            + (f" (detected in {e.detection_ms} ms)" if e.detection_ms is not None else "")
        ),
    ),
    CallHeld: ("control", lambda e: f"caller on hold: transferring to {e.label} ({e.to}), who hears a summary first"),
    TransferBriefed: ("control", lambda e: f"{e.label} ({e.to}) heard the summary: putting them through to the caller"),
    TransferNotAnswered: (
        "control",
        lambda e: (
            f"nobody took the transfer to {e.label} ({e.to}): {e.status}" + (f" — {e.reason}" if e.reason else "")
        ),
    ),
    CallResumed: ("control", lambda e: f"caller back with the agent on a new stream ({e.stream_sid})"),
    ModelSessionRecycled: (
        "model",
        lambda e: f"session {e.to_session} took over from {e.from_session} ({e.seeded_items} items re-seeded)",
    ),
}


def on_hold(events: Sequence[Event]) -> CallHeld | None:
    """The hold a call without ``CallEnded`` is in now (its last ``CallHeld``, not resumed since)."""
    held: CallHeld | None = None
    for event in events:
        if isinstance(event, CallHeld):
            held = event
        elif isinstance(event, CallResumed | CallEnded):
            held = None
    return held


def never_connected(events: Sequence[Event]) -> CallStatusReported | None:
    """The status callback that ended an outbound call nobody answered (busy, no-answer, …)."""
    if any(isinstance(e, CallStarted) for e in events):
        return None
    return next((e for e in events if isinstance(e, CallStatusReported) and e.status in NEVER_CONNECTED), None)
