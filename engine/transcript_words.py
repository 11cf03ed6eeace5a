"""Transcript deltas gathered per writer window: one ``TranscriptDelta`` per item and window — pure.

Why: the model streams a transcript a word or two at a time, many deltas a second per item. One
``TranscriptDelta`` per delta was an eighth of a call's log and half of what the views folded
(issue 12: the read side's figures). So the words of one item that arrive within one window of the
store's writer (``AudioFlushDue``, every 100 ms, as caller audio is chunked) are held and recorded
as one event: its ``delta`` the pieces joined, its ``at`` the first piece's. Readers join deltas
anyway, so a log recorded with one event per piece (before this) folds the same. The model's own
delta events are still recorded verbatim, each as it comes (the live feed streams them).

Order: held words go out before any other event the core records, so whatever is said about the
item next (its whole text, its truncation, the end of its response, a lost session, the call's
end) comes after its words. Only the events that stream beside the words let them wait: the
model's verbatim transcript deltas and the audio chunks (:func:`rides_along`).
"""

from __future__ import annotations

import msgspec

from callbridge.adapters.openai import server_events as se
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallerAudioReceived,
    Event,
    ModelEventReceived,
    TranscriptDelta,
)

DELTA_TYPES: frozenset[str] = se.wire_types(
    se.ResponseOutputAudioTranscriptDelta, se.ResponseOutputTextDelta, se.InputAudioTranscriptionDelta
)
"""The model's transcript delta events (recorded verbatim, each followed by its words)."""

STREAMED = (CallerAudioReceived, AssistantAudioSent, AssistantAudioPlayed)
"""Audio chunks: recorded as the audio flows, in between the words."""


def rides_along(event: Event) -> bool:
    """True for the events that may be recorded while words are held (see the module docstring)."""
    if isinstance(event, ModelEventReceived):
        return event.type in DELTA_TYPES
    return isinstance(event, STREAMED)


class TranscriptWords:
    """The words held since the last window, by item (in the order the items first spoke)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[tuple[str, str, str], tuple[TranscriptDelta, list[str]]] = {}

    def __bool__(self) -> bool:
        return bool(self._held)

    def hold(self, delta: TranscriptDelta) -> None:
        key = (delta.item_id, delta.role, delta.response_id)
        held = self._held.get(key)
        if held is None:
            self._held[key] = (delta, [delta.delta])
        else:
            held[1].append(delta.delta)

    def release(self) -> list[TranscriptDelta]:
        """One event per item for the words held, and nothing held any more."""
        released = [
            first if len(pieces) == 1 else msgspec.structs.replace(first, delta="".join(pieces))
            for first, pieces in self._held.values()
        ]
        self._held.clear()
        return released
