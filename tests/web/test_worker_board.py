"""Workers take connections in turn: the first fills before the next, and a stalled one is covered.

The turn is a pure rule over the board's call counts. The listeners are tested on a real listening
socket shared by duplicated descriptors (as the workers of ``serve --workers`` share it), with real
client connections; which listener accepted each says whose turn it was.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing

from callbridge.web.worker_board import BUSY_LIMIT, CLOSED, WorkerBoard, WorkerTurns, next_worker
from callbridge.workers import DEFAULT_FILL, worker_fill


@pytest.mark.parametrize(
    ("calls", "fill", "turn"),
    [
        ([0, 0], 40, 0),  # an idle server: the first worker
        ([39, 0], 40, 0),  # the first fills to 40 ...
        ([40, 0], 40, 1),  # ... before the second takes any
        ([40, 40, 3], 40, 2),
        ([41, 40], 40, 1),  # all full: the one carrying fewest
        ([40, 40], 40, 0),  # a tie: the first of them
        ([0, 0], 0, 0),  # fill 0: balance by calls from the first call
        ([1, 0], 0, 1),
        ([CLOSED, 0], 40, 1),  # a stopped worker's turn never comes
        ([CLOSED, 50], 40, 1),
    ],
)
def test_the_turn_goes_to_the_first_worker_with_room_else_the_least_loaded(
    calls: list[int], fill: int, turn: int
) -> None:
    assert next_worker(calls, fill) == turn


@pytest.mark.parametrize(
    ("calls", "busy", "turn"),
    [
        ([10, 0], [BUSY_LIMIT - 1, 10], 0),  # under the busy limit: still the first's turn
        ([10, 0], [BUSY_LIMIT, 10], 1),  # at the busy limit: the next takes calls, well before the fill
        ([0, 0], [BUSY_LIMIT + 300, 10], 1),  # busy with no calls (folding the views): the next
        ([10, 3, 0], [BUSY_LIMIT, BUSY_LIMIT, 20], 2),
        ([10, 3], [BUSY_LIMIT, BUSY_LIMIT], 1),  # all busy: the one carrying fewest
        ([40, 3], [10, 10], 1),  # at the fill however idle
    ],
)
def test_a_worker_using_half_a_core_passes_the_turn_on(calls: list[int], busy: list[int], turn: int) -> None:
    assert next_worker(calls, 40, busy) == turn


def test_the_fill_setting() -> None:
    assert worker_fill({}) == DEFAULT_FILL
    assert worker_fill({"CALLBRIDGE_WORKER_FILL": " 0 "}) == 0
    with pytest.raises(ValueError, match="CALLBRIDGE_WORKER_FILL must be a whole number of calls, got 'ten'"):
        worker_fill({"CALLBRIDGE_WORKER_FILL": "ten"})
    with pytest.raises(ValueError, match="must be 0 or more, got -1"):
        worker_fill({"CALLBRIDGE_WORKER_FILL": "-1"})


def test_every_attachment_of_the_board_sees_each_workers_slot() -> None:
    board = WorkerBoard.create(3)
    try:
        other = WorkerBoard(os.dup(board.fd), 3)  # as a worker holds it: its own descriptor
        other.add_calls(1, 2)
        other.count_accepted(2)
        board.add_calls(0, 1)
        board.add_calls(0, -1)
        assert board.calls() == [0, 2, 0]
        assert board.accepted() == 1
        other.set_busy(1, 730)
        assert board.busy() == [0, 730, 0]
        other.close_slot(2)
        assert board.calls()[2] == CLOSED
        other.close()
    finally:
        board.close()


class Workers:
    """Two workers' listeners on one listening socket, each accepting in a loop when started."""

    def __init__(
        self, nursery: trio.Nursery, listening: socket.socket, board: WorkerBoard, fill: int, steal_after_s: float
    ) -> None:
        self.nursery = nursery
        self.port = listening.getsockname()[1]
        self.turns = [WorkerTurns(board, i, fill, listening.dup(), steal_after_s=steal_after_s) for i in range(2)]
        self.listeners = [turns.listener() for turns in self.turns]
        self.send_accepted, self.accepted = trio.open_memory_channel[int](10)
        self.board = board

    def start(self, index: int) -> None:
        self.nursery.start_soon(self._accept, index)

    async def _accept(self, index: int) -> None:
        while True:
            stream = await self.listeners[index].accept()
            await stream.aclose()
            await self.send_accepted.send(index)

    async def connect(self) -> int:
        """Which worker accepted a new client connection."""
        client = await trio.open_tcp_stream("127.0.0.1", self.port)
        try:
            return await self.accepted.receive()
        finally:
            await client.aclose()


@asynccontextmanager
async def two_workers(fill: int, steal_after_s: float = 0.05) -> AsyncIterator[Workers]:
    listening = socket.create_server(("127.0.0.1", 0))
    board = WorkerBoard.create(2)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                yield Workers(nursery, listening, board, fill, steal_after_s)
                nursery.cancel_scope.cancel()
    finally:
        board.close()
        listening.close()


async def test_the_first_worker_takes_connections_until_it_carries_its_fill() -> None:
    async with two_workers(fill=2) as workers:
        workers.start(0)
        workers.start(1)
        assert [await workers.connect() for _ in range(3)] == [0, 0, 0]  # connections, not calls: still 0's turn
        with workers.turns[0].carrying_call(), workers.turns[0].carrying_call():
            assert workers.board.calls() == [2, 0]
            assert [await workers.connect() for _ in range(2)] == [1, 1]
            with workers.turns[1].carrying_call(), workers.turns[1].carrying_call(), workers.turns[1].carrying_call():
                assert await workers.connect() == 0  # both full: the one carrying fewest
        assert workers.board.calls() == [0, 0]
        assert await workers.connect() == 0


async def test_a_worker_busy_with_half_a_core_leaves_the_next_calls_to_the_other() -> None:
    async with two_workers(fill=40) as workers:
        workers.start(0)
        workers.start(1)
        assert await workers.connect() == 0
        with workers.turns[0].carrying_call():
            workers.board.set_busy(0, BUSY_LIMIT)  # as worker 0 publishes when its calls keep it busy
            assert [await workers.connect() for _ in range(2)] == [1, 1]
            workers.board.set_busy(0, BUSY_LIMIT - 100)
            assert await workers.connect() == 0


async def test_a_worker_publishes_the_cpu_it_used(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    spent = iter([0.0, 0.25, 1.25])  # the process's CPU seconds at the start and at each publication
    monkeypatch.setattr("callbridge.web.worker_board.time.process_time", lambda: next(spent))
    board = WorkerBoard.create(2)
    listening = socket.create_server(("127.0.0.1", 0))
    try:
        turns = WorkerTurns(board, 1, 40, listening)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(turns.publish_busy, every_s=1.0))
            await trio.sleep(1.5)
            assert board.busy() == [0, 250]  # a quarter of a core in the first second
            await trio.sleep(1.0)
            assert board.busy() == [0, 1000]  # a whole core in the next
            nursery.cancel_scope.cancel()
    finally:
        board.close()
        listening.close()


async def test_a_connection_the_worker_whose_turn_it_is_leaves_waiting_is_taken_by_another(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with two_workers(fill=2) as workers:
        workers.start(1)  # worker 0, whose turn it is, is stalled: it never accepts
        started = trio.current_time()
        assert await workers.connect() == 1
        assert trio.current_time() - started >= 0.05  # only after worker 0 had its chance
        assert await workers.connect() == 1
        assert workers.listeners[1].taken == 2
    taken = [r.getMessage() for r in caplog.records if "left waiting" in r.getMessage()]
    assert taken == [  # the operator sees it, once per interval
        "worker 1 took a connection that worker 0, whose turn it was, left waiting 50 ms (stalled or stopped?); "
        "1 taken so far"
    ]


async def test_a_worker_taking_its_own_turn_notes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    async with two_workers(fill=2) as workers:
        workers.start(0)
        workers.start(1)
        assert [await workers.connect() for _ in range(3)] == [0, 0, 0]
        assert workers.listeners[0].taken == workers.listeners[1].taken == 0
    assert not [r for r in caplog.records if "left waiting" in r.getMessage()]


async def test_a_stopped_worker_is_never_given_the_turn() -> None:
    async with two_workers(fill=2, steal_after_s=3600) as workers:  # worker 1 accepts only on its turn
        await workers.listeners[0].aclose()
        assert workers.board.calls()[0] == CLOSED
        workers.start(1)
        assert await workers.connect() == 1
