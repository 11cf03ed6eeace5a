"""Server events of the OpenAI Realtime GA protocol (what the model sends us), as msgspec structs.

Every event of docs/protocols.md B5 has a struct. What the engine acts on is typed (ids, ``delta``,
``transcript``, ``call_id``/``name``/``arguments``, response status, usage, errors, VAD times,
items); what it only records stays a loose dict. Decoding ignores fields we do not know — the
provider adds fields over time and the bridge keeps the raw text anyway.

The same structs are encoded by the simulated model, so defaults are ``None`` (or 0 for token
counts) and omitted on the wire; the simulated model sets every field the real server sends.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callbridge.adapters.openai.server_objects import (
    CachedTokensDetails,
    ContentPart,
    ErrorDetail,
    InputTokenDetails,
    Item,
    OutputTokenDetails,
    RateLimit,
    Response,
    StatusDetails,
    StatusError,
    TranscriptionError,
    Usage,
)

OBJECTS = (
    CachedTokensDetails,
    ContentPart,
    ErrorDetail,
    InputTokenDetails,
    Item,
    OutputTokenDetails,
    RateLimit,
    Response,
    StatusDetails,
    StatusError,
    TranscriptionError,
    Usage,
)
"""The nested object structs, re-exported here so one import serves the engine."""


# --- events ------------------------------------------------------------------------------------


class ServerEventBase(msgspec.Struct, tag_field="type", omit_defaults=True, kw_only=True, frozen=True):
    event_id: str = ""


class SessionCreated(ServerEventBase, tag="session.created", frozen=True, kw_only=True):
    session: dict[str, Any]


class SessionUpdated(ServerEventBase, tag="session.updated", frozen=True, kw_only=True):
    session: dict[str, Any]


class ConversationCreated(ServerEventBase, tag="conversation.created", frozen=True, kw_only=True):
    conversation: dict[str, Any]


class InputAudioBufferSpeechStarted(
    ServerEventBase, tag="input_audio_buffer.speech_started", frozen=True, kw_only=True
):
    """The caller started speaking: the barge-in trigger. ``audio_start_ms`` counts all audio
    appended this session and includes the prefix padding."""

    item_id: str
    audio_start_ms: int


class InputAudioBufferSpeechStopped(
    ServerEventBase, tag="input_audio_buffer.speech_stopped", frozen=True, kw_only=True
):
    item_id: str
    audio_end_ms: int


class InputAudioBufferCommitted(ServerEventBase, tag="input_audio_buffer.committed", frozen=True, kw_only=True):
    item_id: str
    previous_item_id: str | None = None


class InputAudioBufferCleared(ServerEventBase, tag="input_audio_buffer.cleared", frozen=True, kw_only=True):
    pass


class InputAudioBufferTimeoutTriggered(
    ServerEventBase, tag="input_audio_buffer.timeout_triggered", frozen=True, kw_only=True
):
    item_id: str
    audio_start_ms: int
    audio_end_ms: int


class ConversationItemAdded(ServerEventBase, tag="conversation.item.added", frozen=True, kw_only=True):
    item: Item
    previous_item_id: str | None = None


class ConversationItemDone(ServerEventBase, tag="conversation.item.done", frozen=True, kw_only=True):
    item: Item
    previous_item_id: str | None = None


class ConversationItemCreated(ServerEventBase, tag="conversation.item.created", frozen=True, kw_only=True):
    """Beta name still in the GA union; handle it like ``conversation.item.added``."""

    item: Item
    previous_item_id: str | None = None


class ConversationItemRetrieved(ServerEventBase, tag="conversation.item.retrieved", frozen=True, kw_only=True):
    item: Item


class ConversationItemTruncated(ServerEventBase, tag="conversation.item.truncated", frozen=True, kw_only=True):
    item_id: str
    content_index: int
    audio_end_ms: int


class ConversationItemDeleted(ServerEventBase, tag="conversation.item.deleted", frozen=True, kw_only=True):
    item_id: str


class InputAudioTranscriptionDelta(
    ServerEventBase,
    tag="conversation.item.input_audio_transcription.delta",
    frozen=True,
    kw_only=True,
):
    item_id: str
    content_index: int | None = None
    delta: str | None = None
    logprobs: list[dict[str, Any]] | None = None


class InputAudioTranscriptionCompleted(
    ServerEventBase,
    tag="conversation.item.input_audio_transcription.completed",
    frozen=True,
    kw_only=True,
):
    item_id: str
    content_index: int
    transcript: str
    usage: dict[str, Any] | None = None
    logprobs: list[dict[str, Any]] | None = None


class InputAudioTranscriptionFailed(
    ServerEventBase,
    tag="conversation.item.input_audio_transcription.failed",
    frozen=True,
    kw_only=True,
):
    item_id: str
    content_index: int
    error: TranscriptionError


class InputAudioTranscriptionSegment(
    ServerEventBase,
    tag="conversation.item.input_audio_transcription.segment",
    frozen=True,
    kw_only=True,
):
    item_id: str
    content_index: int
    id: str
    text: str
    speaker: str
    start: float
    end: float


class ResponseCreated(ServerEventBase, tag="response.created", frozen=True, kw_only=True):
    response: Response


class ResponseDone(ServerEventBase, tag="response.done", frozen=True, kw_only=True):
    """Always ends a response, whatever its status (completed, cancelled, failed, incomplete)."""

    response: Response


class ResponseOutputItemAdded(ServerEventBase, tag="response.output_item.added", frozen=True, kw_only=True):
    response_id: str
    output_index: int
    item: Item


class ResponseOutputItemDone(ServerEventBase, tag="response.output_item.done", frozen=True, kw_only=True):
    response_id: str
    output_index: int
    item: Item


class ResponseContentPartAdded(ServerEventBase, tag="response.content_part.added", frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ResponseContentPartDone(ServerEventBase, tag="response.content_part.done", frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ResponseOutputAudioDelta(ServerEventBase, tag="response.output_audio.delta", frozen=True, kw_only=True):
    """``delta`` is base64 audio in the output format: with ``audio/pcmu`` it is exactly a Twilio
    ``media.payload``."""

    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioDone(ServerEventBase, tag="response.output_audio.done", frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int
    content_index: int


class ResponseOutputAudioTranscriptDelta(
    ServerEventBase, tag="response.output_audio_transcript.delta", frozen=True, kw_only=True
):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputAudioTranscriptDone(
    ServerEventBase, tag="response.output_audio_transcript.done", frozen=True, kw_only=True
):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    transcript: str


class ResponseOutputTextDelta(ServerEventBase, tag="response.output_text.delta", frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    delta: str


class ResponseOutputTextDone(ServerEventBase, tag="response.output_text.done", frozen=True, kw_only=True):
    response_id: str
    item_id: str
    output_index: int
    content_index: int
    text: str


class ResponseFunctionCallArgumentsDelta(
    ServerEventBase, tag="response.function_call_arguments.delta", frozen=True, kw_only=True
):
    response_id: str
    item_id: str
    output_index: int
    call_id: str
    delta: str


class ResponseFunctionCallArgumentsDone(
    ServerEventBase, tag="response.function_call_arguments.done", frozen=True, kw_only=True
):
    """``arguments`` is a JSON string; ``name`` is GA-only."""

    response_id: str
    item_id: str
    output_index: int
    call_id: str
    name: str
    arguments: str


class RateLimitsUpdated(ServerEventBase, tag="rate_limits.updated", frozen=True, kw_only=True):
    rate_limits: list[RateLimit]


class ErrorEvent(ServerEventBase, tag="error", frozen=True, kw_only=True):
    """Mostly non-fatal: the session stays open unless a close follows (see docs/protocols.md B7)."""

    error: ErrorDetail


class OutputAudioBufferStarted(ServerEventBase, tag="output_audio_buffer.started", frozen=True, kw_only=True):
    """WebRTC/SIP only; modelled so a stray one is recognised rather than reported unknown."""

    response_id: str


class OutputAudioBufferStopped(ServerEventBase, tag="output_audio_buffer.stopped", frozen=True, kw_only=True):
    response_id: str


class OutputAudioBufferCleared(ServerEventBase, tag="output_audio_buffer.cleared", frozen=True, kw_only=True):
    response_id: str


ServerEvent = (
    SessionCreated
    | SessionUpdated
    | ConversationCreated
    | InputAudioBufferSpeechStarted
    | InputAudioBufferSpeechStopped
    | InputAudioBufferCommitted
    | InputAudioBufferCleared
    | InputAudioBufferTimeoutTriggered
    | ConversationItemAdded
    | ConversationItemDone
    | ConversationItemCreated
    | ConversationItemRetrieved
    | ConversationItemTruncated
    | ConversationItemDeleted
    | InputAudioTranscriptionDelta
    | InputAudioTranscriptionCompleted
    | InputAudioTranscriptionFailed
    | InputAudioTranscriptionSegment
    | ResponseCreated
    | ResponseDone
    | ResponseOutputItemAdded
    | ResponseOutputItemDone
    | ResponseContentPartAdded
    | ResponseContentPartDone
    | ResponseOutputAudioDelta
    | ResponseOutputAudioDone
    | ResponseOutputAudioTranscriptDelta
    | ResponseOutputAudioTranscriptDone
    | ResponseOutputTextDelta
    | ResponseOutputTextDone
    | ResponseFunctionCallArgumentsDelta
    | ResponseFunctionCallArgumentsDone
    | RateLimitsUpdated
    | ErrorEvent
    | OutputAudioBufferStarted
    | OutputAudioBufferStopped
    | OutputAudioBufferCleared
)


class UnknownServerEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A server event the codec does not know, or a known type whose body does not fit: the
    bridge records it (``raw`` verbatim, ``error`` says why) and ignores it."""

    type: str
    raw: str
    error: str


def wire_types(*classes: type[ServerEventBase]) -> frozenset[str]:
    """The wire ``type`` of each event class (its tag), for sets of event types read by name."""
    return frozenset(str(cls.__struct_config__.tag) for cls in classes)
