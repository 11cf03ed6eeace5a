"""A warm transfer across engines sharing one PostgreSQL store behind one public URL: engine A carries
the call and holds it, the person's status callback reaches engine B (which records that nobody
answered and brings the caller back), and the new stream lands on A again — whose memory of the
call's last version is stale by then. Nothing may collide: the call's log is numbered without gaps
and A's writer never fails."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import httpx2
import pytest
import trio
from bridge_harness import Bridge, of_type, running_bridge
from phone_harness import ACCOUNT_SID, AUTH_TOKEN
from test_warm_transfer import AGENT, BACK, CALLER, GUARD_S, NO_ANSWER, PERSON, SCRIPT

from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.engine.events import AssistantSaid, CallEnded, CallResumed, CallStarted, TransferNotAnswered

PUBLIC = "http://calls.example:8443"
"""The one public URL both engines are behind (a load balancer: the fake Twilio's ``reach``)."""


@pytest.mark.postgres
async def test_a_call_held_on_one_engine_decided_on_another_resumes_on_the_first_without_collisions(
    postgres_store_url: str, tmp_path: Path
) -> None:
    routed: list[tuple[str, str]] = []
    async with trio.open_nursery() as nursery:
        twilio: FakeTwilioRest = await nursery.start(
            partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN))
        )
        env = {
            "CALLBRIDGE_STORE": postgres_store_url,
            "PUBLIC_URL": PUBLIC,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": twilio.url,
        }

        def engine(name: str) -> partial[object]:
            telephony = TwilioCalls(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.url)
            return partial(
                running_bridge,
                tmp_path / name,
                script=SCRIPT,
                env=env,
                agent=AGENT,
                engine_id=name,
                telephony=telephony,
            )

        async with engine("engine-a")() as a, engine("engine-b")() as b:  # type: ignore[operator]

            def reach(url: str) -> str:
                """The load balancer: the person's callback to B, everything else to A."""
                target: Bridge = b if "/twilio/transfer-status" in url else a
                routed.append((url.split("?")[0].removeprefix(PUBLIC.split(":")[0]), target.server.identity.engine_id))
                real = target.base_url.removeprefix("http")
                return url.replace(PUBLIC.removeprefix("http"), real)

            twilio.calls.reach = reach
            twilio.calls.script_number(PERSON, Answer(kind="no-answer", ring_s=0.3))
            with trio.fail_after(GUARD_S):
                caller: FakeCall = await twilio.calls.place_inbound(
                    PUBLIC, script=CALLER, on_hold_s=30, resume_script=BACK
                )
                await a.wait_call_ended(caller.sid)
            events = await a.events(caller.sid)
            versions = [r.version for r in a.server.store.read_call(caller.sid)]
            failures = (a.server.writer.failures.value, b.server.writer.failures.value)
            async with httpx2.AsyncClient() as http:
                listed = await http.get(
                    f"{b.base_url}/api/conversations/{caller.sid}", headers={"Authorization": "Bearer test-token"}
                )
        nursery.cancel_scope.cancel()

    assert caller.errors == [] and len(caller.reports) == 2
    assert ("://calls.example:8443/twilio/transfer-status", "engine-b") in routed
    assert [engine for url, engine in routed if url.endswith("/call")] == ["engine-a", "engine-a"]
    assert versions == list(range(1, len(versions) + 1)) and failures == (0, 0)
    [started] = of_type(events, CallStarted)
    [missed] = of_type(events, TransferNotAnswered)
    [resumed] = of_type(events, CallResumed)
    assert (started.engine_id, resumed.engine_id, missed.status) == ("engine-a", "engine-a", "no-answer")
    assert any(e.text == NO_ANSWER for e in of_type(events, AssistantSaid))
    assert of_type(events, CallEnded)[-1].reason == "caller_hangup"
    assert listed.status_code == 200 and listed.json()["status"] == "completed"
