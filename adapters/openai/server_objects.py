"""Nested objects of OpenAI Realtime GA server events: items, content parts, responses, usage,
rate limits and error details (msgspec structs).

Typed where the engine reads them (ids, status, transcripts, tool call fields, token counts);
everything is optional on decode except what identifies the object, and ``None`` fields are
omitted on encode. Re-exported by ``server_events``.
"""

from __future__ import annotations

from typing import Any

import msgspec


class _Nested(msgspec.Struct, omit_defaults=True, kw_only=True, frozen=True):
    pass


class ContentPart(_Nested, frozen=True, kw_only=True):
    """One content entry of an item (``input_audio``, ``input_text``, ``output_audio``,
    ``output_text``) or the ``part`` of ``response.content_part.*`` (``audio``, ``text``)."""

    type: str | None = None
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None


class Item(_Nested, frozen=True, kw_only=True):
    """A conversation item: ``message`` (role user/assistant/system), ``function_call`` or
    ``function_call_output``. Server items never carry audio bytes."""

    type: str
    id: str | None = None
    object: str | None = None
    status: str | None = None
    role: str | None = None
    content: list[ContentPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None


class CachedTokensDetails(_Nested, frozen=True, kw_only=True):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0


class InputTokenDetails(_Nested, frozen=True, kw_only=True):
    text_tokens: int = 0
    audio_tokens: int = 0
    image_tokens: int = 0
    cached_tokens: int = 0
    cached_tokens_details: CachedTokensDetails | None = None


class OutputTokenDetails(_Nested, frozen=True, kw_only=True):
    text_tokens: int = 0
    audio_tokens: int = 0


class Usage(_Nested, frozen=True, kw_only=True):
    total_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    input_token_details: InputTokenDetails | None = None
    output_token_details: OutputTokenDetails | None = None


class StatusError(_Nested, frozen=True, kw_only=True):
    type: str | None = None
    code: str | None = None
    message: str | None = None


class StatusDetails(_Nested, frozen=True, kw_only=True):
    """``type`` mirrors the status; ``reason`` is ``turn_detected``, ``client_cancelled``,
    ``max_output_tokens`` or ``content_filter``; ``error`` is set for ``failed``."""

    type: str | None = None
    reason: str | None = None
    error: StatusError | None = None


class Response(_Nested, frozen=True, kw_only=True):
    id: str | None = None
    object: str | None = None
    status: str | None = None
    status_details: StatusDetails | None = None
    output: list[Item] | None = None
    usage: Usage | None = None
    conversation_id: str | None = None
    output_modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    max_output_tokens: int | str | None = None
    metadata: dict[str, Any] | None = None


class RateLimit(_Nested, frozen=True, kw_only=True):
    name: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None


class ErrorDetail(_Nested, frozen=True, kw_only=True):
    """``event_id`` is the id of the client event that caused the error (often null)."""

    type: str
    message: str
    code: str | None = None
    param: str | None = None
    event_id: str | None = None


class TranscriptionError(_Nested, frozen=True, kw_only=True):
    type: str | None = None
    code: str | None = None
    message: str | None = None
    param: str | None = None
