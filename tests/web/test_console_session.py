"""Changing a live call's session from the console: the console reports what the model answered
(``session.updated`` or its ``error``), the editor loads the call's current session from the log,
and says when the voice can no longer change (the assistant has spoken)."""

from __future__ import annotations

import json
from pathlib import Path

import trio
import trio.testing
from test_console_api import TWILIO_TOKEN, open_console, wait_live

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.web.console_session import model_answer
from callbridge.web.live_feed import Subscription

CALL = "CA" + "5" * 32


async def test_a_live_change_reports_the_models_answer_and_the_editor_loads_the_calls_session(tmp_path: Path) -> None:
    async with open_console(tmp_path) as console, trio.open_nursery() as nursery:
        bridge = console.bridge
        spoken = trio.Event()

        async def caller() -> None:
            steps = [Speak(600), WaitForAssistant(timeout_s=30), Speak(60_000), HangUp()]
            await place_call(
                bridge.base_url,
                script=steps,
                auth_token=TWILIO_TOKEN,
                public_url=console.public_url,
                call_sid=CALL,
                on_media_received=lambda *_: spoken.set(),
            )

        nursery.start_soon(caller)
        await wait_live(bridge, CALL)
        await spoken.wait()  # the assistant has spoken: the model now refuses a new voice

        current = await console.get(f"/api/session?call_id={CALL}")
        assert current["call_id"] == CALL and current["voice_locked"] is True
        assert current["session"]["voice"] == "marin"

        refused = await console.post("/api/session", {"session": {"voice": "cedar"}, "call_id": CALL}, status=409)
        assert refused["applied"] is False and refused["code"] == "cannot_update_voice"
        assert "Cannot update a conversation's voice if assistant audio is present." in refused["error"]
        after_refusal = await console.get(f"/api/session?call_id={CALL}")
        assert after_refusal["session"]["voice"] == "marin"  # as the model has it

        applied = await console.post("/api/session", {"session": {"instructions": "Be brief."}, "call_id": CALL})
        assert applied["applied"] is True
        changed = await console.get(f"/api/session?call_id={CALL}")
        assert changed["session"]["instructions"] == "Be brief." and changed["session"]["voice"] == "marin"
        assert (await console.get("/api/session"))["session"]["instructions"] != "Be brief."  # the default is apart

        missing = await console.get("/api/session?call_id=CAnope", status=404)
        assert "CAnope" in missing["error"]
        await console.get("/api/session?call_id=", status=400)
        bad = await console.post("/api/session", {"session": {}, "call_id": 7}, status=400)
        assert bad["error"].startswith("'call_id'")
        unknown = await console.post("/api/session", {"session": {}, "colour": "red"}, status=400)
        assert "colour" in unknown["error"]
        bridge.server.live.get(CALL).hang_up("test_over")  # type: ignore[union-attr]
        await bridge.wait_call_ended(CALL)


def feed(*messages: dict) -> Subscription:
    subscription = Subscription(CALL, 16)
    for message in messages:
        subscription.offer(json.dumps({"call_id": CALL, **message}))
    return subscription


async def test_no_answer_from_the_model_is_reported_as_a_timeout(autojump_clock: trio.testing.MockClock) -> None:
    silent = feed({"type": "session.update", "direction": "client"})
    outcome = await model_answer(silent, timeout_s=10)
    assert (outcome.applied, outcome.code) == (False, "timeout")
    assert "did not answer within 10 s" in outcome.message


async def test_only_the_answer_after_our_update_counts(autojump_clock: trio.testing.MockClock) -> None:
    earlier = {"type": "error", "error": {"type": "invalid_request_error", "code": "x", "message": "older"}}
    ours = {"type": "error", "error": {"type": "invalid_request_error", "code": "unknown_parameter", "message": "No."}}
    refused = feed(earlier, {"type": "session.update", "direction": "client"}, ours)
    outcome = await model_answer(refused)
    assert (outcome.applied, outcome.code, outcome.message) == (
        False,
        "unknown_parameter",
        "the model refused the change: No. (unknown_parameter)",
    )
    ended = feed({"type": "session.update", "direction": "client"}, {"type": "call.ended"})
    assert "call ended" in (await model_answer(ended)).message
