"""The core's timers on one task: each fires once, at its deadline, in order; re-arming moves it."""

from __future__ import annotations

import trio
import trio.testing

from callbridge.engine.timers import Timers


async def test_timers_fire_at_their_deadlines_in_order_and_can_be_moved_or_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers: Timers[str] = Timers()
    fired: list[tuple[str, float]] = []
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run, lambda name: fired.append((name, trio.current_time() - start)))
        timers.start("late", 3.0)
        timers.start("early", 1.0)
        timers.start("cancelled", 2.0)
        timers.cancel("cancelled")
        await trio.sleep(0.5)
        timers.start("early", 1.5)  # re-armed: now due at 2.0
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert fired == [("early", 2.0), ("late", 3.0)]
    assert timers.pending() == {}
