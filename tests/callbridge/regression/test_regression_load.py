"""The loop-lag watch behind the overload note: how late the loop woke within a call's window, and
the note only past the threshold."""

from __future__ import annotations

import trio
import trio.testing

from callbridge.regression.load import OVERLOADED_LAG_S, LoopLag, overload_note


async def test_the_worst_lag_inside_a_window_and_the_note_past_the_threshold() -> None:
    lag = LoopLag()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lag.run)
        await trio.sleep(0.2)
        start = trio.current_time()
        await trio.sleep(0.06)  # let a tick be due, then block the loop
        blocked_until = trio.current_time() + 0.3
        while trio.current_time() < blocked_until:
            pass  # a stretch of synchronous work, as an overloaded process does
        await trio.sleep(0.12)
        end = trio.current_time()
        nursery.cancel_scope.cancel()

    worst = lag.worst_between(start, end)
    assert 0.2 < worst < 5.0  # the tick due during the block woke after it
    assert lag.worst_between(end + 1, end + 2) == 0.0
    assert overload_note(OVERLOADED_LAG_S / 2) is None
    note = overload_note(worst)
    assert note is not None and f"fell {worst * 1000:.0f} ms behind" in note
