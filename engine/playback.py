"""Mark accounting and the barge-in decision — pure, no I/O.

Twilio buffers the assistant audio we send and plays it at 8 bytes per millisecond, so what was
*sent* is not what the caller *heard*. After every outbound media chunk we send a uniquely named
mark; Twilio echoes it when playback reaches it. Counting echoed bytes gives the audio really
played, which is what ``conversation.item.truncate`` must receive when the caller barges in
(docs/protocols.md B6). Marks Twilio echoes *because of* a ``clear`` were not played: once we decide to
clear, the pending marks are forgotten so their echoes count for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BYTES_PER_MS = 8
"""G.711 μ-law at 8 kHz, one byte per sample."""


@dataclass
class ItemAudio:
    """What happened to one assistant item's audio."""

    response_id: str
    received_bytes: int = 0
    played_bytes: int = 0
    discarded_bytes: int = 0


@dataclass(frozen=True)
class MarkPlayed:
    item_id: str
    played_bytes: int
    total_played_bytes: int


@dataclass(frozen=True)
class BargeIn:
    """The decision taken when the caller starts speaking, with the numbers behind it."""

    item_id: str | None
    played_ms: int
    received_ms: int
    audio_end_ms: int | None
    """What to send in ``conversation.item.truncate``; None means: do not truncate."""
    action: str
    clear: bool
    """Send Twilio ``clear`` (some audio is still buffered there)."""
    unplayed_bytes: int


@dataclass
class Playback:
    """Assistant audio sent to one call's Twilio stream, and how much of it was played."""

    items: dict[str, ItemAudio] = field(default_factory=dict)
    interrupted: set[str] = field(default_factory=set)
    _pending: dict[str, tuple[str, int]] = field(default_factory=dict)
    _counter: int = 0
    _last_item: str | None = None

    def audio_received(self, response_id: str, item_id: str, byte_count: int) -> str | None:
        """A delta of ``item_id`` arrived. Returns the mark name to send after it, or None when the
        item was interrupted and the delta must be discarded (a late delta)."""
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = ItemAudio(response_id=response_id)
        if item_id in self.interrupted:
            item.discarded_bytes += byte_count
            return None
        item.received_bytes += byte_count
        self._counter += 1
        name = f"m{self._counter}"
        self._pending[name] = (item_id, byte_count)
        self._last_item = item_id
        return name

    def mark_echoed(self, name: str) -> MarkPlayed | None:
        """Twilio echoed ``name``. Returns what was played, or None for marks that no longer count
        (cleared, unknown or repeated)."""
        entry = self._pending.pop(name, None)
        if entry is None:
            return None
        item_id, byte_count = entry
        item = self.items[item_id]
        item.played_bytes += byte_count
        return MarkPlayed(item_id, byte_count, item.played_bytes)

    @property
    def unplayed_bytes(self) -> int:
        return sum(count for _, count in self._pending.values())

    @property
    def is_playing(self) -> bool:
        return bool(self._pending)

    def barge_in(self, active_item_ids: frozenset[str] = frozenset()) -> BargeIn:
        """The caller started speaking. Decide what to clear and truncate, and stop accepting audio
        of the items that were playing or are still being generated (``active_item_ids``)."""
        item_id: str | None = self._last_item
        if self._pending:
            item_id = self._pending[next(iter(self._pending))][0]
        unplayed = self.unplayed_bytes
        self.interrupted.update(active_item_ids)
        if item_id is None:
            return BargeIn(None, 0, 0, None, "skipped_nothing_playing", clear=False, unplayed_bytes=0)
        item = self.items[item_id]
        played_ms = item.played_bytes // BYTES_PER_MS
        received_ms = item.received_bytes // BYTES_PER_MS
        if not self._pending:
            action = "skipped_fully_played" if item_id not in active_item_ids else "skipped_nothing_playing"
            return BargeIn(item_id, played_ms, received_ms, None, action, clear=False, unplayed_bytes=0)
        # Everything still buffered at Twilio is about to be cleared: forget those marks so the
        # echoes Twilio sends for them on ``clear`` are not counted as played.
        for pending_item, _ in self._pending.values():
            self.interrupted.add(pending_item)
        self._pending.clear()
        audio_end_ms = min(played_ms, received_ms)
        return BargeIn(item_id, played_ms, received_ms, audio_end_ms, "truncated", True, unplayed)
