"""Conversation items the simulated model accepts from ``conversation.item.create``, and builds.

The checks mirror what the real server refuses and what the engine must get right when it
re-seeds a conversation after a reconnect: the item kinds and content types per role (assistant
text is ``output_text``; assistant audio cannot be created), string ``output`` for tool results,
a ``call_id`` that matches an earlier ``function_call``, no unknown keys, no duplicate ids.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from callbridge.adapters.openai.server_events import ContentPart, Item
from callbridge.adapters.sim.fake_openai_conversation import Conversation, Ids, StoredItem
from callbridge.adapters.sim.voice import BYTES_PER_MS

_ITEM_KEYS: Final = frozenset(
    {"id", "type", "object", "status", "role", "content", "call_id", "name", "arguments", "output"}
)
_PART_TYPES: Final = {
    "user": ("input_text", "input_audio"),
    "system": ("input_text",),
    "assistant": ("output_text",),
}
_PART_KEYS: Final = frozenset({"type", "text", "transcript", "audio"})


class ItemRejected(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _string(item: dict[str, Any], key: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ItemRejected(
            f"Invalid type for 'item.{key}': expected a string, but got {type(value).__name__}.",
            param=f"item.{key}",
            code="invalid_type",
        )
    return value


def user_audio_item(item_id: str, *, transcript: str | None) -> Item:
    """The user message the server creates when caller audio is committed."""
    return Item(
        id=item_id,
        type="message",
        object="realtime.item",
        status="completed",
        role="user",
        content=[ContentPart(type="input_audio", transcript=transcript)],
    )


def _content(item: dict[str, Any], role: str) -> tuple[list[ContentPart], int]:
    parts = item.get("content")
    if not isinstance(parts, list) or not parts:
        raise ItemRejected("Missing required parameter: 'item.content'.", param="item.content")
    content: list[ContentPart] = []
    audio_ms = 0
    for index, part in enumerate(parts):
        param = f"item.content[{index}]"
        if not isinstance(part, dict):
            raise ItemRejected(f"Invalid '{param}': expected an object.", param=param)
        for key in part:
            if key not in _PART_KEYS:
                raise ItemRejected(f"Unknown parameter: '{param}.{key}'.", param=f"{param}.{key}")
        kind = part.get("type")
        if kind == "output_audio" and role == "assistant":
            raise ItemRejected(
                "Assistant audio cannot be created; use output_text content instead.", param=f"{param}.type"
            )
        if kind not in _PART_TYPES[role]:
            allowed = ", ".join(_PART_TYPES[role])
            raise ItemRejected(
                f"Invalid value for '{param}.type': {kind!r}; {role} messages accept {allowed}.",
                param=f"{param}.type",
                code="invalid_value",
            )
        if kind == "input_audio":
            try:
                audio = base64.b64decode(_string(part, "audio"), validate=True)
            except (binascii.Error, ValueError):
                raise ItemRejected("Invalid base64 in 'audio'.", param=f"{param}.audio") from None
            audio_ms += len(audio) // BYTES_PER_MS
            content.append(ContentPart(type=kind, transcript=part.get("transcript")))
        else:
            content.append(ContentPart(type=kind, text=_string(part, "text")))
    return content, audio_ms


def item_from_client(item: dict[str, Any], conversation: Conversation, ids: Ids) -> StoredItem:
    """The stored form of a client-created item; raises ``ItemRejected`` like the real server."""
    for key in item:
        if key not in _ITEM_KEYS:
            raise ItemRejected(f"Unknown parameter: 'item.{key}'.", param=f"item.{key}", code="unknown_parameter")
    item_id = item.get("id") or ids.new("item")
    if not isinstance(item_id, str):
        raise ItemRejected("Invalid type for 'item.id': expected a string.", param="item.id")
    if conversation.get(item_id) is not None:
        raise ItemRejected(f"Item with id '{item_id}' already exists.", param="item.id", code="duplicate_item_id")
    kind = item.get("type")
    common: dict[str, Any] = {"id": item_id, "object": "realtime.item", "status": "completed"}
    if kind == "message":
        role = item.get("role")
        if role not in _PART_TYPES:
            raise ItemRejected(
                "Invalid value for 'item.role': expected 'user', 'assistant' or 'system'.", param="item.role"
            )
        content, audio_ms = _content(item, role)
        turn = conversation.user_turns() if role == "user" else None
        stored_item = Item(type="message", role=role, content=content, **common)
        return StoredItem(item=stored_item, audio_ms=audio_ms, turn=turn)
    if kind == "function_call":
        call = Item(
            type="function_call",
            call_id=_string(item, "call_id"),
            name=_string(item, "name"),
            arguments=_string(item, "arguments"),
            **common,
        )
        return StoredItem(item=call, turn=max(0, conversation.user_turns() - 1))
    if kind == "function_call_output":
        call_id = _string(item, "call_id")
        output = _string(item, "output")
        if conversation.function_call(call_id) is None:
            raise ItemRejected(
                f"No tool call found for function call output with call_id '{call_id}'.",
                param="item.call_id",
            )
        return StoredItem(item=Item(type="function_call_output", call_id=call_id, output=output, **common))
    raise ItemRejected(
        "Invalid value for 'item.type': expected 'message', 'function_call' or 'function_call_output'.",
        param="item.type",
        code="invalid_value",
    )
