"""How far the log is known to reach, and who waits for it: the event writer's waiting side.

Why apart from ``engine/store_writer.py``: writing batches and waking readers share only the positions
written. Readers wait here in three ways: for a position of their own to be written (read-your-writes,
:meth:`AppendMarks.wait_for`); for anything beyond a position; or for a batch holding some event
classes only (a follower of rare events — operator commands, erasures — is not woken ten times a
second by batches of audio it would read only to skip). The last two come in two kinds: this writer's
batches alone, or also whatever a poll of the store found other processes appended
(:meth:`AppendMarks.note_head`), for a follower that then needs no poll of its own
(``projections.appends``).
"""

from __future__ import annotations

from collections.abc import Iterable

from callbridge.engine.events import Event
from callbridge.engine.watermark import Watermark

Marks = dict[frozenset[str], Watermark]
"""Per set of topics someone waits for: the last position known to hold one of them."""


class AppendMarks:
    """The writer's positions, and the waiters for them. Trio-only, as :class:`Watermark` is."""

    def __init__(self) -> None:
        self.head = Watermark()
        """The last position this writer wrote (or the store's head, read as it started)."""
        self._seen = Watermark()
        """The head as this process knows it: this writer's writes, and other processes' appends once a
        poll of the store found them (:meth:`note_head`)."""
        self._marks_of: Marks = {}
        self._seen_of: Marks = {}
        """As ``_marks_of``, also moved by :meth:`note_head`."""
        self._accounted = 0
        """Every position up to here is known by name: this writer's batches, what was there as it
        started, or a poll that woke every waiter. A poll that finds the head here or below found
        nothing from other processes (on PostgreSQL a NOTIFY follows this writer's own inserts too)."""

    def loaded(self, position: int) -> None:
        """The store's head, read as the writer started."""
        self.head.advance(position)
        self._seen.advance(position)
        self._accounted = max(self._accounted, position)

    def written(self, position: int, topics: Iterable[str], count: int = 0) -> None:
        """A batch of ``count`` events of these topics was written, up to ``position``. One batch is one
        transaction, whose positions no other process's can interleave: when it starts right after
        the accounted ones, everything up to ``position`` is known."""
        if count and position - count == self._accounted:
            self._accounted = position
        self.head.advance(position)
        self._seen.advance(position)
        if self._marks_of or self._seen_of:
            held = set(topics)
            for marks in (self._marks_of, self._seen_of):
                for wanted, mark in marks.items():
                    if not wanted.isdisjoint(held):
                        mark.advance(position)

    def note_head(self, head: int) -> None:
        """A poll of the store found its head moved to ``head``: wake every polled waiter it is beyond,
        whatever names it waits for. What other processes appended is not known by name, and may lie
        below this writer's own last batch (written between two polls), so every mark moves, not only
        when ``head`` is beyond what this writer wrote — unless every position up to ``head`` is
        already known (this writer's own batches, one after the other): then nobody is woken."""
        if head <= self._accounted:
            return
        self._accounted = head
        self._seen.advance(head)
        for mark in self._seen_of.values():
            mark.advance(head)

    async def wait_for(self, position: int) -> None:
        """Return once this writer knows ``position`` is written."""
        await self.head.wait_for(position)

    async def wait_appended(self, after: int, names: Iterable[str] | None = None, *, polls: bool = False) -> int:
        """Return the head as soon as it is beyond ``after``: this writer's batches (only those holding
        one of ``names``, event class names, when given), and with ``polls`` also a poll's
        :meth:`note_head`."""
        head, marks = (self._seen, self._seen_of) if polls else (self.head, self._marks_of)
        if names is None:
            return await head.wait_beyond(after)
        await _mark_of(names, marks, head.value).wait_beyond(after)
        return head.value


def _mark_of(names: Iterable[str], marks: Marks, head: int) -> Watermark:
    """The mark of the last batch holding an event of ``names``; a new one starts at ``head``, so a
    reader behind the head when it first waits is woken at once (it may have missed a batch)."""
    wanted = frozenset(Event.registry[name].topic() for name in names)
    mark = marks.get(wanted)
    if mark is None:
        mark = marks[wanted] = Watermark(head)
    return mark
