"""A live call can be controlled from any engine sharing the store: the command goes through the log.

Two engines on one PostgreSQL store (each its own engine id, as behind one public URL); the call is
carried by engine A; the console's commands arrive at engine B. B records the command, A (woken by
PostgreSQL's NOTIFY) carries it out and answers in the call's log, B returns that answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from bridge_harness import of_type, running_bridge

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak
from callbridge.engine.events import CallCommandAnswered, CallEnded, CallSessionConfigChanged

A_LONG_CALL = [Speak(600), Silence(60_000), HangUp()]


@pytest.mark.postgres
async def test_commands_sent_to_another_engine_reach_the_call_through_the_log(
    postgres_store_url: str, tmp_path: Path
) -> None:
    env = {"CALLBRIDGE_STORE": postgres_store_url}
    async with (
        running_bridge(tmp_path / "a", env=env, engine_id="engine-a") as a,
        running_bridge(tmp_path / "b", env=env, engine_id="engine-b") as b,
        trio.open_nursery() as callers,
    ):
        callers.start_soon(lambda: place_call(a.base_url, script=A_LONG_CALL, call_sid="CAcarriedbyA"))
        with trio.fail_after(20):
            while a.server.live.get("CAcarriedbyA") is None:
                await a.server.live.wait_added()
        assert b.server.live.get("CAcarriedbyA") is None

        changed = await b.server.commands.send(
            "CAcarriedbyA", "update_session", {"session": {"instructions": "Be brief."}}
        )
        assert (changed.ok, changed.engine_id) == (True, "engine-a")

        b.server.commands.answer_timeout_s = 1.0
        nowhere = await b.server.commands.send("CAnotlive", "hang_up", {"reason": "test"})
        assert not nowhere.ok and "no engine carries call 'CAnotlive'" in nowhere.detail

        hung_up = await b.server.commands.send("CAcarriedbyA", "hang_up", {"reason": "operator test"})
        assert hung_up.ok
        await a.wait_call_ended("CAcarriedbyA")
        events = await a.events("CAcarriedbyA")
        callers.cancel_scope.cancel()

    assert of_type(events, CallSessionConfigChanged)[-1].session_config["instructions"] == "Be brief."
    answers = of_type(events, CallCommandAnswered)
    assert [(x.kind, x.ok, x.engine_id, x.issued_by) for x in answers] == [
        ("update_session", True, "engine-a", "engine-b"),
        ("hang_up", True, "engine-a", "engine-b"),
    ]
    assert of_type(events, CallEnded)[0].reason == "operator_hangup"
