"""The model's side of a synthetic call log (``engine/synthetic.py``): its events verbatim, each
followed by the typed facts the engine records beside it (``engine/model_facts.py``), on the log's
virtual clock. Kept apart so the call's story (``CallLog``) reads as a script."""

from __future__ import annotations

import math
from typing import Any, Self

import msgspec

from callbridge.adapters.openai.server_objects import Usage
from callbridge.engine.events import (
    AssistantSaid,
    Event,
    ModelEventReceived,
    ModelEventSent,
    ResponseFinished,
    ResponseItemAdded,
    ResponseStarted,
    TranscriptDelta,
)
from callbridge.engine.usage import TOKEN_KINDS, usage_tokens

_encode = msgspec.json.Encoder()


class ModelEventLog:
    """A call's events so far, its clock (``ms`` since ``start_at``) and the model's events."""

    def __init__(self, call_id: str, start_at: float) -> None:
        self.call_id = call_id
        self.start_at = start_at
        self.events: list[Event] = []
        self.ms = 0
        self._counter = 0
        self._last_item: str | None = None

    def wait(self, ms: int) -> Self:
        """Let ``ms`` pass (``CallLog`` streams the caller's audio meanwhile)."""
        self.ms += ms
        return self

    def _at(self) -> float:
        return self.start_at + self.ms / 1000

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self.call_id[-6:]}{self._counter:04d}"

    def _add(self, event: Event) -> None:
        self.events.append(event)

    def _received(self, kind: str, **fields: Any) -> None:
        raw = _encode.encode({"type": kind, "event_id": self._id("event"), **fields}).decode()
        self._add(ModelEventReceived(call_id=self.call_id, at=self._at(), type=kind, raw=raw))

    def _content(self, kind: str, response_id: str, item_id: str, **fields: Any) -> None:
        """A server event about the content of the response's (only) item."""
        self._received(kind, response_id=response_id, item_id=item_id, output_index=0, content_index=0, **fields)

    def _conversation_item(self, kind: str, item: dict[str, Any], previous: str | None) -> None:
        """``conversation.item.added``/``done``: the model says where the item sits (after
        ``previous_item_id``; the conversation's first item has none)."""
        placed = {} if previous is None else {"previous_item_id": previous}
        self._received(kind, item=item, **placed)

    def _created(self, item: dict[str, Any]) -> None:
        """The model adds an item the engine created (``conversation.item.create``) last in its
        conversation, under an id of its own."""
        added = {"id": self._id("item"), "object": "realtime.item", "status": "completed", **item}
        previous = self._placed(str(added["id"]))
        self._conversation_item("conversation.item.added", added, previous)
        self._conversation_item("conversation.item.done", added, previous)

    def _placed(self, item_id: str) -> str | None:
        """Put ``item_id`` last in the conversation; returns the item before it."""
        previous, self._last_item = self._last_item, item_id
        return previous

    def _sent(self, kind: str, **fields: Any) -> None:
        raw = _encode.encode({"type": kind, **fields}).decode()
        self._add(ModelEventSent(call_id=self.call_id, at=self._at(), type=kind, raw=raw))

    def _response_started(self, response_id: str) -> None:
        self._received("response.created", response={"id": response_id, "status": "in_progress", "output": []})
        self._add(ResponseStarted(call_id=self.call_id, at=self._at(), response_id=response_id))
        limits = [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 39880, "reset_seconds": 0.3},
        ]
        self._received("rate_limits.updated", rate_limits=limits)

    def _item_added(self, response_id: str, item: dict[str, Any]) -> str | None:
        """The response's item: ``response.output_item.added``, its fact, then the conversation's
        ``conversation.item.added``; returns the item before it (for its ``conversation.item.done``)."""
        self._received("response.output_item.added", response_id=response_id, output_index=0, item=item)
        fields = {"role": item.get("role", ""), "name": item.get("name", ""), "tool_call_id": item.get("call_id", "")}
        self._add(
            ResponseItemAdded(
                call_id=self.call_id,
                at=self._at(),
                response_id=response_id,
                item_id=str(item["id"]),
                item_type=str(item["type"]),
                **{key: str(value) for key, value in fields.items()},
            )
        )
        previous = self._placed(str(item["id"]))
        self._conversation_item("conversation.item.added", item, previous)
        return previous

    def _response_done(self, response_id: str, status: str, audio_ms: int, chars: int, reason: str = "") -> None:
        audio_tokens = math.ceil(audio_ms / 50)
        usage = {
            "total_tokens": 120 + audio_tokens + chars // 4,
            "input_tokens": 120,
            "output_tokens": audio_tokens + chars // 4,
            "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "cached_tokens": 64},
            "output_token_details": {"text_tokens": chars // 4, "audio_tokens": audio_tokens},
        }
        details = {"type": status, "reason": reason} if reason else None
        self._received(
            "response.done",
            response={"id": response_id, "status": status, "status_details": details, "output": [], "usage": usage},
        )
        tokens = usage_tokens(msgspec.convert(usage, Usage))
        self._add(
            ResponseFinished(
                call_id=self.call_id,
                at=self._at(),
                response_id=response_id,
                status=status,
                tokens=dict(zip(TOKEN_KINDS, tokens, strict=True)),
            )
        )

    def _transcript_deltas(self, response_id: str, item_id: str, text: str) -> None:
        """The model streams the transcript a word at a time; the engine records the words of one
        writer window (all of them here: they come at once) as one ``TranscriptDelta``."""
        words = []
        for index, word in enumerate(text.split()):
            delta = word if index == 0 else " " + word
            self._content("response.output_audio_transcript.delta", response_id, item_id, delta=delta)
            words.append(delta)
        if words:
            self._add(
                TranscriptDelta(
                    call_id=self.call_id,
                    at=self._at(),
                    item_id=item_id,
                    role="assistant",
                    delta="".join(words),
                    response_id=response_id,
                )
            )

    def _answer_done(
        self, response_id: str, item: dict[str, Any], previous: str | None, transcript: str, status: str
    ) -> None:
        """The model closes the answer's audio, transcript, content part and item."""
        item_id = str(item["id"])
        self._content("response.output_audio.done", response_id, item_id)
        self._content("response.output_audio_transcript.done", response_id, item_id, transcript=transcript)
        self._add(
            AssistantSaid(
                call_id=self.call_id, at=self._at(), item_id=item_id, response_id=response_id, text=transcript
            )
        )
        part = {"type": "audio", "transcript": transcript}
        self._content("response.content_part.done", response_id, item_id, part=part)
        content = [{"type": "output_audio", "transcript": transcript}]
        done_item = {**item, "status": status, "content": content}
        self._received("response.output_item.done", response_id=response_id, output_index=0, item=done_item)
        self._conversation_item("conversation.item.done", done_item, previous)
