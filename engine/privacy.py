"""Which recorded fields are personal data, and what an erased event keeps in their place.

The catalogue (:data:`SENSITIVE`) is the one decision of what crypto-shredding protects: the store
seals these fields with the call's key (``engine.sealing``), and when the key is gone the event reads
back with a **placeholder** in each of them. Everything else stays readable after an erasure, so a
call's timing, outcome, token counts and costs remain in the metrics.

What is sensitive, and why:

- what the caller and the agent said and heard: audio (``CallerAudioReceived.payload``,
  ``AssistantAudioSent.payload``), transcripts (``CallerSaid.text``, ``AssistantSaid.text``), the
  model's own events (``ModelEventReceived/Sent/Unknown.raw``: transcripts, deltas, tool arguments
  and outputs, instructions);
- tool payloads: ``ToolCallRequested.arguments``, ``ToolCallCompleted.output``,
  ``ToolCallFailed.output`` and ``.error`` (an error often quotes its input);
- who called: ``CallStarted.from_number``, ``.to_number`` (the callee of an outbound call) and
  ``.custom_parameters``; Twilio's status callback parameters; frames Twilio sent that could not be
  read (``raw``: they may hold audio);
- keys pressed and sent (``DtmfReceived.digit``, ``DtmfForwarded.digits``, ``DtmfSent.digits``: card
  numbers are typed), and the free-text reasons the model gives for hanging up or transferring;
- what we asked Twilio to call (``OutboundCallPlaced.to_number``, its per-call ``greeting`` and
  ``metadata``), and an operator's command for a call carried by another engine
  (``CallCommandIssued.payload``: typed text, a session change), under that call's key;
- a webhook's signing secret (``WebhookRegistered.secret``), under the webhook's own key.

Not sensitive (kept readable): ids, times, durations, counts, statuses, end reasons, token usage,
the operator's own session configuration and transfer targets, engine diagnostics (crash tracebacks,
model error messages, connection errors).

Placeholders keep only whether a value was empty: a non-empty text becomes :data:`ERASED`, bytes
become empty, mappings and lists empty. The model's JSON events keep their *shape* instead
(:func:`skeleton`): ids, types, statuses, roles, tool names and every number stay, every other string
becomes :data:`ERASED`, so the views fold an erased call's events into the same turns, items and
metrics, without a word of what was said. Every event class must be classified here
(``tests/engine/test_privacy.py`` checks the catalogue covers the whole event registry).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from callbridge.engine.events import Event

ERASED = "[erased]"
"""What an erased text reads as."""

SENSITIVE: dict[str, tuple[str, ...]] = {
    "CallStarted": ("from_number", "to_number", "custom_parameters"),
    "CallerAudioReceived": ("payload",),
    "AssistantAudioSent": ("payload",),
    "DtmfReceived": ("digit",),
    "DtmfForwarded": ("digits",),
    "DtmfSent": ("digits",),
    "TwilioFrameRejected": ("raw",),
    "TwilioEventIgnored": ("raw",),
    "CallStatusReported": ("params",),
    "ModelEventReceived": ("raw",),
    "ModelEventSent": ("raw",),
    "ModelEventUnknown": ("raw", "error"),
    "CallerSaid": ("text",),
    "AssistantSaid": ("text",),
    "TranscriptDelta": ("delta",),
    "ToolCallRequested": ("arguments",),
    "ToolCallCompleted": ("output",),
    "ToolCallFailed": ("output", "error"),
    "CallEndRequested": ("reason",),
    "TransferRequested": ("reason",),
    "WebhookRegistered": ("secret",),
    "OutboundCallPlaced": ("to_number", "greeting", "metadata"),
    "CallCommandIssued": ("payload",),
    "AgentRouted": ("overrides",),
}
"""Event class name → its fields that are sealed with the call's (or webhook's) key."""

CLEAR: frozenset[str] = frozenset(
    {
        "CallEnded",
        "CallSessionConfigChanged",
        "DefaultSessionConfigSaved",
        "RedactionRulesSet",
        "EngineHeartbeat",
        "CallerAudioDropped",
        "TwilioSocketClosed",
        "AssistantAudioDiscarded",
        "AssistantAudioPlayed",
        "PlaybackCleared",
        "BargeInDecided",
        "ModelConnected",
        "ModelConnectionFailed",
        "ModelDisconnected",
        "ModelErrorReported",
        "ResponseFinished",
        "ResponseStarted",
        "ResponseItemAdded",
        "CallerAudioCommitted",
        "CallerTranscriptionFailed",
        "GreetingAudioStarted",
        "GoodbyeHeard",
        "PhoneHangUpSent",
        "TransferRefused",
        "TransferDialed",
        "SilenceReprompted",
        "DurationWarningGiven",
        "MachineDetected",
        "ModelSessionRecycled",
        "TaskCrashed",
        "CallErased",
        "AgentSaved",
        "AgentDeleted",
        "RoutingRulesSaved",
        "CallerSpeechDetected",
        "CallCommandAnswered",
        "CallHeld",
        "CallResumed",
        "TransferNotAnswered",
        "TransferBriefed",
        "WebhookRemoved",
        "WebhookLeaseTaken",
        "WebhookAttempted",
        "WebhookDeadLettered",
        "WebhookRedeliveryRequested",
    }
)
"""Event classes with nothing personal in them (stored as they are)."""

JSON_FIELDS: frozenset[tuple[str, str]] = frozenset(
    {("ModelEventReceived", "raw"), ("ModelEventSent", "raw"), ("ModelEventUnknown", "raw")}
)
"""Fields holding the model's JSON events: their placeholder is the :func:`skeleton`."""

STRUCTURAL_KEYS: frozenset[str] = frozenset(
    {
        "type",
        "event_id",
        "id",
        "item_id",
        "response_id",
        "previous_item_id",
        "call_id",
        "status",
        "role",
        "object",
        "name",
        "conversation_id",
        "code",
        "param",
        "reason",
        "model",
        "voice",
        "modalities",
        "output_modalities",
    }
)
"""Keys of the model's JSON whose string values are ids, kinds and states, never what was said."""


SECRET_FIELDS: dict[str, tuple[str, ...]] = {"WebhookRegistered": ("secret",)}
"""Fields no reader is ever shown (the events API, MCP, ``replay --json`` print :data:`HIDDEN`)."""
HIDDEN = "[hidden]"


def key_id_for(event: Event) -> str:
    """The key an event's sensitive fields are sealed with: its call's, or its webhook's."""
    webhook_id = getattr(event, "webhook_id", None)
    if type(event).__name__ == "WebhookRegistered" and isinstance(webhook_id, str):
        return f"webhook:{webhook_id}"
    target = getattr(event, "target_call_id", None)  # an operator's command: recorded in the engine's
    if type(event).__name__ == "CallCommandIssued" and isinstance(target, str):  # stream, erased with its call
        return f"call:{target}"
    return f"call:{event.call_id}"


def call_key_id(call_id: str) -> str:
    return f"call:{call_id}"


def webhook_key_id(webhook_id: str) -> str:
    return f"webhook:{webhook_id}"


def sensitive_fields(name: str) -> tuple[str, ...]:
    return SENSITIVE.get(name, ())


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | bytes | bytearray | dict | list | tuple) and not value)


def placeholder(value: Any) -> Any:
    """What an erased value reads as: empty stays empty, text becomes :data:`ERASED`."""
    if isinstance(value, str):
        return ERASED if value else ""
    if isinstance(value, bytes | bytearray):
        return b""
    if isinstance(value, dict):
        return {}
    if isinstance(value, list | tuple):
        return []
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return 0
    return None


_json_decode = msgspec.json.Decoder()
_json_encode = msgspec.json.Encoder()


def walk_strings(
    value: Any, change: Callable[[str], str], keep: frozenset[str] = STRUCTURAL_KEYS, *, kept: bool = False
) -> Any:
    """``value`` (decoded JSON) with ``change`` applied to every string that is not under a key in
    ``keep`` (by default :data:`STRUCTURAL_KEYS`); numbers, booleans and nulls are kept."""
    if isinstance(value, str):
        return value if kept else change(value)
    if isinstance(value, dict):
        return {key: walk_strings(item, change, keep, kept=key in keep) for key, item in value.items()}
    if isinstance(value, list):
        return [walk_strings(item, change, keep, kept=kept) for item in value]
    return value


def skeleton(raw: str) -> str:
    """A model event's JSON with what was said taken out: the placeholder of a ``raw`` field. Text
    that is not a JSON object or array becomes :data:`ERASED` (or stays empty)."""
    try:
        value = _json_decode.decode(raw)
    except msgspec.DecodeError:
        return ERASED if raw else ""
    if not isinstance(value, dict | list):
        return ERASED if raw else ""
    return _json_encode.encode(walk_strings(value, placeholder)).decode()


def field_placeholder(name: str, field: str, value: Any) -> Any:
    if (name, field) in JSON_FIELDS and isinstance(value, str):
        return skeleton(value)
    return placeholder(value)
