"""What waits for a socket's writer: everything in one write, caller audio capped, control never dropped."""

from __future__ import annotations

import trio
import trio.testing

from callbridge.adapters.websocket import NOT_SENT, SENT, SENT_IN_PART
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


class FakeSocket:
    """``send_now`` answering as told, remembering what it was given."""

    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.given: list[list[str]] = []

    def send_now(self, texts: object) -> int:
        self.given.append(list(texts))  # type: ignore[call-overload]
        return self.answer


async def test_an_idle_outlet_lets_the_socket_take_a_message_at_once_and_keeps_nothing() -> None:
    outlet, socket = Outlet(max_audio=5), FakeSocket(SENT)
    outlet.send_or_push(socket.send_now, "f1", audio=True)
    outlet.send_or_push_many(socket.send_now, ("media", "mark"))
    assert socket.given == [["f1"], ["media", "mark"]]
    assert len(outlet) == 0 and outlet.idle
    with trio.fail_after(1):  # nothing is waiting for the writer (a hang guard, not a pause)
        await outlet.wait_drained()


async def test_behind_a_waiting_message_or_a_write_under_way_messages_queue_in_order() -> None:
    outlet, socket = Outlet(), FakeSocket(SENT)
    outlet.send_or_push(FakeSocket(NOT_SENT).send_now, "a")  # the socket had no room: queued
    outlet.send_or_push(socket.send_now, "b")  # behind "a": never overtakes it
    assert await outlet.take() == ["a", "b"]
    outlet.send_or_push(socket.send_now, "c")  # the writer is writing "a" and "b"
    assert socket.given == [] and not outlet.idle
    outlet.written()
    assert await outlet.take() == ["c"]


async def test_a_socket_that_took_part_wakes_the_writer_with_nothing_new_to_write_the_rest() -> None:
    outlet = Outlet()
    outlet.send_or_push(FakeSocket(SENT_IN_PART).send_now, "big")
    drained = trio.Event()

    async def wait() -> None:
        await outlet.wait_drained()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        assert await outlet.take() == []  # woken: the writer flushes the socket's rest
        await trio.testing.wait_all_tasks_blocked()
        assert not drained.is_set()
        outlet.written()
    assert drained.is_set()
