"""Where a call's core puts its outputs while it handles one input (``engine/call_io.py`` names them).

The core and its parts (``engine/assistant_audio.py``, …) append to one ``Outbox`` in the order they
decide; the core hands the list back from ``CallCore.handle``. Recording goes through it too, so the
call's conversation memory folds exactly what the log gets, and so the two gathered streams (transcript
words, mark echoes) are released in their place.
"""

from __future__ import annotations

from typing import Any

from callbridge.engine.call_io import Output, Record, SendToCaller, SendToModel
from callbridge.engine.events import AssistantAudioPlayed, Event, TranscriptDelta
from callbridge.engine.played_marks import PlayedMarks
from callbridge.engine.transcript_words import TranscriptWords, rides_along


class Outbox:
    """Where the core and its parts put outputs while handling one input, in the order decided.

    ``record`` also folds the event into the call's conversation memory (``fold``), so the memory a
    re-seeded session is told is exactly what the log says. Two streams are held and recorded gathered:
    transcript deltas, one per item and writer window (``engine/transcript_words.py``), and mark echoes,
    one per item and half second (``engine/played_marks.py``). :meth:`release` hands them over, at the
    writer's window and before any event that must come after them."""

    __slots__ = ("fold", "now", "outputs", "played", "words")

    def __init__(self, fold: Any) -> None:
        self.outputs: list[Output] = []
        self.now = 0.0
        self.fold = fold
        self.words = TranscriptWords()
        self.played = PlayedMarks()

    def take(self) -> list[Output]:
        outputs, self.outputs = self.outputs, []
        return outputs

    def record(self, event: Event) -> None:
        if type(event) is TranscriptDelta:
            self.words.hold(event)
        elif type(event) is AssistantAudioPlayed:
            self._append(self.played.hold(event))  # an earlier item's echoes, if any
        else:
            if (self.words or self.played) and not rides_along(event):
                self.release()
            self._append(event)

    def release(self, played_age_s: float = 0.0) -> None:
        """Record the mark echoes held, if the first is ``played_age_s`` old, and the words held."""
        played = self.played
        if played and self.now - played.first_at >= played_age_s:
            self._append(played.release())
        for event in self.words.release():
            self._append(event)

    def _append(self, event: Event | None) -> None:
        if event is not None:
            self.outputs.append(Record(event=event))
            self.fold(event)

    def to_caller(self, *frames: str) -> None:
        self.outputs.append(SendToCaller(frames=frames))

    def to_model(self, text: str, session: int, *, audio: bool = False) -> None:
        self.outputs.append(SendToModel(text=text, session=session, audio=audio))

    def emit(self, output: Output) -> None:
        self.outputs.append(output)
