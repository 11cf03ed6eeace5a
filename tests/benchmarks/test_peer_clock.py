"""The benchmark's shared microphone timer (``benchmarks/peer_clock.py``): every waiting caller is
woken at the first tick at or after its frame's time, never before it, and a cancelled wait is
forgotten. Trio's mock clock: times are exact, nothing sleeps."""

from __future__ import annotations

import sys
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from peer_clock import Metronome

TICK = 0.25
"""A tick that binary floating point adds up exactly."""


async def test_each_wait_ends_at_the_first_tick_at_or_after_its_due_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metronome = Metronome(TICK)
    woken: dict[float, float] = {}

    async def microphone(due: float) -> None:
        await metronome.until(due, trio.Event())
        woken[due] = trio.current_time()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(metronome.run)
        async with trio.open_nursery() as microphones:
            for due in (1.0, 0.1, 0.3, 0.5):
                microphones.start_soon(microphone, due)
        nursery.cancel_scope.cancel()

    assert woken == {0.1: 0.25, 0.3: 0.5, 0.5: 0.5, 1.0: 1.0}


async def test_a_time_already_past_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    metronome = Metronome(TICK)  # not even running
    await trio.sleep(1)
    await metronome.until(0.5, trio.Event())
    assert trio.current_time() == 1


async def test_a_cancelled_wait_is_dropped_and_the_others_still_wake(autojump_clock: trio.testing.MockClock) -> None:
    metronome = Metronome(TICK)
    woken: list[str] = []

    async def microphone(name: str, due: float) -> None:
        await metronome.until(due, trio.Event())
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(metronome.run)
        with trio.move_on_after(0.1):  # hung up before its frame's time
            await microphone("cancelled", 0.5)
        async with trio.open_nursery() as microphones:
            microphones.start_soon(microphone, "kept", 0.5)
        nursery.cancel_scope.cancel()

    assert woken == ["kept"]
