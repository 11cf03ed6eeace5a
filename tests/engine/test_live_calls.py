"""The server's table of live calls: every waiter for "no calls left" is woken (shutdown relies on it)."""

from __future__ import annotations

import trio
import trio.testing

from callbridge.engine.live_calls import LiveCall, LiveCalls


def live_call(call_id: str) -> LiveCall:
    operator_send, _ = trio.open_memory_channel[object](1)
    tools_send, _ = trio.open_memory_channel[object](1)
    return LiveCall(
        call_id=call_id,
        stream_sid="MZ",
        started_at=0.0,
        from_number="",
        to_number="",
        _operator=operator_send,  # type: ignore[arg-type]
        _tools=tools_send,  # type: ignore[arg-type]
        _scope=trio.CancelScope(),
    )


async def test_every_waiter_is_woken_when_the_last_call_ends() -> None:
    calls = LiveCalls()
    calls.add(live_call("CA1"))
    calls.add(live_call("CA2"))
    woken: list[str] = []

    async def wait(name: str) -> None:
        await calls.wait_empty()
        woken.append(name)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait, "first")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(wait, "second")
        await trio.testing.wait_all_tasks_blocked()
        calls.remove("CA1")
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        calls.remove("CA2")
    assert sorted(woken) == ["first", "second"]


async def test_a_hang_up_that_cannot_be_posted_cancels_the_call_at_once() -> None:
    call = live_call("CA1")
    call._operator.send_nowait(object())  # type: ignore[arg-type]  # the inbox is full
    call.hang_up("server_shutdown")
    assert call._scope.cancel_called
