"""The simulated model's conversation: ordered items plus what the wire does not show.

Besides the protocol ``Item`` each entry keeps its audio length (caller audio committed, or
assistant audio generated — the bound for ``conversation.item.truncate``) and, for user messages,
the script turn it stands for. Also here: ids in the real formats, token estimates for ``usage``,
and the ``error`` event builder, which every part of the fake uses.
"""

from __future__ import annotations

import itertools
import random
import string

import msgspec

from callbridge.adapters.openai.server_events import ErrorDetail, ErrorEvent, Item

_ALPHABET = string.ascii_letters + string.digits


class Ids:
    """Ids shaped like the real ones (``item_…``, ``resp_…``, ``call_…``, ``event_…``)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._events = itertools.count(1)
        self._event_prefix = "event_" + self._token(10)

    def _token(self, size: int) -> str:
        return "".join(self._random.choices(_ALPHABET, k=size))

    def new(self, prefix: str) -> str:
        return f"{prefix}_{self._token(20)}"

    def event(self) -> str:
        return f"{self._event_prefix}{next(self._events):06d}"


def error_event(
    ids: Ids,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    client_event_id: str | None = None,
) -> ErrorEvent:
    return ErrorEvent(
        event_id=ids.event(),
        error=ErrorDetail(type=error_type, code=code, message=message, param=param, event_id=client_event_id),
    )


class StoredItem(msgspec.Struct, kw_only=True):
    item: Item
    audio_ms: int = 0
    """User audio committed, or assistant audio generated (then truncated) for this item."""
    turn: int | None = None
    """For user messages: which script turn this is. For function calls: the turn they answer."""

    @property
    def id(self) -> str:
        return self.item.id or ""


def text_tokens(text: str) -> int:
    """Rough token count of text (4 characters per token)."""
    return (len(text) + 3) // 4


def item_tokens(stored: StoredItem) -> tuple[int, int]:
    """(text tokens, audio tokens) an item contributes to a response's input. Audio costs ~10
    tokens/s for caller audio and ~20 tokens/s for the model's own."""
    item = stored.item
    if item.type == "function_call":
        return text_tokens((item.name or "") + (item.arguments or "")), 0
    if item.type == "function_call_output":
        return text_tokens(item.output or ""), 0
    text = sum(text_tokens(part.text or part.transcript or "") for part in item.content or [])
    if item.role == "assistant":
        return text, -(-stored.audio_ms // 50)
    return text, -(-stored.audio_ms // 100)


class Conversation:
    def __init__(self) -> None:
        self.items: list[StoredItem] = []

    def get(self, item_id: str) -> StoredItem | None:
        for stored in self.items:
            if stored.id == item_id:
                return stored
        return None

    def last_id(self) -> str | None:
        return self.items[-1].id if self.items else None

    def insert(self, stored: StoredItem, previous_item_id: str | None = None) -> str | None:
        """Add ``stored`` after ``previous_item_id`` (``"root"``: first; None: last) and return the
        id of the item now before it. Raises ``KeyError`` for an unknown ``previous_item_id``."""
        if previous_item_id is None:
            previous = self.last_id()
            self.items.append(stored)
            return previous
        if previous_item_id == "root":
            self.items.insert(0, stored)
            return None
        for index, existing in enumerate(self.items):
            if existing.id == previous_item_id:
                self.items.insert(index + 1, stored)
                return previous_item_id
        raise KeyError(previous_item_id)

    def delete(self, item_id: str) -> bool:
        for index, stored in enumerate(self.items):
            if stored.id == item_id:
                del self.items[index]
                return True
        return False

    def user_turns(self) -> int:
        """How many user messages the conversation holds (the next caller turn's index)."""
        return sum(1 for s in self.items if s.item.type == "message" and s.item.role == "user")

    def function_call(self, call_id: str) -> StoredItem | None:
        for stored in self.items:
            if stored.item.type == "function_call" and stored.item.call_id == call_id:
                return stored
        return None

    def input_tokens(self) -> tuple[int, int]:
        text = audio = 0
        for stored in self.items:
            t, a = item_tokens(stored)
            text += t
            audio += a
        return text, audio
