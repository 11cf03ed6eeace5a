"""The two small primitives every follower of the log shares: the multi-waiter Watermark and Backoff."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from callbridge.engine.backoff import Backoff
from callbridge.engine.watermark import Watermark

# --- Watermark ---------------------------------------------------------------------------------


async def test_every_waiter_is_woken_not_only_the_last_one_to_wait() -> None:
    """The bug of a single swapped wake-up event: the earlier waiter was never woken."""
    mark = Watermark()
    woken: list[str] = []

    async def wait(name: str, target: int) -> None:
        await mark.wait_for(target)
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "first", 1)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "second", 1)
        nursery.start_soon(wait, "third", 1)
        await trio.testing.wait_all_tasks_blocked()
        assert mark.waiting == 3
        mark.advance(1)
    assert sorted(woken) == ["first", "second", "third"]
    assert mark.waiting == 0


async def test_only_waiters_whose_target_is_reached_are_woken() -> None:
    mark = Watermark(5)
    woken: list[int] = []

    async def wait(target: int) -> None:
        woken.append(await mark.wait_for(target))

    async with trio.open_nursery() as nursery:
        for target in (9, 7, 12):
            nursery.start_soon(wait, target)
        await trio.testing.wait_all_tasks_blocked()
        assert mark.advance(8)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [8]  # the waiter for 7, told the mark's value
        assert not mark.advance(3)  # never goes down
        mark.advance(12)
    assert sorted(woken) == [8, 12, 12]


async def test_a_reached_target_returns_at_once_and_wait_beyond_means_strictly_greater() -> None:
    mark = Watermark(4)
    with trio.testing.assert_checkpoints():
        assert await mark.wait_for(4) == 4
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mark.wait_beyond, 4)
        await trio.testing.wait_all_tasks_blocked()
        assert mark.waiting == 1
        mark.advance(5)
    assert mark.waiting == 0


async def test_cancelled_waiters_leave_nothing_behind() -> None:
    mark = Watermark()
    for target in range(1, 200):
        with trio.move_on_after(0):
            await mark.wait_for(target)
    assert mark.waiting == 0 and not mark._targets and not mark._events
    async with trio.open_nursery() as nursery:  # and a later waiter still works
        nursery.start_soon(mark.wait_for, 3)
        await trio.testing.wait_all_tasks_blocked()
        mark.advance(3)


async def test_one_cancelled_waiter_does_not_cancel_another_on_the_same_target() -> None:
    mark = Watermark()
    woken: list[str] = []

    async def wait(name: str) -> None:
        await mark.wait_for(2)
        woken.append(name)

    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as doomed:
            nursery.start_soon(wait, "kept")
            await trio.testing.wait_all_tasks_blocked()
            async with trio.open_nursery() as inner:
                inner.start_soon(wait, "cancelled")
                await trio.testing.wait_all_tasks_blocked()
                doomed.cancel()
        assert mark.waiting == 1
        mark.advance(2)
    assert woken == ["kept"]


async def test_wait_awaited_returns_when_someone_starts_waiting_and_at_once_while_someone_does() -> None:
    """A poller of the mark (a worker following the views' position) sleeps until a reader waits."""
    mark = Watermark(5)
    noticed: list[int] = []

    async def poller() -> None:
        await mark.wait_awaited()
        noticed.append(mark.waiting)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(poller)
        await mark.wait_for(5)  # reached already: nobody is left waiting
        await trio.testing.wait_all_tasks_blocked()
        assert noticed == []
        nursery.start_soon(mark.wait_for, 6)
        await trio.testing.wait_all_tasks_blocked()
        assert noticed == [1]
        await mark.wait_awaited()  # someone still waits: at once
        mark.advance(6)
    assert mark.waiting == 0


# --- Backoff -----------------------------------------------------------------------------------


def test_backoff_doubles_from_first_up_to_maximum() -> None:
    backoff = Backoff(first=0.1, maximum=1.0)
    assert [backoff.delay(n) for n in range(6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]


def test_backoff_never_overflows_however_long_the_outage() -> None:
    """``0.1 * 2 ** 1100`` raises OverflowError; a store down for hours must not crash its retry loop."""
    backoff = Backoff(first=0.1, maximum=5.0)
    assert backoff.delay(1100) == backoff.delay(10**9) == 5.0


@pytest.mark.parametrize(("first", "maximum"), [(0, 1), (-1, 1), (2, 1)])
def test_backoff_refuses_nonsense(first: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(first, maximum)
