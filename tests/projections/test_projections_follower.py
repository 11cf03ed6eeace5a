"""Follower: the one loop behind every reader of the log (views, live feed) — paging, waiting for
appends, retrying failures with backoff, and a position any number of tasks can wait for."""

from __future__ import annotations

from functools import partial

import pytest
import trio
import trio.testing

from callbridge.engine.backoff import Backoff
from callbridge.projections.follower import Follower, Progress


class Log:
    """A log the test grows by hand, with a wake-up channel for the follower's waits."""

    def __init__(self) -> None:
        self.head = 0
        self.failures_left = 0
        self.start_failures_left = 0
        self.waited_at: list[int] = []
        self.nudge_send, self.nudge_receive = trio.open_memory_channel[None](10)

    async def step(self, position: int) -> Progress:
        await trio.lowlevel.checkpoint()
        if self.failures_left:
            self.failures_left -= 1
            raise OSError("database is locked")
        reached = min(self.head, position + 2)  # pages of two events
        return Progress(reached, reached >= self.head)

    async def start(self) -> int:
        await trio.lowlevel.checkpoint()
        if self.start_failures_left:
            self.start_failures_left -= 1
            raise OSError("store unreachable")
        return self.head

    async def wait(self, position: int) -> None:
        self.waited_at.append(position)
        await self.nudge_receive.receive()


async def test_it_pages_to_the_head_then_waits_and_wakes_every_waiter(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    follower = Follower("test reader", log.wait, backoff=Backoff(0.5, 30))
    follower.start_at(0)
    log.head = 5
    woken: list[tuple[int, int]] = []

    async def wait_for(position: int) -> None:
        woken.append((position, await follower.position.wait_for(position)))

    async with trio.open_nursery() as nursery:
        for target in (3, 5, 5):
            nursery.start_soon(wait_for, target)
        await nursery.start(follower.run, log.step)
        await trio.testing.wait_all_tasks_blocked()
        assert follower.position.value == 5 and log.waited_at == [5]
        assert sorted(target for target, _ in woken) == [3, 5, 5]  # every waiter woken
        assert all(reached >= target for target, reached in woken)
        log.head = 6
        await log.nudge_send.send(None)
        await follower.position.wait_for(6)
        nursery.cancel_scope.cancel()


async def test_failures_are_retried_with_backoff_and_logged_once_recovered(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = Log()
    follower = Follower("test reader", log.wait, backoff=Backoff(0.5, 30))
    follower.start_at(0)
    log.head, log.failures_left = 3, 3
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        await nursery.start(follower.run, log.step)
        await follower.position.wait_for(3)
        assert trio.current_time() - started == pytest.approx(0.5 + 1.0 + 2.0)  # virtual time: the backoff
        assert follower.failures == 0
        nursery.cancel_scope.cancel()
    assert "test reader failed (attempt 1, retrying in 0.5 s): database is locked" in caplog.text
    assert "test reader failed (attempt 3, retrying in 2.0 s)" in caplog.text
    assert "test reader reads the log again after 3 failed attempts" in caplog.text


async def test_a_start_position_that_cannot_be_read_yet_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    log.head, log.start_failures_left = 4, 2
    follower = Follower("test reader", log.wait, backoff=Backoff(0.5, 30))
    async with trio.open_nursery() as nursery:
        await nursery.start(
            partial(follower.run, log.step, start=log.start)
        )  # reports started although the head is unknown
        assert not follower.known
        await follower.position.wait_for(4)
        assert follower.known
        nursery.cancel_scope.cancel()


async def test_without_a_start_position_it_refuses_to_guess() -> None:
    follower = Follower("test reader", Log().wait, backoff=Backoff(0.5, 30))
    with pytest.raises(RuntimeError, match="no start position"):
        await follower.run(Log().step)
