"""Reading the event log for projections: only the topics they fold, up to a known head.

Why not ``EventStore.read_all``: it decodes every event, and most of a call's log is audio
(caller chunks, playback echoes) that no view reads. Here the recorder is asked for the wanted
topics only (``select_notifications(..., topics=...)``, a ``topic IN (...)`` filter in SQL), so
audio rows are never fetched or decoded. Each page also says how far the log was *scanned*
(``reached``), which may be beyond the last event returned: projections record that, so their
position is the log's head once they are caught up, and waiting for "anything after my position"
works.

The rows come from ``EventStore.log_rows`` (one SQL statement per backend, ``engine/store_rows.py``),
plain tuples rather than the recorder's notifications, which cost a ``uuid.UUID`` each.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from callbridge.engine.events import Event, ModelEventReceived
from callbridge.engine.store import EventStore, RecordedEvent
from callbridge.projections.legacy_facts import DERIVED, LEGACY_TOPICS, expand


class Page(NamedTuple):
    events: list[RecordedEvent]
    reached: int
    """Every event with a position up to here has been considered (returned or filtered out)."""


def stored_topics(names: Iterable[str]) -> tuple[str, ...]:
    """Every stored topic (``Name@version``, all versions up to the current one) of these event names.

    Raises ``KeyError`` naming an unknown event class.
    """
    topics: list[str] = []
    for name in sorted(set(names)):
        try:
            cls = Event.registry[name]
        except KeyError:
            raise KeyError(f"no event class named {name!r} in engine.events") from None
        topics.extend(f"{name}@{version}" for version in range(1, cls.schema_version + 1))
    return tuple(topics)


class LogSource:
    """Pages of the log restricted to some event classes (all of them when ``names`` is None).

    Asked for a typed conversation fact (``legacy_facts.DERIVED``), it also reads the model events
    of logs recorded before all the facts existed (``ModelEventReceived@1`` and ``@2`` only: today's
    model events are never fetched for it) and hands over the facts derived from them, at their
    position."""

    def __init__(
        self, store: EventStore, names: Iterable[str] | None = None, *, clear_only: Iterable[str] = ()
    ) -> None:
        """``clear_only``: event classes whose personal fields no reader of these pages reads
        (``Projection.clear_only``): they are left sealed."""
        self._store = store
        wanted = None if names is None else set(names)
        self._topics = () if wanted is None else stored_topics(wanted)
        self._sealed = frozenset(stored_topics(clear_only))
        self._derive = wanted is not None and not wanted.isdisjoint(DERIVED)
        self._keep_model_events = wanted is None or ModelEventReceived.__name__ in wanted
        if self._derive:
            self._topics = (*self._topics, *(topic for topic in LEGACY_TOPICS if topic not in self._topics))

    def head(self) -> int:
        """The highest position in the log."""
        return self._store.head()

    def next_page(self, after: int, limit: int) -> tuple[Page, int]:
        """The next page after ``after`` up to the head as it is now, and that head: what a follower
        reads in each step, in one call so that it costs one trip to a worker thread, not two (a
        follower with nothing new used to make two a poll, every 0.5 s)."""
        head = self.head()
        return self.page(after, head, limit), head

    def page(self, after: int, head: int, limit: int) -> Page:
        """Up to ``limit`` wanted events with ``after < position <= head``, in order."""
        if head <= after:
            return Page([], after)
        rows = self._store.log_rows(after, head, self._topics, limit)
        events: list[RecordedEvent] = []
        decode, sealed = self._store.decode_row, self._sealed
        for row in rows:
            # opened with the call's key (placeholders once erased), redacted as configured; an
            # undecodable row is skipped with a warning by the store
            recorded = decode(row.position, row.version, row.topic, row.state, sealed=row.topic in sealed)
            if recorded is not None:
                events.append(recorded)
        if self._derive:
            events = list(expand(events, keep_model_events=self._keep_model_events))
        reached = head if len(rows) < limit else rows[-1].position
        return Page(events, reached)
