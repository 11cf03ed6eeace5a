"""The conversation as the call's own log tells it — used to re-seed a new model session.

A model socket can drop, and a session ends after 60 minutes, while the caller stays on the line.
The new session must know what was said. ``ConversationMemory`` is a fold over the call's typed
facts (fed by the call core as it records them, so it is exactly what the log says): what the caller
said (``CallerSaid``), what the assistant said (``AssistantSaid``) and where the caller cut it off
(``BargeInDecided``), the function calls (``ToolCallRequested``) and their outputs
(``ToolCallCompleted``/``ToolCallFailed``). ``seed_items`` turns it into the GA
``conversation.item.create`` items that rebuild the conversation. No model JSON is parsed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from callbridge.engine.events import (
    AssistantSaid,
    BargeInDecided,
    CallerSaid,
    Event,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)


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
        self.pending_tool_calls: dict[str, str] = {}
        """tool_call_id -> tool name, for calls requested and not yet answered."""

    def apply(self, event: Event) -> None:
        kind = type(event)
        if kind is CallerSaid:
            self._ensure(event.item_id, "user").text = event.text  # type: ignore[attr-defined]
        elif kind is AssistantSaid:
            if not event.out_of_band:  # type: ignore[attr-defined]
                self._ensure(event.item_id, "assistant").text = event.text  # type: ignore[attr-defined]
        elif kind is ToolCallRequested:
            assert isinstance(event, ToolCallRequested)
            item = self._ensure(event.item_id or f"call:{event.tool_call_id}", "function_call")
            item.call_id, item.name, item.arguments = event.tool_call_id, event.name, event.arguments
            self.pending_tool_calls[event.tool_call_id] = event.name
        elif kind is ToolCallCompleted or kind is ToolCallFailed:
            assert isinstance(event, ToolCallCompleted | ToolCallFailed)
            self.pending_tool_calls.pop(event.tool_call_id, None)
            key = f"output:{event.tool_call_id}"
            self.items[key] = MemoryItem(key, "function_call_output", call_id=event.tool_call_id, output=event.output)
        elif kind is BargeInDecided:
            assert isinstance(event, BargeInDecided)
            # The decision comes before the cancelled response's transcript: remember the cut now.
            if event.item_id and event.audio_end_ms is not None and event.received_ms > 0:
                item = self._ensure(event.item_id, "assistant")
                item.heard_fraction = min(1.0, event.audio_end_ms / event.received_ms)

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
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": item.text}]}
                )
            elif item.kind == "assistant" and item.text:
                text = item.text
                if item.heard_fraction < 1.0:
                    text = text[: int(len(text) * item.heard_fraction)].rstrip() + " —"
                seeds.append(
                    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
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
