"""The few fields projections read from a recorded realtime server event, decoded once.

``ModelEventReceived.raw`` is the model's JSON, verbatim. Projections need only ids, transcripts,
arguments, statuses and token usage, so instead of decoding into the full GA types they decode into
one permissive struct (unknown fields ignored, every field optional). Several projections look at
the same event one after another, so the last decoding is remembered.
"""

from __future__ import annotations

import logging

import msgspec

from callbridge.engine.events import ModelEventReceived

logger = logging.getLogger(__name__)


class CachedTokens(msgspec.Struct, frozen=True):
    text_tokens: int | None = None
    audio_tokens: int | None = None


class InputTokens(msgspec.Struct, frozen=True):
    text_tokens: int | None = None
    audio_tokens: int | None = None
    cached_tokens: int | None = None
    cached_tokens_details: CachedTokens | None = None


class OutputTokens(msgspec.Struct, frozen=True):
    text_tokens: int | None = None
    audio_tokens: int | None = None


class Usage(msgspec.Struct, frozen=True):
    input_tokens: int | None = None
    output_tokens: int | None = None
    input_token_details: InputTokens | None = None
    output_token_details: OutputTokens | None = None


class ResponseInfo(msgspec.Struct, frozen=True):
    id: str | None = None
    status: str | None = None
    usage: Usage | None = None


class ItemInfo(msgspec.Struct, frozen=True):
    id: str | None = None
    type: str | None = None
    role: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


class ServerEvent(msgspec.Struct, frozen=True):
    """What projections read of a server event; absent fields are None."""

    type: str = ""
    item_id: str | None = None
    response_id: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    transcript: str | None = None
    text: str | None = None
    delta: str | None = None
    audio_end_ms: int | None = None
    response: ResponseInfo | None = None
    item: ItemInfo | None = None


_decoder = msgspec.json.Decoder(ServerEvent)
_last: tuple[str, ServerEvent | None] | None = None
_warned = 0


def parse_server_event(event: ModelEventReceived) -> ServerEvent | None:
    """The fields of ``event.raw``, or None (with a warning) when they are not what the protocol says."""
    global _last, _warned
    last = _last
    if last is not None and last[0] is event.raw:
        return last[1]
    parsed: ServerEvent | None
    try:
        parsed = _decoder.decode(event.raw)
    except msgspec.DecodeError as exc:
        parsed = None
        if _warned < 100:
            _warned += 1
            logger.warning("call %s: unreadable %s event skipped by projections: %s", event.call_id, event.type, exc)
    _last = (event.raw, parsed)
    return parsed
