"""``POST /api/calls`` refusals: each says what is wrong and records nothing; the cap answers 429
with ``Retry-After``; a call that never connects is recorded and shown with Twilio's status."""

from __future__ import annotations

from pathlib import Path

import trio
from phone_harness import OUR_NUMBER, phone_bridge

from callbridge.adapters.sim.caller import WaitForHangUp
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent

AGENT = Agent(greeting="Hello from Acme.")


async def stored_positions(phone) -> int:  # type: ignore[no-untyped-def]
    await phone.bridge.server.writer.flush()
    return await trio.to_thread.run_sync(phone.bridge.server.store.head)


async def recorded_since(phone, head: int) -> list[str]:  # type: ignore[no-untyped-def]
    """What was stored after ``head``, apart from the engine's own background (heartbeats, the
    webhook sender's lease): what a refused call would have left."""
    await phone.bridge.server.writer.flush()
    events = await trio.to_thread.run_sync(phone.bridge.server.store.read_all, head)
    background = ("EngineHeartbeat", "WebhookLeaseTaken")
    return [type(r.event).__name__ for r in events if type(r.event).__name__ not in background]


async def test_bad_numbers_and_bodies_are_400s_naming_the_parameter_and_nothing_is_placed(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        head = await stored_positions(phone)
        cases = [
            ({"to": "5551234"}, "'to'"),
            ({"to": "+15551234567", "from": "0800-CALL-ME"}, "'from'"),
            ({"to": "+15551234567", "greeting": "  "}, "'greeting'"),
            ({"to": "+15551234567", "metadata": "x"}, "'metadata'"),
            ({"to": "+15551234567", "colour": "red"}, "colour"),
            ({}, "'to'"),
        ]
        for body, named in cases:
            answer = await phone.post("/api/calls", body)
            assert answer.status_code == 400, (body, answer.text)
            assert named in answer.json()["error"], (body, answer.json())
        assert phone.twilio.calls.calls == {}
        assert await recorded_since(phone, head) == []


async def test_without_twilio_credentials_placing_a_call_says_what_to_set(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, credentials=False) as phone:
        head = await stored_positions(phone)
        answer = await phone.post("/api/calls", {"to": "+15551234567"})
        assert answer.status_code == 400
        assert "TWILIO_ACCOUNT_SID" in answer.json()["error"] and "TWILIO_AUTH_TOKEN" in answer.json()["error"]
        assert phone.twilio.calls.calls == {} and await recorded_since(phone, head) == []


async def test_a_twilio_refusal_is_a_502_with_its_code_and_message_and_nothing_recorded(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        head = await stored_positions(phone)
        message = "The number +15551234567 is unverified. Trial accounts may only make calls to verified numbers."
        phone.twilio.calls.fail_next.append((400, {"code": 21219, "message": message, "more_info": "", "status": 400}))
        answer = await phone.post("/api/calls", {"to": "+15551234567"})
        assert answer.status_code == 502
        body = answer.json()
        assert body["twilio_code"] == 21219 and body["twilio_status"] == 400
        assert "21219" in body["error"] and "unverified" in body["error"]
        assert phone.twilio.calls.calls == {} and await recorded_since(phone, head) == []
        assert "phone-test-auth-token" not in answer.text


async def test_the_outbound_cap_answers_429_with_retry_after_until_a_call_ends(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT, env={"CALLBRIDGE_MAX_OUTBOUND": "2"}) as phone:
        calls = phone.twilio.calls
        for number in ("+15551230010", "+15551230011", "+15551230012"):
            calls.script_number(number, Answer(script=[WaitForHangUp(timeout_s=30)]))
        first = await phone.post("/api/calls", {"to": "+15551230010"})
        second = await phone.post("/api/calls", {"to": "+15551230011", "from": OUR_NUMBER})
        assert first.status_code == second.status_code == 201
        third = await phone.post("/api/calls", {"to": "+15551230012"})
        assert third.status_code == 429
        assert third.headers["Retry-After"] == "10"
        assert "CALLBRIDGE_MAX_OUTBOUND" in third.json()["error"]
        assert len(calls.calls) == 2
        # the operator hangs one up; once Twilio reports it completed, its slot is free again
        call_id = first.json()["call_id"]
        with trio.fail_after(20):
            await calls.calls[call_id].heard_assistant.wait()  # greeted: live on the server
        hung = await phone.post(f"/api/calls/{call_id}/hangup", {"reason": "enough"})
        assert hung.status_code == 202
        with trio.fail_after(20):
            await calls.calls[call_id].done.wait()
        again = await phone.post("/api/calls", {"to": "+15551230012"})
        assert again.status_code == 201, again.text
        for call in list(calls.calls.values()):
            if call.status == "in-progress":
                await phone.post(f"/api/calls/{call.sid}/hangup")
