"""An in-memory pair of message sockets for the engine's tests, held to the same contract as the real
WebSocket (``tests/adapters/test_message_socket_conformance.py`` runs one suite over both), so a test
that passes on these says something about the real thing."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from callbridge.adapters.websocket import WebSocketClosed


@dataclass
class _Close:
    code: int
    reason: str


@dataclass(eq=False)
class MemoryMessageSocket:
    """One end. Messages are delivered in order; a close is delivered after the messages before it."""

    _out: trio.MemorySendChannel[str | _Close]
    _in: trio.MemoryReceiveChannel[str | _Close]
    closed: WebSocketClosed | None = None
    sent: list[str] = field(default_factory=list)
    """Every message this end sent, for tests to read."""

    async def get_message(self) -> str:
        if self.closed is not None:
            raise self.closed
        try:
            item = await self._in.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self.closed = WebSocketClosed(1006, "connection lost")
            raise self.closed from None
        if isinstance(item, _Close):
            self.closed = WebSocketClosed(item.code, item.reason)
            await self._send_nowait_quietly(_Close(item.code, item.reason))  # the close handshake's answer
            raise self.closed
        return item

    async def send_message(self, message: str) -> None:
        await self.send_messages([message])

    async def send_messages(self, messages: list[str]) -> None:
        if self.closed is not None:
            raise self.closed
        for message in messages:
            try:
                await self._out.send(message)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = WebSocketClosed(1006, "connection lost")
                raise self.closed from None
            self.sent.append(message)

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        if self.closed is None:
            self.closed = WebSocketClosed(code, reason)
            await self._send_nowait_quietly(_Close(code, reason))

    async def abort(self) -> None:
        """The connection is lost without a close handshake (the peer sees 1006)."""
        self.closed = WebSocketClosed(1006, "connection lost")
        await self._out.aclose()

    async def _send_nowait_quietly(self, item: str | _Close) -> None:
        try:
            self._out.send_nowait(item)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def memory_socket_pair(buffer: int = 1000) -> tuple[MemoryMessageSocket, MemoryMessageSocket]:
    a_to_b_send, a_to_b_receive = trio.open_memory_channel[str | _Close](buffer)
    b_to_a_send, b_to_a_receive = trio.open_memory_channel[str | _Close](buffer)
    return MemoryMessageSocket(a_to_b_send, b_to_a_receive), MemoryMessageSocket(b_to_a_send, a_to_b_receive)
