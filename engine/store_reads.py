"""The event store's read side: a call whole, in pages or its tail, the whole log, one row opened.

Why apart: :class:`engine.store.EventStore` is one object for its callers (``store.read_call``), but
reading and writing share only the connections (``engine/store_connections.py``: each read holds them
while it runs, so a reopen never closes them under it) and the sealer. The writing side — numbering a call's
events, sealing, retrying — lives in ``engine/store.py``; everything here reads rows
(``engine/store_rows.py``, with their positions) and opens them (``engine.crypto.Sealer``), skipping
with a warning, once, any stored event this code cannot decode. ``EventStore`` is a
:class:`StoreReads`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import msgspec

from callbridge.engine.crypto import Reading, Sealer
from callbridge.engine.events import Event
from callbridge.engine.store_connections import Connections
from callbridge.engine.store_rows import Row, RowTuple, call_originator_id

logger = logging.getLogger("callbridge.engine.store")
"""The store's logger: a skipped event is the store's warning, wherever the reading code lives."""

_MAX_WARNED = 10_000


class RecordedEvent(msgspec.Struct, frozen=True):
    """An event as read back from the store."""

    position: int
    """Global notification id: increasing across all calls (gaps are possible on PostgreSQL)."""
    version: int
    """1-based index of the event within its call."""
    event: Event
    erased: bool = False
    """The event's personal fields read as placeholders: its call was erased (its key is gone)."""


class StoreReads:
    """Reading the log back; the connections, the sealer and the open check are the store's own."""

    _connections: Connections
    _warned: set[int]
    sealer: Sealer

    def last_version(self, call_id: str) -> int:
        raise NotImplementedError

    def read_call(self, call_id: str) -> list[RecordedEvent]:
        """All stored events of one call, in version order."""
        with self._connections.use() as opening:
            rows = opening.rows.call_rows(call_originator_id(call_id))
        reading = Reading()
        decoded = (self.decode_row(r.position, r.version, r.topic, r.state, reading=reading) for r in rows)
        return [recorded for recorded in decoded if recorded is not None]

    def call_pages(
        self, call_id: str, size: int = 1000, *, after_version: int = -1, through_version: int | None = None
    ) -> Iterator[list[RowTuple]]:
        """The stored rows of one call, in version order, undecoded, ``size`` at a time: for a reader
        of a whole call that writes as it reads (``replay --json``: an hour's call is 80 MB of rows),
        which opens them itself (``sealer.open_parts``, or :meth:`decode_row`). Each page is read on its
        own (events appended meanwhile are read too). ``after_version`` / ``through_version``: only the
        versions in that range (a part of the call, for a reader that splits it)."""
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        oid = call_originator_id(call_id)
        after = after_version
        while True:
            with self._connections.use() as opening:
                rows = opening.rows.call_rows_from(oid, after, size)
            if through_version is not None and rows and rows[-1][1] > through_version:
                rows = [row for row in rows if row[1] <= through_version]
                if rows:
                    yield rows
                return
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1][1]

    def read_call_tail(self, call_id: str, count: int) -> list[RecordedEvent]:
        """The last ``count`` stored events of one call, in version order: how a long call stands now
        without reading all of it."""
        last = self.last_version(call_id)
        if not last:
            return []
        with self._connections.use() as opening:
            rows = opening.rows.call_rows(call_originator_id(call_id), gt=last - count)
        decoded = (self.decode_row(r.position, r.version, r.topic, r.state) for r in rows)
        return [recorded for recorded in decoded if recorded is not None]

    def read_call_page(self, call_id: str, *, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` stored events of one call after the one at position ``after`` (0: from the
        start), in the call's order: a page of a long call without reading the rest of it. Fewer than
        ``limit`` means the call has no more (undecodable events are passed over, not counted).

        The cursor is a position (the API's), the order the call's versions: the position is turned
        into its version, so paging never skips an event even were a call's versions stored out of
        position order (its own writer never does)."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        oid = call_originator_id(call_id)
        with self._connections.use() as opening:
            after_version = opening.rows.call_version_at(oid, after) if after > 0 else 0
        page: list[RecordedEvent] = []
        while len(page) < limit:
            wanted = limit - len(page)
            with self._connections.use() as opening:
                rows = opening.rows.call_rows_from(oid, after_version, wanted)
            for position, version, topic, state in rows:
                recorded = self.decode_row(position, version, topic, state)
                if recorded is not None:
                    page.append(recorded)
            if len(rows) < wanted:
                break
            after_version = rows[-1][1]
        return page

    def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Up to ``limit`` events with ``position > after``, in position order.

        An empty list means nothing is stored after ``after``: a page made only of undecodable
        events is passed over rather than returned empty.
        """
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        start = after
        while True:
            with self._connections.use() as opening:
                recorder = opening.recorder
                notifications = recorder.select_notifications(start=start, limit=limit, inclusive_of_start=False)
            result = [
                recorded
                for n in notifications
                if (recorded := self.decode_row(n.id, n.originator_version, n.topic, n.state)) is not None
            ]
            if result or len(notifications) < limit:
                return result
            start = notifications[-1].id

    def log_rows(self, after: int, stop: int, topics: tuple[str, ...] = (), limit: int = 1000) -> list[Row]:
        """Up to ``limit`` stored rows with ``after < position <= stop`` and one of ``topics``
        (``Name@version``; all when empty), in position order, undecoded (:meth:`decode_row` opens
        one): for readers of the whole log that want few of its topics (``projections.source``)."""
        with self._connections.use() as opening:
            return opening.rows.log_rows(after, stop, topics, limit)

    def decode_row(
        self,
        position: int,
        version: int,
        topic: str,
        state: bytes,
        *,
        sealed: bool = False,
        reading: Reading | None = None,
    ) -> RecordedEvent | None:
        """One stored row as an event — opened with its call's key, redacted as configured — or None
        (with a warning, once) when it cannot be decoded. For readers of raw rows (``projections.source``).
        ``sealed``: leave its personal fields sealed (``Sealer.clear``), for a reader that never reads
        them; they read as placeholders, and ``erased`` is not looked into (False). ``reading``: the read
        the row is one of (``engine.crypto.Reading``)."""
        try:
            if sealed:
                return RecordedEvent(position=position, version=version, event=self.sealer.clear(topic, state))
            event, erased = self.sealer.open(topic, state, reading=reading)
        except Exception as exc:
            if position not in self._warned and len(self._warned) < _MAX_WARNED:
                self._warned.add(position)
                logger.warning("skipping undecodable stored event %d (%r): %r", position, topic, exc)
            return None
        return RecordedEvent(position=position, version=version, event=event, erased=erased)
