"""Twilio's call-control webhooks, signed: ``/twilio/amd`` for a call that is not live here,
``/twilio/stream-ended`` for a call with nothing decided, and the fallback when Twilio refuses a REST
transfer (the stream ends and the ``<Connect action>`` dials instead). Also the fake's conferences."""

from __future__ import annotations

from pathlib import Path

import httpx2
import trio
import trio.testing
from phone_harness import ACCOUNT_SID, AUTH_TOKEN, of_type, phone_bridge

from callbridge.adapters.sim.caller import Speak, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature
from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.events import CallEnded, MachineDetected, TransferDialed

AGENT = Agent(greeting="Hello.", transfer_targets=[TransferTarget(label="sales", to="+15557654321")])


async def signed_post(http: httpx2.AsyncClient, base_url: str, path: str, form: dict[str, str]) -> httpx2.Response:
    signature = compute_signature(AUTH_TOKEN, f"{base_url}{path}", form)
    return await http.post(f"{base_url}{path}", data=form, headers={SIGNATURE_HEADER: signature})


async def test_amd_and_stream_ended_webhooks_are_signed_and_answer_for_calls_not_live_here(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=AGENT) as phone, httpx2.AsyncClient(timeout=10) as http:
        base = phone.base_url
        form = {"CallSid": "CAelsewhere", "AccountSid": ACCOUNT_SID, "AnsweredBy": "machine_end_silence"}
        unsigned = await http.post(f"{base}/twilio/amd", data={**form, "MachineDetectionDuration": "4100"})
        assert unsigned.status_code == 403
        done = await signed_post(http, base, "/twilio/amd", {**form, "MachineDetectionDuration": "4100"})
        assert done.status_code == 204
        missing = await signed_post(http, base, "/twilio/amd", {"CallSid": "CAelsewhere"})
        assert missing.status_code == 400 and "AnsweredBy" in missing.text
        ended = await signed_post(
            http, base, "/twilio/stream-ended", {"CallSid": "CAnothing", "CallStatus": "in-progress"}
        )
        assert ended.status_code == 200 and "xml" in ended.headers["content-type"]
        assert "<Hangup />" in ended.text or "<Hangup/>" in ended.text
        assert (await http.post(f"{base}/twilio/stream-ended", data={"CallSid": "CAnothing"})).status_code == 403
        events = await phone.events("CAelsewhere")
    assert [(m.answered_by, m.detection_ms) for m in of_type(events, MachineDetected)] == [
        ("machine_end_silence", 4100)
    ]


async def test_when_twilio_refuses_the_rest_transfer_the_connect_action_dials_instead(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(
                transcript="Sales please.",
                function_call=FunctionCall(name="transfer_call", arguments={"target": "sales"}),
            )
        ]
    )
    async with phone_bridge(tmp_path, agent=AGENT, script=script) as phone:
        phone.twilio.calls.fail_next.append((503, {"code": 20503, "message": "Service Unavailable", "status": 503}))
        with trio.fail_after(30):
            call = await phone.twilio.calls.place_inbound(
                phone.base_url, script=[WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)]
            )
            await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)

    (dialed,) = of_type(events, TransferDialed)
    assert (dialed.method, dialed.ok) == ("rest", False) and "20503" in dialed.error
    assert AUTH_TOKEN not in dialed.error
    assert call.action_twiml == dialed.twiml  # the stream ended; the action answered the <Dial>
    assert call.dial is not None and call.dial.to == "+15557654321"
    assert of_type(events, CallEnded)[0].reason == "transferred"


async def test_a_call_redirected_into_a_conference_leaves_the_stream_and_the_fake_records_the_room(
    tmp_path: Path,
) -> None:
    async with phone_bridge(tmp_path, agent=AGENT) as phone:
        twilio = TwilioCalls(ACCOUNT_SID, AUTH_TOKEN, base_url=phone.twilio.url)
        async with trio.open_nursery() as nursery:
            calls = []
            phone.twilio.calls.on_call = calls.append
            nursery.start_soon(lambda: phone.twilio.calls.place_inbound(phone.base_url, script=[WaitForHangUp()]))
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(20):
                await calls[0].heard_assistant.wait()
            conference = "<Response><Dial><Conference>standup</Conference></Dial></Response>"
            await twilio.redirect(calls[0].sid, conference)
        call = calls[0]
    assert call.dial is not None and (call.dial.kind, call.dial.to) == ("conference", "standup")
    assert call.report is not None and call.report.ended_by == "remote"
