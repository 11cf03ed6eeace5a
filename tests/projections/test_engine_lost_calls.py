"""A call whose engine died is ended for it (``CallEnded(reason="engine_lost")``) instead of staying
``in_progress`` forever: by the same engine when it restarts, or — engines sharing a PostgreSQL
store — by another engine once the dead one's heartbeats stop. Real ``callbridge serve`` processes,
killed with ``kill -9`` mid-call; a simulated caller on the real wire protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
from prometheus_text import samples
from serve_process import Serve, serve

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import Silence, Speak

FAST = {"CALLBRIDGE_HEARTBEAT_SECONDS": "0.5", "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "2"}
DEADLINE = 90  # a safety net that turns a hang into a failure, not a timing assumption
A_LONG_CALL = [Speak(600), Silence(600_000)]


async def next_message(ws: trio_websocket.WebSocketConnection, kind: str) -> dict[str, Any]:
    while True:
        message = json.loads(await ws.get_message())
        if message["type"] == kind:
            return message


async def call_in_progress(engine: Serve, call_sid: str, nursery: trio.Nursery) -> None:
    """Place a long call on ``engine`` and return once its ``CallStarted`` is in the store (the live
    feed follows the store, so ``call.started`` on it means stored)."""
    async with engine.feed(call_sid) as feed:
        nursery.start_soon(lambda: place_call(engine.base_url, script=A_LONG_CALL, call_sid=call_sid))
        await next_message(feed, "call.started")


async def ended_as_lost(engine: Serve, call_sid: str) -> tuple[dict[str, Any], dict[str, float]]:
    """The call as ``engine``'s API shows it once it is ended (waiting on the feed, not on time),
    and the Prometheus samples then."""
    async with engine.feed(call_sid) as feed, engine.http() as http:
        conversation = (await http.get(f"/api/conversations/{call_sid}")).json()  # read-your-writes
        if conversation["status"] == "in_progress":
            ended = await next_message(feed, "call.ended")
            assert ended["reason"] == "engine_lost"
            conversation = (await http.get(f"/api/conversations/{call_sid}")).json()
        metrics = (await http.get("/metrics")).text
    return conversation, samples(metrics)


async def test_a_killed_engine_ends_its_lost_call_when_it_restarts(tmp_path: Path) -> None:
    store = str(tmp_path / "data" / "callbridge.db")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as callers:
            async with serve(store, tmp_path, env=FAST) as first:
                await call_in_progress(first, "CAkilledmidcall", callers)
                first.kill()
                assert await first.exit_status() == -9
            callers.cancel_scope.cancel()  # the caller's socket died with the engine
        async with serve(store, tmp_path, env=FAST) as restarted:
            conversation, metrics = await ended_as_lost(restarted, "CAkilledmidcall")
            restarted.terminate()
            assert await restarted.exit_status() == 0
    assert conversation["status"] == "completed" and conversation["end_reason"] == "engine_lost"
    assert conversation["ended_at"] is not None
    assert metrics['callbridge_calls_total{status="in_progress"}'] == 0
    assert "ended at its restart" in restarted.log and "ended as lost" in restarted.log


@pytest.mark.postgres
async def test_when_one_of_two_engines_on_postgresql_is_killed_the_other_ends_its_calls(
    postgres_store_url: str, tmp_path: Path
) -> None:
    one, other = tmp_path / "one", tmp_path / "other"  # two machines: each its own data folder
    one.mkdir()
    other.mkdir()
    with trio.fail_after(DEADLINE):
        async with serve(postgres_store_url, other, env=FAST) as survivor:
            async with trio.open_nursery() as callers:
                async with serve(postgres_store_url, one, env=FAST) as doomed:
                    await call_in_progress(doomed, "CAonadeadengine", callers)
                    await call_in_progress(survivor, "CAonthesurvivor", callers)
                    doomed.kill()
                    assert await doomed.exit_status() == -9
                conversation, metrics = await ended_as_lost(survivor, "CAonadeadengine")
                async with survivor.http() as http:
                    mine = (await http.get("/api/conversations/CAonthesurvivor")).json()
                assert mine["status"] == "in_progress"  # the survivor's own call goes on
                assert metrics['callbridge_calls_total{status="in_progress"}'] == 1
                callers.cancel_scope.cancel()
    assert conversation["status"] == "completed" and conversation["end_reason"] == "engine_lost"
    assert "went silent; ended by engine" in survivor.log


async def test_kill_9_loses_at_most_half_a_second_of_the_callers_audio(tmp_path: Path) -> None:
    """Audio is stored in half-second chunks; a partial chunk goes to the writer with the first batch
    after its first frame is half a second old (``CALLER_HAND_OVER_S``), so a ``kill -9`` loses at
    most about that much of the caller's audio, and everything before it is stored."""
    from callbridge.engine.events import CallerAudioReceived
    from callbridge.engine.store import EventStore

    store = str(tmp_path / "data" / "callbridge.db")
    sent = 0
    kill_at = 25 * 4 + 20  # 20 frames into the fifth half-second chunk
    reached = trio.Event()

    def counted(_: float, frame: Any) -> None:
        nonlocal sent
        sent += 1
        if sent == kill_at:
            reached.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as callers:
            async with serve(store, tmp_path, env=FAST) as engine:
                callers.start_soon(
                    lambda: place_call(
                        engine.base_url, script=A_LONG_CALL, call_sid="CAkilledmidword", on_frame_sent=counted
                    )
                )
                await reached.wait()
                engine.kill()
                assert await engine.exit_status() == -9
            callers.cancel_scope.cancel()
    stored_store = EventStore(store)
    try:
        events = [r.event for r in stored_store.read_call("CAkilledmidword")]
    finally:
        stored_store.close()
    stored = sum(len(e.frame_sizes) for e in events if isinstance(e, CallerAudioReceived))
    # the chunk being gathered (at most 25 frames) plus what was still on its way through the sockets
    assert stored >= 25 * 4 and kill_at - stored <= 25 + 10, f"{kill_at - stored} frames lost of {kill_at} sent"
