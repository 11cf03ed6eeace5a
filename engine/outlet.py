"""What a call has to write to one socket, waiting for the task that writes it — bounded where it
must be.

The call core's outputs are carried out without waiting (``engine/call.py``), so writes to a socket
are handed to that socket's writer task through an ``Outlet``: the writer wakes, takes *everything*
waiting and writes it with one ``send_messages`` (each still its own WebSocket message). When a
socket falls behind, the next write simply carries more: latency is caught up by doing more per
wake-up, never by a queue that grows.

Caller audio on its way to the model is the one thing allowed to be dropped: an outlet built with
``max_audio`` keeps at most that many audio messages (5 = 100 ms of 20 ms frames) and drops the
oldest beyond it, counting them, so a stalled model socket never makes the caller's words arrive
seconds late. Control messages (session updates, tool outputs, truncates) are never dropped.

When the outlet is ``idle`` (nothing waiting, no write under way) the shell may write a message
straight to a socket that takes it without waiting (``WebSocket.send_now``) instead of waking the
writer: the order is the same, as nothing is ahead of it. If the socket took only part, ``poke``
wakes the writer with nothing new, to write the rest.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

import trio

from callbridge.adapters.websocket import NOT_SENT, SENT_IN_PART

SendNow = Callable[[Sequence[str]], int]
"""``WebSocket.send_now``: write at once if the socket takes it without waiting."""


class Outlet:
    def __init__(self, max_audio: int | None = None) -> None:
        self.max_audio = max_audio
        self._items: deque[tuple[str, bool]] = deque()
        self._audio = 0
        self._wake = trio.Event()
        self._drained = trio.Event()
        self._drained.set()
        self._writing = False
        self._poked = False
        self.dropped = 0
        """Audio messages dropped since the writer last reported them (``take_dropped``)."""

    def __len__(self) -> int:
        return len(self._items)

    @property
    def idle(self) -> bool:
        """Nothing waits and the writer is not writing: a message may go straight to the socket."""
        return not self._items and not self._writing

    def poke(self) -> None:
        """Wake the writer even with nothing waiting (the socket holds the rest of a direct write)."""
        self._poked = True
        if self._drained.is_set():
            self._drained = trio.Event()
        self._wake.set()

    def send_or_push(self, send_now: SendNow | None, text: str, *, audio: bool = False) -> None:
        """Straight to the socket when idle and it takes it (``send_now``), else ``push``."""
        if send_now is None or self._items or self._writing or not self._sent_now(send_now, (text,)):
            self.push(text, audio=audio)

    def send_or_push_many(self, send_now: SendNow | None, texts: tuple[str, ...]) -> None:
        if send_now is None or self._items or self._writing or not self._sent_now(send_now, texts):
            self.push_many(texts)

    def _sent_now(self, send_now: SendNow, texts: Sequence[str]) -> bool:
        sent = send_now(texts)
        if sent == SENT_IN_PART:
            self.poke()
        return sent != NOT_SENT

    def push(self, text: str, *, audio: bool = False) -> None:
        if audio and self.max_audio is not None and self._audio >= self.max_audio:
            self._drop_oldest_audio()
        self._items.append((text, audio))
        self._audio += audio
        if self._drained.is_set():
            self._drained = trio.Event()
        self._wake.set()

    def push_many(self, texts: tuple[str, ...]) -> None:
        for text in texts:
            self._items.append((text, False))
        if self._drained.is_set():
            self._drained = trio.Event()
        self._wake.set()

    def _drop_oldest_audio(self) -> None:
        for index, (_, audio) in enumerate(self._items):
            if audio:
                del self._items[index]
                self._audio -= 1
                self.dropped += 1
                return

    async def take(self) -> list[str]:
        """Wait until something is waiting (or ``poke``), then take all of it (in order)."""
        while not self._items and not self._poked:
            self._wake = trio.Event()
            await self._wake.wait()
        texts = [text for text, _ in self._items]
        self._items.clear()
        self._audio = 0
        self._poked = False
        self._writing = True
        return texts

    def written(self) -> None:
        """The writer finished writing what it took (wakes ``wait_drained`` when nothing is left)."""
        self._writing = False
        if not self._items and not self._poked:
            self._drained.set()

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped

    def clear(self) -> int:
        """Forget everything waiting (its socket is gone); returns how many messages were dropped."""
        count = len(self._items)
        self._items.clear()
        self._audio = 0
        self._poked = self._writing = False
        self._drained.set()
        return count

    async def wait_drained(self) -> None:
        """Until everything pushed so far has been written (or cleared)."""
        await self._drained.wait()
