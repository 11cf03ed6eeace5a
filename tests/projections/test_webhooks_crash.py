"""Webhooks out survive what real processes go through: ``kill -9`` in the middle of a delivery (the
position is committed only after the endpoint answered, so nothing is lost and only the message in
flight is sent again), and two engines sharing a PostgreSQL log (one sends, none twice; the other
takes over when it stops). Real ``callbridge serve`` processes, an endpoint that counts by webhook-id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from serve_process import Serve, serve
from webhook_endpoint import Received, webhook_endpoint

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.engine.store import EventStore

FAST = {"CALLBRIDGE_HEARTBEAT_SECONDS": "0.5", "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "2"}
DEADLINE = 120  # a safety net that turns a hang into a failure, not a timing assumption
ONE_TURN = [Speak(900), WaitForAssistant(timeout_s=15), HangUp()]
KINDS = ["call.started", "call.ended"]


async def register(engine: Serve, url: str) -> dict:
    async with engine.http() as http:
        response = await http.post("/api/webhooks", json={"url": url, "events": KINDS})
    assert response.status_code == 201, response.text
    return response.json()


async def a_call(engine: Serve) -> str:
    report = await place_call(engine.base_url, script=ONE_TURN)
    assert report.ok, report.errors
    return report.call_sid


def recorded(store_url: str, stream: str) -> list[Any]:
    """The events of one stream, read from the store after the servers stopped."""
    store = EventStore(store_url)
    try:
        return [r.event for r in store.read_call(stream)]
    finally:
        store.close()


def ended(endpoint_received: list[Received], call_id: str) -> int:
    return sum(r.message["type"] == "call.ended" and r.message["data"]["call_id"] == call_id for r in endpoint_received)


async def test_after_kill_9_mid_delivery_nothing_is_lost_and_only_the_message_in_flight_comes_again(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "data" / "callbridge.db")
    first_end = [True]

    def hold(request: Received) -> bool:  # the first call.ended is held: the server dies waiting for it
        if request.message["type"] == "call.ended" and first_end:
            first_end.clear()
            return True
        return False

    with trio.fail_after(DEADLINE):
        async with webhook_endpoint(hold=hold) as endpoint:
            async with serve(store, tmp_path, env=FAST) as first:
                hook = await register(first, endpoint.url)
                call_id = await a_call(first)
                await endpoint.held.wait()
                first.kill()
                assert await first.exit_status() == -9
            endpoint.release()
            async with serve(store, tmp_path, env=FAST) as restarted:
                await endpoint.wait_for(lambda e: ended(e.received, call_id) == 2)
                assert await restarted.stop() == 0  # the answer in flight is recorded before it exits

    attempts = recorded(store, f"webhook:{hook['id']}")
    assert [(a.kind, a.attempt, a.ok) for a in attempts] == [("call.started", 1, True), ("call.ended", 1, True)]
    started_id, ended_id = (a.message_id for a in attempts)
    assert endpoint.counts() == {started_id: 1, ended_id: 2}  # call.started was committed: never sent again
    assert [m["type"] for m in endpoint.verified(hook["secret"])] == ["call.started", "call.ended", "call.ended"]


@pytest.mark.postgres
async def test_two_engines_on_postgresql_send_each_message_once_and_the_other_takes_over(
    postgres_store_url: str, tmp_path: Path
) -> None:
    one, other = tmp_path / "one", tmp_path / "other"  # two machines: each its own data folder
    one.mkdir()
    other.mkdir()
    with trio.fail_after(DEADLINE):
        async with webhook_endpoint() as endpoint, serve(postgres_store_url, one, env=FAST) as sender:
            await sender.wait_for_line("sends the webhooks")  # the first engine takes the lease
            async with serve(postgres_store_url, other, env=FAST) as survivor:
                hook = await register(survivor, endpoint.url)  # registered on one, seen by both
                calls = [await a_call(sender), await a_call(survivor)]
                await endpoint.wait_for(lambda e: all(ended(e.received, call) == 1 for call in calls))
                assert await sender.stop() == 0
                await survivor.wait_for_line("takes over sending webhooks")
                calls.append(await a_call(survivor))
                await endpoint.wait_for(lambda e: ended(e.received, calls[-1]) == 1)
    assert "sends the webhooks" not in survivor.log.split("takes over sending webhooks")[0]
    assert set(endpoint.counts().values()) == {1}  # nobody sent anything twice
    assert sorted(
        m["data"]["call_id"] for m in endpoint.verified(hook["secret"]) if m["type"] == "call.ended"
    ) == sorted(calls)
