"""Client events of the OpenAI Realtime GA protocol (what we send to the model), as msgspec structs.

Shapes follow docs/protocols.md B4; ``tests/adapters/openai/test_openai_contract.py`` checks every shape against the
official ``openai`` package. Unset optional fields are omitted on the wire (``omit_defaults``):
the server treats an absent field as "leave unchanged", which is what an unset field means here.

Decoding (used by the simulated model and for events forwarded from the console) forbids unknown
fields, like the real server, which answers them with an ``invalid_request_error``. Nested objects
(``session``, ``item``, ``response``) stay plain dicts: their schemas belong to the server, and
callbridge builds them in ``session.py`` and the engine.
"""

from __future__ import annotations

from typing import Any

import msgspec


class ClientEventBase(
    msgspec.Struct,
    tag_field="type",
    omit_defaults=True,
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
):
    """Every client event may carry a client-chosen ``event_id``, echoed in ``error.event_id``."""

    event_id: str | None = None


class SessionUpdate(ClientEventBase, tag="session.update", frozen=True, kw_only=True):
    session: dict[str, Any]


class InputAudioBufferAppend(ClientEventBase, tag="input_audio_buffer.append", frozen=True, kw_only=True):
    """Base64 audio in the session's input format (μ-law with ``audio/pcmu``); no server answer."""

    audio: str


class InputAudioBufferCommit(ClientEventBase, tag="input_audio_buffer.commit", frozen=True, kw_only=True):
    """Only needed without server VAD; the server refuses a buffer shorter than 100 ms."""


class InputAudioBufferClear(ClientEventBase, tag="input_audio_buffer.clear", frozen=True, kw_only=True):
    pass


class ConversationItemCreate(ClientEventBase, tag="conversation.item.create", frozen=True, kw_only=True):
    """``previous_item_id`` ``"root"`` inserts at the beginning; None appends."""

    item: dict[str, Any]
    previous_item_id: str | None = None


class ConversationItemTruncate(ClientEventBase, tag="conversation.item.truncate", frozen=True, kw_only=True):
    """Cut an assistant audio item to what the caller actually heard (``audio_end_ms``, inclusive)."""

    item_id: str
    content_index: int
    audio_end_ms: int


class ConversationItemDelete(ClientEventBase, tag="conversation.item.delete", frozen=True, kw_only=True):
    item_id: str


class ConversationItemRetrieve(ClientEventBase, tag="conversation.item.retrieve", frozen=True, kw_only=True):
    item_id: str


class ResponseCreate(ClientEventBase, tag="response.create", frozen=True, kw_only=True):
    response: dict[str, Any] | None = None


class ResponseCancel(ClientEventBase, tag="response.cancel", frozen=True, kw_only=True):
    response_id: str | None = None


class OutputAudioBufferClear(ClientEventBase, tag="output_audio_buffer.clear", frozen=True, kw_only=True):
    """WebRTC/SIP only: on a WebSocket bridge use Twilio ``clear`` + truncate instead. Modelled so the
    simulated model can refuse it like a misuse rather than as an unknown event."""


ClientEvent = (
    SessionUpdate
    | InputAudioBufferAppend
    | InputAudioBufferCommit
    | InputAudioBufferClear
    | ConversationItemCreate
    | ConversationItemTruncate
    | ConversationItemDelete
    | ConversationItemRetrieve
    | ResponseCreate
    | ResponseCancel
    | OutputAudioBufferClear
)

CLIENT_EVENT_TYPES: tuple[type[ClientEventBase], ...] = (
    SessionUpdate,
    InputAudioBufferAppend,
    InputAudioBufferCommit,
    InputAudioBufferClear,
    ConversationItemCreate,
    ConversationItemTruncate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ResponseCreate,
    ResponseCancel,
    OutputAudioBufferClear,
)


class UnknownClientEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A client event that is not in the GA union, or a known type whose body does not fit."""

    type: str
    raw: str
    error: str


UnknownEvent = UnknownClientEvent
"""Short alias used by the simulated model."""
