"""One open WebSocket over a trio stream, driven by wsproto in the calling task: the media path's socket.

Both sockets of a call carry 50 messages a second each way. trio-websocket runs a reader task per
connection and hands every message across a memory channel, so each one costs two task switches
before the engine sees it, and every send takes a lock that always yields. Measured (README, "Why /call is
not a Quart route"), wsproto driven directly costs about a quarter less CPU per message, and on
this machine the bridge's tail latency follows its CPU. So here:

- ``get_message`` reads the socket in the task that wants the message (one task reads at a time);
  one ``receive_some`` often yields several messages, queued for the next calls;
- ``send_messages`` writes several frames with one ``send_all`` (a Twilio ``media`` and its
  ``mark``); any number of tasks may send, a send lock orders them and yields only when contended;
- pings are answered while reading; ``ping`` waits for the matching pong (delivered by the reader);
- ``abort`` fails every pending and later call at once (the keepalive found the peer dead).

The opening handshakes are in ``handshake.py``; what is raised, in ``errors.py`` (``WebSocketClosed``
carries the close code, 1006 when the connection was lost).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Final

import trio
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Pong,
    TextMessage,
)

from callbridge.adapters.websocket import frames
from callbridge.adapters.websocket.errors import WebSocketClosed
from callbridge.adapters.websocket.lock import acquire_at_once
from callbridge.adapters.websocket.wsproto_state import wsproto_at_frame_boundary

RECEIVE_BYTES: Final = 65536
DEFAULT_MAX_MESSAGE: Final = 16 * 1024 * 1024
CLOSE_TIMEOUT_S: Final = 2.0
LINGER_S: Final = 2.0
"""``aclose``: how long a peer that has not answered our close frame may still send (read and dropped)."""
ABNORMAL_CLOSURE: Final = 1006
MESSAGE_TOO_BIG: Final = 1009
NOT_SENT: Final = 0
"""``send_now``: nothing was written; send the messages the usual way."""
SENT: Final = 1
"""``send_now``: the messages are in the kernel's socket buffer."""
SENT_IN_PART: Final = 2
"""``send_now``: the socket took part; the rest goes first with the next write (``send_messages([])``)."""


class WebSocket:
    """One open WebSocket. Build it with ``accept_request`` or ``connect``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        connection: WSConnection,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE,
        pending: Iterable[Event] = (),
    ) -> None:
        self._stream = stream
        self._ws = connection
        self._max_message_size = max_message_size
        self._pending: list[Event] = list(pending)
        """Events that arrived with the handshake, handled by the first read."""
        self._messages: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._parts_size = 0
        self._send_lock = trio.Lock()
        self._read_busy = False
        """A task is in ``_read`` (see there)."""
        self._read_over = trio.lowlevel.ParkingLot()
        """Tasks waiting for the read in progress to end."""
        self._pongs: dict[bytes, trio.Event] = {}
        self._ping_count = 0
        self._reading = False
        self._peer_closed = trio.Event()
        self._client = bool(connection.client)
        self._fast = wsproto_at_frame_boundary(connection)
        """Whole data frames are read by ``frames`` (wsproto holds no partial frame); False once a
        frame that is not ours handed the rest of the connection to wsproto."""
        self._unparsed = b""
        """The start of a frame that has not fully arrived (fast reading only)."""
        self._socket: Any = getattr(stream, "socket", None)
        """The stream's plain socket, which ``send_now`` writes to (None for TLS: it never does)."""
        self._unsent = b""
        """What ``send_now`` could not write: the next write sends it first."""
        self._drained = False
        """The last read took less than it asked for: the kernel's buffer is most likely empty now,
        so the next read waits for the socket before reading (``_receive``)."""
        self.closed: WebSocketClosed | None = None
        """Why the socket is closed, once it is."""

    @property
    def reads_frames_itself(self) -> bool:
        """Whether whole data frames are still read by ``frames`` rather than wsproto (diagnostics)."""
        return self._fast

    # --- reading ----------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next whole message. Raises ``WebSocketClosed`` once the socket is closed, after the
        messages that arrived before the close were delivered."""
        while not self._messages:
            if self.closed is not None:
                raise self.closed
            await self._read()
        return self._messages.popleft()

    async def _read(self) -> None:
        """One read of the socket. One task reads at a time (``aclose`` may read for the close frame
        while the call's task reads messages): a task that finds another reading waits until that
        read is over and returns, and its caller looks again at what arrived. A flag, not a
        ``trio.Lock``: taking and releasing a lock around each of 50 reads a second per socket was
        ~3 % of the media path's Python time."""
        if self._read_busy:
            await self._read_over.park()
            return
        self._read_busy = True
        try:
            await self._read_locked()
        finally:
            self._read_busy = False
            if self._read_over:
                self._read_over.unpark_all()

    async def _read_locked(self) -> None:
        if self._pending:
            events, self._pending = self._pending, []
            await self._handle(events)
            return
        self._reading = True
        try:
            data: bytes | bytearray | None = await self._receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = None
        finally:
            self._reading = False
        if self.closed is not None:  # aborted or closed by us while we waited
            return
        if data and self._fast and self._ws.state is ConnectionState.OPEN:
            await self._take_frames(self._unparsed + data if self._unparsed else bytes(data))
            return
        self._hand_over()
        self._ws.receive_data(bytes(data) if data else None)
        await self._handle(self._ws.events())

    async def _receive(self) -> bytes | bytearray | None:
        """What the socket has next (``b""`` at its end; None once it is lost).

        A message every 20 ms means the buffer is empty after each read, and trio's ``receive_some``
        always tries the read first: a failed ``recv`` (an exception in Python), then the wait, then
        the read again, for every message. So once a read came back short, a plain socket is waited
        for first and then read with one ``os.read``; anything else (TLS, the first read of a
        stream that may hold peeked bytes, a read that filled the buffer) goes through the stream."""
        sock = self._socket
        if sock is None or not self._drained:
            data = await self._stream.receive_some(RECEIVE_BYTES)
        else:
            fd = sock.fileno()
            if fd < 0:  # closed by us meanwhile
                return None
            while True:
                await trio.lowlevel.wait_readable(fd)  # a checkpoint; ClosedResourceError once closed
                try:
                    data = os.read(fd, RECEIVE_BYTES)
                    break
                except BlockingIOError:  # woken without data (spurious): wait again
                    continue
                except OSError:  # reset by the peer, or closed meanwhile
                    return None
        self._drained = len(data) < RECEIVE_BYTES
        return data

    async def _take_frames(self, buffer: bytes) -> None:
        """Cut whole data frames from ``buffer`` (``frames``); control frames go to wsproto one by
        one, and from the first frame that is not ours on, wsproto reads everything."""
        pos, messages, masked, limit = 0, self._messages, not self._client, self._max_message_size
        while True:
            kind, end, message = frames.next_frame(buffer, pos, masked=masked, max_size=limit)
            if kind == frames.WHOLE:
                messages.append(message)  # type: ignore[arg-type]
                pos = end
            elif kind == frames.INCOMPLETE:
                break
            elif kind == frames.CONTROL:
                self._ws.receive_data(buffer[pos:end])
                pos = end
                await self._handle(self._ws.events())
                if self.closed is not None or self._ws.state is not ConnectionState.OPEN:
                    self._unparsed = b""
                    self._hand_over(buffer[pos:])
                    return
            else:
                self._unparsed = b""
                self._hand_over(buffer[pos:])
                await self._handle(self._ws.events())
                return
        self._unparsed = buffer[pos:]

    def _hand_over(self, rest: bytes = b"") -> None:
        """wsproto reads everything from now on (starting with what ``frames`` had not read)."""
        if self._fast:
            self._fast = False
            rest = self._unparsed + rest
            self._unparsed = b""
        if rest and self._ws.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING):
            self._ws.receive_data(rest)

    async def _handle(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, (TextMessage, BytesMessage)):
                data = event.data if isinstance(event.data, (str, bytes)) else bytes(event.data)
                size = self._parts_size + len(data)
                if size > self._max_message_size:  # messages queued before it are still delivered
                    await self._refuse(MESSAGE_TOO_BIG, f"message of {size} bytes exceeds the limit")
                    return
                if event.message_finished and not self._parts:
                    self._messages.append(data)
                    continue
                self._parts.append(data)
                self._parts_size = size
                if event.message_finished:
                    whole = "".join(self._parts) if isinstance(event, TextMessage) else b"".join(self._parts)  # type: ignore[arg-type]
                    self._parts, self._parts_size = [], 0
                    self._messages.append(whole)
            elif isinstance(event, Ping):
                if self._ws.state is ConnectionState.OPEN:  # closing: the close frame is the answer
                    await self._write_quietly(self._ws.send(event.response()))
            elif isinstance(event, Pong):
                waiter = self._pongs.pop(bytes(event.payload), None)
                if waiter is not None:
                    waiter.set()
            elif isinstance(event, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    await self._write_quietly(self._ws.send(event.response()))
                elif self._ws.state is ConnectionState.OPEN:  # a frame wsproto could not parse
                    await self._refuse(event.code, event.reason or "protocol error")
                    return
                self._peer_closed.set()
                await self._finish(WebSocketClosed(event.code, event.reason or ""))
                return

    async def _refuse(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or a size limit): tell it why, and close."""
        await self._write_quietly(self._ws.send(CloseConnection(code=code, reason=reason[:120])))
        await self._finish(WebSocketClosed(code, reason))

    # --- writing ----------------------------------------------------------------------------

    async def send_message(self, message: str | bytes) -> None:
        """Send one message (text for ``str``)."""
        self._raise_unless_open()
        await self._write(frames.encode_messages((message,), mask=self._client))

    async def send_messages(self, messages: Sequence[str | bytes]) -> None:
        """Send several messages, in order, with one write to the socket (framed by ``frames``:
        wsproto keeps no state for whole data frames)."""
        self._raise_unless_open()
        await self._write(frames.encode_messages(messages, mask=self._client))

    def send_now(self, messages: Sequence[str | bytes]) -> int:
        """Write ``messages`` at once, without waiting and without a trio checkpoint, when nothing
        else is being written and the kernel has room (the sender does not wake a writer task and
        go through the scheduler for each 20 ms frame). ``NOT_SENT`` (nothing written: no plain
        socket, a write in progress, no room, or the socket is failing — ``send_messages`` then
        meets the same), ``SENT``, or ``SENT_IN_PART`` (the rest is held and goes first with the
        next write: call ``send_messages([])`` soon)."""
        sock = self._socket
        if sock is None or self._unsent or self._send_lock.locked() or self.closed is not None:
            return NOT_SENT
        if self._ws.state is not ConnectionState.OPEN:
            return NOT_SENT
        data = frames.encode_messages(messages, mask=self._client)
        try:
            written = os.write(sock.fileno(), data)
        except OSError:  # no room (EAGAIN), the peer is gone, the socket was closed (fileno -1)
            return NOT_SENT
        if written == len(data):
            return SENT
        self._unsent = data[written:]
        return SENT_IN_PART

    def _raise_unless_open(self) -> None:
        if self.closed is not None:
            raise self.closed
        if self._ws.state is not ConnectionState.OPEN:
            raise WebSocketClosed(None, "closing")

    async def _write(self, data: bytes) -> None:
        lock = self._send_lock
        await acquire_at_once(lock)
        try:
            if self.closed is not None:
                raise self.closed
            owed = len(self._unsent)
            if owed:
                data, self._unsent = self._unsent + data, b""
            if self._socket is None:
                await self._stream.send_all(data)
            else:
                await self._write_plain(data, owed)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            await self._finish(WebSocketClosed(ABNORMAL_CLOSURE, "connection lost"))
            assert self.closed is not None
            raise self.closed from None
        finally:
            lock.release()

    async def _write_plain(self, data: bytes, owed: int = 0) -> None:
        """``send_all`` on the plain socket, counting what went out. A write cancelled after part of
        it was written keeps the rest in ``_unsent``, which the next write sends first: the stream
        never holds half a frame with something else after it (a close frame sent after half a
        message would be read as that message's payload, and the peer would never see the close).
        ``owed``: ``data`` starts with that many bytes of frames begun before, kept even when nothing
        of ``data`` went out. A checkpoint, as ``send_all`` is; a lost connection raises
        ``BrokenResourceError``."""
        fd = self._socket.fileno()
        view, sent, waited = memoryview(data), 0, False
        try:
            await trio.lowlevel.checkpoint_if_cancelled()
            while sent < len(view):
                try:
                    sent += os.write(fd, view[sent:])
                except BlockingIOError:  # the kernel's buffer is full: wait until the peer reads
                    waited = True
                    await trio.lowlevel.wait_writable(fd)
        except trio.Cancelled:
            if sent > owed:  # the new frames have begun: all of them go with the next write
                self._unsent = bytes(view[sent:])
            elif owed:
                self._unsent = bytes(view[sent:owed])
            raise
        except OSError as error:  # reset by the peer, or closed by us (fd -1)
            raise trio.BrokenResourceError(f"the socket failed: {error}") from error
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _write_quietly(self, data: bytes) -> None:
        """A protocol reply (pong, close): a peer already gone is no error here."""
        try:
            await self._write(data)
        except WebSocketClosed:
            pass

    async def ping(self) -> None:
        """Send a ping and wait for its pong (it arrives through whichever task is reading)."""
        self._raise_unless_open()
        self._ping_count += 1
        payload = self._ping_count.to_bytes(8, "big")
        answered = self._pongs[payload] = trio.Event()
        await self._write(self._ws.send(Ping(payload=payload)))
        await answered.wait()
        if self.closed is not None:
            raise self.closed

    # --- closing ----------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close politely: send a close frame, wait (bounded) for the peer's, close the stream.

        A peer that has not answered within ``CLOSE_TIMEOUT_S`` gets our end of stream and up to
        ``LINGER_S`` more, its frames read and dropped (a lingering close): closing a socket that
        still receives sends the peer a reset, and a slow peer that meets the reset (say, on its next
        write) before it has read our close frame sees the connection lost, not our code and reason.
        Idempotent; never raises for a peer that is already gone.

        Cancelled (a server stopping its calls), it still writes the close frame — shielded, within
        ``CLOSE_TIMEOUT_S``: wsproto counts the frame as sent once it is made, so a write cancelled
        before it began would lose it for good, and the peer would see the connection lost (1006)
        instead of our code and reason — then closes the stream at once and raises ``Cancelled``."""
        try:
            if self.closed is None and self._ws.state is ConnectionState.OPEN:
                frame = self._ws.send(CloseConnection(code=code, reason=reason[:120]))
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_TIMEOUT_S):
                    await self._write_quietly(frame)
                with trio.move_on_after(CLOSE_TIMEOUT_S):
                    await self._wait_for_peer_close()
                if self.closed is None and not self._peer_closed.is_set():
                    with trio.move_on_after(LINGER_S):
                        if await self._send_eof():
                            await self._wait_for_peer_close()
        finally:
            await self._finish(WebSocketClosed(code, reason))

    async def _wait_for_peer_close(self) -> None:
        """Until the peer's close frame (or the end of the stream) has been read."""
        if self._reading:  # another task reads: it will see the peer's close frame
            await self._peer_closed.wait()
        else:
            while self.closed is None and not self._peer_closed.is_set():
                await self._read()

    async def _send_eof(self) -> bool:
        """Shut our sending side (after our close frame); False where the stream cannot (TLS)."""
        stream = self._stream
        if not isinstance(stream, trio.abc.HalfCloseableStream):
            return False
        async with self._send_lock:
            try:
                await stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def abort(self, code: int, reason: str) -> None:
        """Close at once, without a handshake: pending and later calls raise with this reason."""
        await self._finish(WebSocketClosed(code, reason))

    async def _finish(self, closed: WebSocketClosed) -> None:
        if self.closed is not None:
            return
        self.closed = closed
        for waiter in self._pongs.values():
            waiter.set()
        self._pongs.clear()
        self._peer_closed.set()
        with trio.CancelScope(shield=True):
            await self._stream.aclose()
