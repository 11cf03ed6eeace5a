"""What the simulated model saw and said, per session: the test's window into the fake.

Every client frame is recorded as received (with the decoded event), every server frame as it is
handed to the socket, each with a ``trio.current_time()`` timestamp. Tests wait on these with
``wait_for_client`` / ``wait_for_server`` instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import trio

from callbridge.adapters.openai.client_events import ClientEvent, UnknownClientEvent


class ReceivedEvent(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    type: str
    raw: str
    event: ClientEvent | UnknownClientEvent | None
    """None when the frame was not an event at all."""


class SentEvent(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    type: str
    raw: str


class SessionRecord:
    def __init__(self, index: int, path: str, headers: dict[str, str]) -> None:
        self.index = index
        self.path = path
        self.headers = headers
        """Request headers, lower-cased names; ``authorization`` is redacted."""
        self.connected_at = trio.current_time()
        self.client_events: list[ReceivedEvent] = []
        self.server_events: list[SentEvent] = []
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = trio.Event()
        self._changed: trio.Event | None = None
        """Set at the next change; made only while someone waits (not once per message)."""

    def __repr__(self) -> str:
        return f"SessionRecord({self.index}, {len(self.client_events)} in, {len(self.server_events)} out)"

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def received(self, raw: str, event: ClientEvent | UnknownClientEvent | None, type_: str) -> None:
        self.client_events.append(ReceivedEvent(at=trio.current_time(), type=type_, raw=raw, event=event))
        self._notify()

    def sent(self, raw: str, type_: str) -> None:
        self.server_events.append(SentEvent(at=trio.current_time(), type=type_, raw=raw))
        self._notify()

    def ended(self, code: int | None, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.closed.set()
        self._notify()

    def client_types(self) -> list[str]:
        return [event.type for event in self.client_events]

    def server_types(self) -> list[str]:
        return [event.type for event in self.server_events]

    async def _wait(self, ready: Callable[[], Any]) -> Any:
        while True:
            found = ready()
            if found is not None:
                return found
            if self.closed.is_set():
                raise AssertionError(f"session {self.index} closed before the awaited event arrived")
            if self._changed is None:
                self._changed = trio.Event()
            await self._changed.wait()

    async def wait_for_client(self, type_: str, count: int = 1) -> ReceivedEvent:
        """Wait until the ``count``-th client event of ``type_`` has arrived, and return it."""

        def ready() -> ReceivedEvent | None:
            matches = [e for e in self.client_events if e.type == type_]
            return matches[count - 1] if len(matches) >= count else None

        result: ReceivedEvent = await self._wait(ready)
        return result

    async def wait_for_server(self, type_: str, count: int = 1) -> SentEvent:
        """Wait until the ``count``-th server event of ``type_`` has been sent, and return it."""

        def ready() -> SentEvent | None:
            matches = [e for e in self.server_events if e.type == type_]
            return matches[count - 1] if len(matches) >= count else None

        result: SentEvent = await self._wait(ready)
        return result
