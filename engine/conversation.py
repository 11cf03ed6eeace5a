"""The conversation as the call's own log tells it — used to re-seed a new model session.

A model socket can drop, and a session ends after 60 minutes, while the caller stays on the line.
The new session must know what was said. ``ConversationMemory`` is a fold over the call's recorded
events (fed by the call's recorder, so it survives a crash of the model task), and ``seed_items``
turns it into the GA ``conversation.item.create`` items that rebuild the conversation: caller
transcripts, assistant transcripts cut where the caller interrupted them, function calls and their
outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from callbridge.engine.events import (
    BargeInDecided,
    Event,
    ModelEventReceived,
    ModelEventSent,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.tool_wait import is_tool_wait_response

_json = msgspec.json.Decoder()


@dataclass
class MemoryItem:
    item_id: str
    kind: str  # user | assistant | function_call | function_call_output
    text: str = ""
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    output: str = ""
    heard_fraction: float = 1.0
    """For assistant items cut by a barge-in: the share of the audio the caller heard."""


class ConversationMemory:
    """Items in conversation order, plus the tool calls still waiting for an output."""

    def __init__(self) -> None:
        self.items: dict[str, MemoryItem] = {}
        self._out_of_band: set[str] = set()
        """Responses that were spoken but are not part of the conversation ("one moment…")."""
        self.pending_tool_calls: dict[str, str] = {}
        """tool_call_id -> tool name, for calls requested and not yet answered."""

    def apply(self, event: Event) -> None:
        if isinstance(event, ModelEventReceived):
            self._apply_server(event.type, event.raw)
        elif isinstance(event, ModelEventSent) and event.type == "conversation.item.create":
            item = _json.decode(event.raw).get("item") or {}
            if item.get("type") == "function_call_output":
                key = f"output:{item.get('call_id', '')}"
                self.items[key] = MemoryItem(
                    key,
                    "function_call_output",
                    call_id=str(item.get("call_id", "")),
                    output=str(item.get("output", "")),
                )
        elif isinstance(event, ToolCallRequested):
            self.pending_tool_calls[event.tool_call_id] = event.name
        elif isinstance(event, ToolCallCompleted | ToolCallFailed):
            self.pending_tool_calls.pop(event.tool_call_id, None)
        elif isinstance(event, BargeInDecided) and event.item_id and event.audio_end_ms is not None:
            # The decision comes before the cancelled response's transcript: remember the cut now.
            if event.received_ms > 0:
                item = self._ensure(event.item_id, "assistant")
                item.heard_fraction = min(1.0, event.audio_end_ms / event.received_ms)

    def _apply_server(self, kind: str, raw: str) -> None:
        # Items are learnt from the events of real turns only (transcripts, finished function calls):
        # ``conversation.item.added`` also echoes the items a re-seed creates, under new ids.
        if kind == "conversation.item.input_audio_transcription.completed":
            data = _json.decode(raw)
            item = self._ensure(str(data.get("item_id", "")), "user")
            item.text = str(data.get("transcript") or "")
        elif kind == "response.created":
            response = _json.decode(raw).get("response") or {}
            if is_tool_wait_response(response.get("metadata")):
                self._out_of_band.add(str(response.get("id", "")))
        elif kind == "response.output_audio_transcript.done":
            data = _json.decode(raw)
            if data.get("response_id") in self._out_of_band:
                return
            item = self._ensure(str(data.get("item_id", "")), "assistant")
            item.text = str(data.get("transcript") or "")
        elif kind == "response.output_text.done":
            data = _json.decode(raw)
            item = self._ensure(str(data.get("item_id", "")), "assistant")
            item.text = str(data.get("text") or "")
        elif kind == "response.function_call_arguments.done":
            data = _json.decode(raw)
            item = self._ensure(str(data.get("item_id", "")), "function_call")
            item.call_id = str(data.get("call_id", ""))
            item.name = str(data.get("name", ""))
            item.arguments = str(data.get("arguments", ""))

    def _ensure(self, item_id: str, kind: str) -> MemoryItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = MemoryItem(item_id, kind)
        return item

    def seed_items(self) -> list[dict[str, Any]]:
        """GA items for ``conversation.item.create``, oldest first, that retell this conversation."""
        seeds: list[dict[str, Any]] = []
        for item in self.items.values():
            if item.kind == "user" and item.text:
                seeds.append(
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": item.text}],
                    }
                )
            elif item.kind == "assistant" and item.text:
                text = item.text
                if item.heard_fraction < 1.0:
                    text = text[: int(len(text) * item.heard_fraction)].rstrip() + " —"
                seeds.append(
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text}],
                    }
                )
            elif item.kind == "function_call" and item.call_id:
                seeds.append(
                    {
                        "type": "function_call",
                        "call_id": item.call_id,
                        "name": item.name,
                        "arguments": item.arguments or "{}",
                    }
                )
            elif item.kind == "function_call_output" and item.call_id:
                seeds.append({"type": "function_call_output", "call_id": item.call_id, "output": item.output})
        return seeds
