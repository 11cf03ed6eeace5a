"""What waits for a socket's writer: everything in one write, caller audio capped, control never dropped."""

from __future__ import annotations

import trio
import trio.testing

from callbridge.engine.outlet import Outlet


async def test_the_writer_takes_everything_waiting_in_order() -> None:
    outlet = Outlet()
    outlet.push("a")
    outlet.push_many(("b", "c"))
    assert await outlet.take() == ["a", "b", "c"]
    assert len(outlet) == 0


async def test_audio_beyond_the_cap_drops_the_oldest_audio_but_never_control() -> None:
    outlet = Outlet(max_audio=2)
    outlet.push("f1", audio=True)
    outlet.push("session.update")
    outlet.push("f2", audio=True)
    outlet.push("f3", audio=True)
    outlet.push("f4", audio=True)
    assert await outlet.take() == ["session.update", "f3", "f4"]
    assert outlet.take_dropped() == 2 and outlet.take_dropped() == 0


async def test_wait_drained_returns_once_what_was_taken_is_written() -> None:
    outlet = Outlet()
    outlet.push("a")
    drained = False

    async def wait() -> None:
        nonlocal drained
        await outlet.wait_drained()
        drained = True

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await outlet.take()
        await trio.testing.wait_all_tasks_blocked()
        assert not drained  # taken, but not yet written
        outlet.written()
    assert drained
