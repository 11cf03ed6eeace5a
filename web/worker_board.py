"""Which worker of ``serve --workers N`` accepts the next connection: fill the first before the next.

The workers share one listening socket, and whichever calls ``accept`` first gets a connection. Left
to the kernel, a handful of calls spread over every worker, and every worker is then a busy process
of its own that wakes for its own calls and writes its own events: on two cores, 30 calls spread over
two workers cost ~9 % more CPU than filling the first, and 100 calls split 40 / 60 ~13 % more than
100 on the first (alternated runs; README, the 2026-12-06 afternoon session), for a p99 a few ms lower. Capacity
per core is what users run out of, so a worker takes calls in turn:

- **The board** (:class:`WorkerBoard`): a page of memory the parent shares with its workers (a
  ``memfd``), one slot per worker, where each worker publishes how many calls it carries, how many
  connections it has accepted and how much of a core it used in the last second. Only its own worker
  writes a slot; everyone reads them all.
- **The turn** (:func:`next_worker`): the first worker carrying fewer than ``fill`` calls
  (``CALLBRIDGE_WORKER_FILL``) and using less than 0.8 of a core (:data:`BUSY_LIMIT`; each worker
  publishes its CPU every second); once every worker has either, the one carrying fewest. A lightly
  loaded server runs as one busy process; a loaded one balances by calls, not by who woke first. The
  CPU, not only the count, decides because what a call costs differs from machine to machine (the
  development machine measured the same calls 2.4 times slower on one day than the next): filling
  by count alone either leaves a fast machine's first worker half idle or loads a slow one's past
  its latency.
- **The listener** (:class:`TurnListener`) accepts only on its worker's turn. A connection the worker
  whose turn it is leaves waiting for :data:`STEAL_AFTER_S`, while it accepts nothing else (it is
  stalled or stopped), is taken by whichever other worker sees it: the turn decides where calls go,
  never whether they are answered.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import trio

log = logging.getLogger(__name__)

STEAL_AFTER_S = 0.2
"""How long a connection may wait for the worker whose turn it is, while that worker accepts nothing,
before another worker takes it. Longer than a full garbage collection; short beside a call's setup."""
TAKEN_LOG_INTERVAL_S = 10.0
"""At most one log line this often about connections taken from a stalled worker."""
CHECK_EVERY_S = 0.01
"""How often a worker whose turn it is not looks again while a connection waits."""
CLOSED = 1 << 62
"""The calls a stopped worker publishes: never its turn again."""
BUSY_LIMIT = 800
"""A worker using this much of a core or more (per mille) takes no more calls while another is under
it and under ``fill``. Where a second worker shares the cores with other work (on the two-core
development machine the benchmark's peers take one), two workers cost more CPU than one carrying
every call and were no faster: at 100 calls, 0.8 of a core against half a core, alternated in seven
sittings of two rounds each against the mainstream forwarder, 0.91 against 1.03 times its CPU per
call-minute (0.388 against 0.436 CPU-s) and uplink p99 0.81 against 0.94 times its own (README, the
2026-12-06 late session). One sitting in the evening before had found three quarters worse; the
sittings since did not."""
BUSY_EVERY_S = 1.0
"""How often each worker publishes how busy it is."""
_SLOT = 3
"""Per worker: calls carried, connections accepted, CPU used (per mille of a core, over the last
:data:`BUSY_EVERY_S`)."""
_IGNORABLE_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
"""The peer's trouble, not the listener's (trio's ``SocketListener`` skips the same)."""


def next_worker(calls: Sequence[int], fill: int, busy: Sequence[int] | None = None) -> int:
    """Whose turn it is: the first worker carrying fewer than ``fill`` calls and using less than
    :data:`BUSY_LIMIT` of a core (``busy``, per mille; None: not known), else the one carrying fewest
    (the first of those on a tie). ``fill`` 0 balances by calls from the first call."""
    for index, carried in enumerate(calls):
        if carried < fill and (busy is None or busy[index] < BUSY_LIMIT):
            return index
    return min(range(len(calls)), key=calls.__getitem__)


class WorkerBoard:
    """The workers' shared slots (see the module). The parent makes it with :meth:`create` and hands
    its ``fd`` to each worker, which opens it as ``WorkerBoard(fd, count)``."""

    def __init__(self, fd: int, count: int) -> None:
        self.fd = fd
        self.count = count
        self._map = mmap.mmap(fd, count * _SLOT * 8)
        self._slots = memoryview(self._map).cast("q")

    @classmethod
    def create(cls, count: int) -> WorkerBoard:
        """A new zeroed board for ``count`` workers, its fd inheritable: a Linux ``memfd``, elsewhere
        an unnamed temporary file."""
        if hasattr(os, "memfd_create"):
            fd = os.memfd_create("callbridge-workers", 0)
        else:  # pragma: no cover - not Linux
            with tempfile.TemporaryFile() as file:
                fd = os.dup(file.fileno())
        os.ftruncate(fd, count * _SLOT * 8)
        os.set_inheritable(fd, True)
        return cls(fd, count)

    def calls(self) -> list[int]:
        slots = self._slots
        return [slots[index * _SLOT] for index in range(self.count)]

    def busy(self) -> list[int]:
        """How much of a core each worker used lately, per mille."""
        slots = self._slots
        return [slots[index * _SLOT + 2] for index in range(self.count)]

    def set_busy(self, index: int, per_mille: int) -> None:
        self._slots[index * _SLOT + 2] = per_mille

    def accepted(self) -> int:
        """Connections accepted by every worker so far: whether anyone is accepting."""
        slots = self._slots
        return sum(slots[index * _SLOT + 1] for index in range(self.count))

    def add_calls(self, index: int, delta: int) -> None:
        self._slots[index * _SLOT] += delta

    def count_accepted(self, index: int) -> None:
        self._slots[index * _SLOT + 1] += 1

    def close_slot(self, index: int) -> None:
        """This worker takes no more connections: never its turn again."""
        self._slots[index * _SLOT] = CLOSED

    def close(self) -> None:
        self._slots.release()
        self._map.close()
        os.close(self.fd)


class WorkerTurns:
    """One worker's place on the board: it counts the calls this worker carries and makes the
    listener that accepts on the shared socket on this worker's turn."""

    def __init__(
        self, board: WorkerBoard, index: int, fill: int, sock: socket.socket, *, steal_after_s: float = STEAL_AFTER_S
    ) -> None:
        self.board = board
        self.socket = sock
        """The listening socket every worker shares."""
        self.index = index
        self.fill = fill
        self.steal_after_s = steal_after_s

    def my_turn(self) -> bool:
        return self.turn() == self.index

    def turn(self) -> int:
        """Whose turn it is now (:func:`next_worker` over the board)."""
        board = self.board
        return next_worker(board.calls(), self.fill, board.busy())

    async def publish_busy(self, *, every_s: float = BUSY_EVERY_S) -> None:
        """Publish, every ``every_s`` until cancelled, how much of a core this process used meanwhile
        (all its threads: the store's writer, the views)."""
        cpu, at = time.process_time(), trio.current_time()
        while True:
            await trio.sleep(every_s)
            now_cpu, now = time.process_time(), trio.current_time()
            self.board.set_busy(self.index, round(1000 * (now_cpu - cpu) / max(now - at, 1e-3)))
            cpu, at = now_cpu, now

    @contextmanager
    def carrying_call(self) -> Iterator[None]:
        """Around a call's media connection: this worker carries one more call meanwhile."""
        self.board.add_calls(self.index, 1)
        try:
            yield
        finally:
            self.board.add_calls(self.index, -1)

    def listener(self) -> TurnListener:
        return TurnListener(self.socket, self)


class TurnListener(trio.abc.Listener[trio.SocketStream]):
    """A listener on the shared socket that accepts on its worker's turn (see the module)."""

    def __init__(self, sock: socket.socket, turns: WorkerTurns) -> None:
        sock.setblocking(False)
        self.socket = sock
        self._turns = turns
        self.taken = 0
        """Connections this worker took that another worker, whose turn it was, left waiting."""
        self._logged_at: float | None = None

    async def accept(self) -> trio.SocketStream:
        turns, board = self._turns, self._turns.board
        while True:
            seen = board.accepted()
            await trio.lowlevel.wait_readable(self.socket)
            turn = turns.turn()
            stealing = turn != turns.index
            if stealing and not await self._left_waiting(seen):
                continue  # the worker whose turn it is accepts: leave it this one
            try:
                conn, _ = self.socket.accept()
            except BlockingIOError:
                continue  # another worker took it
            except OSError as error:
                if error.errno in _IGNORABLE_ACCEPT_ERRNOS:
                    continue
                if error.errno == errno.EBADF:
                    raise trio.ClosedResourceError from None
                raise
            board.count_accepted(turns.index)
            if stealing and not turns.my_turn():
                self._note_taken(turn)
            return trio.SocketStream(trio.socket.from_stdlib_socket(conn))

    def _note_taken(self, turn: int) -> None:
        """Say (at most every :data:`TAKEN_LOG_INTERVAL_S`) that this worker took a connection another
        left waiting: that worker is stalled or stopped, which the operator should see."""
        self.taken += 1
        now = trio.current_time()
        if self._logged_at is not None and now - self._logged_at < TAKEN_LOG_INTERVAL_S:
            return
        self._logged_at = now
        log.warning(
            "worker %d took a connection that worker %d, whose turn it was, left waiting %.0f ms "
            "(stalled or stopped?); %d taken so far",
            self._turns.index,
            turn,
            self._turns.steal_after_s * 1000,
            self.taken,
        )

    async def _left_waiting(self, seen: int) -> bool:
        """Whether to take a waiting connection although it is not this worker's turn: nobody has
        accepted one for ``steal_after_s`` (or the turn came here meanwhile)."""
        turns, board = self._turns, self._turns.board
        waited = 0.0
        while waited < turns.steal_after_s:
            if board.accepted() != seen:
                return False
            if turns.my_turn():
                return True
            await trio.sleep(CHECK_EVERY_S)
            waited += CHECK_EVERY_S
        return board.accepted() == seen

    async def aclose(self) -> None:
        self._turns.board.close_slot(self._turns.index)
        trio.lowlevel.notify_closing(self.socket)
        self.socket.close()
        await trio.lowlevel.checkpoint()
