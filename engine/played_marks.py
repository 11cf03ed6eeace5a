"""Mark echoes gathered per item for half a second: one ``AssistantAudioPlayed`` per run — pure.

Why: the engine sends a Twilio ``mark`` after every audio delta, and Twilio echoes each one as the
caller hears it: about ten echoes a second while the assistant speaks with 100 ms deltas. One
``AssistantAudioPlayed`` per echo was over a third of an hour-long call's log (17,880 of 49,071
events) and a fifth of what a busy engine wrote (issue 12: CPU per call, the read side). No view
folds them: they are the log's account of how far the caller had heard each item. So the echoes of
one item are held and recorded as one event: ``marks`` and ``played_bytes`` summed,
``total_played_bytes`` and ``at`` the last echo's ("by then, this much of the item was heard"). Readers
sum ``played_bytes`` or take the last total anyway, so a log recorded with one event per echo reads
the same.

When held echoes go out (``call_outbox.Outbox``): before any event the core records that is not one of
the streams (``transcript_words.rides_along``), so a ``BargeInDecided``, a ``PlaybackCleared``, the end
of the response or of the call come after what had been heard; when an echo of another item comes;
and at the writer's batch once the first echo held is half a second old (``CALLER_HAND_OVER_S``, as
the caller's audio), so a ``kill -9`` loses at most that much of the account.
"""

from __future__ import annotations

import msgspec

from callbridge.engine.events import AssistantAudioPlayed


class PlayedMarks:
    """The echoes of one item held since the first of them (``first_at``)."""

    __slots__ = ("_held", "first_at")

    def __init__(self) -> None:
        self._held: AssistantAudioPlayed | None = None
        self.first_at = 0.0

    def __bool__(self) -> bool:
        return self._held is not None

    def hold(self, played: AssistantAudioPlayed) -> AssistantAudioPlayed | None:
        """Hold ``played``; returns the event to record first when it is of another item than those held."""
        held = self._held
        if held is not None and held.item_id == played.item_id:
            self._held = msgspec.structs.replace(
                played,
                marks=held.marks + played.marks,
                played_bytes=held.played_bytes + played.played_bytes,
            )
            return None
        self._held, self.first_at = played, played.at
        return held

    def release(self) -> AssistantAudioPlayed | None:
        """The one event for the echoes held (None: none), and nothing held any more."""
        held, self._held = self._held, None
        return held
