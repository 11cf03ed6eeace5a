"""A live call's session, as the console edits it: what the call runs now, and what the model
answered to a change.

Why from the log and the live feed, not from the engine's memory: the log is where every engine's
calls are recorded, so the console reads the same truth for any call, and what it reports is what
a replay of the call shows.

- The current session is ``CallStarted.session_config``, replaced by each
  ``CallSessionConfigChanged`` (the call's merged config) — unless the model refused that change
  (an ``error`` about ``session…`` answered it before any ``session.updated``): then the config
  before it still holds, as it does at the model.
- The voice of a conversation cannot change once the assistant has spoken (the model answers
  ``cannot_update_voice``): ``voice_locked`` says so before anyone tries — from the typed facts
  (its first words, ``TranscriptDelta``/``AssistantSaid``, or its audio), not the model's JSON.
- A change is *applied* only when the model answers ``session.updated``; an ``error`` is relayed
  with the model's own message; neither within :data:`MODEL_ANSWER_TIMEOUT_S` is reported as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from callbridge.engine.events import (
    AssistantAudioSent,
    AssistantSaid,
    CallSessionConfigChanged,
    CallStarted,
    ModelErrorReported,
    ModelEventReceived,
    TranscriptDelta,
)
from callbridge.projections.legacy_facts import expand

if TYPE_CHECKING:
    from callbridge.engine.store import RecordedEvent
    from callbridge.web.live_feed import Subscription

MODEL_ANSWER_TIMEOUT_S = 10.0
"""How long a live session change waits for the model's ``session.updated`` or ``error``."""


@dataclass(frozen=True)
class CallSession:
    config: dict[str, Any]
    voice_locked: bool
    """The assistant has spoken: the model refuses a new voice for this conversation."""


def call_session(events: list[RecordedEvent]) -> CallSession:
    """The session a call runs now, folded from its events (see the module docstring)."""
    config: dict[str, Any] = {}
    pending: dict[str, Any] | None = None
    spoke = False
    for recorded in expand(events):  # a call of an old log: its facts, from its model events
        event = recorded.event
        if isinstance(event, CallStarted):
            config = dict(event.session_config)
        elif isinstance(event, CallSessionConfigChanged):
            pending = dict(event.session_config)
        elif isinstance(event, ModelEventReceived) and event.type == "session.updated" and pending is not None:
            config, pending = pending, None
        elif (
            isinstance(event, ModelErrorReported) and pending is not None and (event.param or "").startswith("session")
        ):
            pending = None  # refused: the model keeps the session it had
        elif isinstance(event, AssistantAudioSent | AssistantSaid) or (
            isinstance(event, TranscriptDelta) and event.role == "assistant"
        ):
            spoke = True  # its audio is stored in 500 ms chunks: the first words come before the first chunk
    return CallSession(config=pending if pending is not None else config, voice_locked=spoke)


class SessionOutcome(msgspec.Struct, frozen=True, kw_only=True):
    applied: bool
    message: str
    code: str | None = None


def _model_error_text(error: dict[str, Any]) -> str:
    message = str(error.get("message") or "the model refused the change")
    code = error.get("code")
    return f"{message} ({code})" if code else message


async def model_answer(subscription: Subscription, timeout_s: float = MODEL_ANSWER_TIMEOUT_S) -> SessionOutcome:
    """What the model answered to the session change this call sends next: the first
    ``session.updated`` or model ``error`` after the call's outgoing ``session.update`` on the live
    feed (``subscription`` must be opened before the change is handed to the call)."""
    sent = False
    with trio.move_on_after(timeout_s):
        while (text := await subscription.next()) is not None:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "call.ended":
                return SessionOutcome(applied=False, message="the call ended before the model answered the change")
            if message.get("direction") == "client":
                sent = sent or kind == "session.update"
                continue
            if not sent:
                continue
            if kind == "session.updated":
                return SessionOutcome(applied=True, message="applied: the model confirmed the new session")
            if kind == "error" and isinstance(message.get("error"), dict):
                error = message["error"]
                if error.get("type") == "feed_error":
                    continue
                return SessionOutcome(
                    applied=False,
                    message=f"the model refused the change: {_model_error_text(error)}",
                    code=str(error.get("code") or "model_error"),
                )
        return SessionOutcome(applied=False, message="the live feed closed before the model answered")
    return SessionOutcome(
        applied=False,
        message=(
            f"the model did not answer within {timeout_s:g} s: the change may still apply; "
            "reload this call's session to see what it runs"
        ),
        code="timeout",
    )
