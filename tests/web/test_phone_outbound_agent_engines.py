"""An outbound call placed with an agent on one engine, answered on another: two engines share one
PostgreSQL store behind one public URL; ``POST /api/calls {"agent"}`` reaches engine A, Twilio's
``/twiml`` and the media stream reach engine B — which finds the agent in the call's log (A wrote
it before answering), not in its memory, and runs the call with it over the routing rule."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
import trio
from bridge_harness import of_type, running_bridge
from phone_harness import ACCOUNT_SID, AUTH_TOKEN, OUR_NUMBER
from test_phone_outbound_agent import HEARS_GREETING, PERSON

from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.engine.agent import Agent
from callbridge.engine.events import AgentRouted, CallStarted, OutboundCallPlaced

PUBLIC = "http://calls.example:8443"
BEARER = {"Authorization": "Bearer test-token"}


@pytest.mark.postgres
async def test_an_outbound_call_placed_with_an_agent_on_one_engine_runs_with_it_on_another(
    postgres_store_url: str, tmp_path: Path
) -> None:
    routed: list[tuple[str, str]] = []
    async with trio.open_nursery() as nursery:
        twilio: FakeTwilioRest = await nursery.start(
            partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN))
        )
        twilio.add_number(OUR_NUMBER)
        env = {
            "CALLBRIDGE_STORE": postgres_store_url,
            "PUBLIC_URL": PUBLIC,
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_API_BASE_URL": twilio.url,
        }

        def engine(name: str) -> partial[object]:
            telephony = TwilioCalls(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.url)
            return partial(running_bridge, tmp_path / name, env=env, agent=Agent(greeting="Hello."),
                           engine_id=name, telephony=telephony)  # fmt: skip

        async with engine("engine-a")() as a, engine("engine-b")() as b:  # type: ignore[operator]

            def reach(url: str) -> str:
                """The load balancer: Twilio's requests and the stream all go to B."""
                routed.append((urlsplit(url).path, b.server.identity.engine_id))
                return url.replace(PUBLIC.removeprefix("http"), b.base_url.removeprefix("http"))

            twilio.calls.reach = reach
            # Twilio asks /twiml once the person picked up, a ring after the call was created: by then A
            # has written the call's OutboundCallPlaced (it does before answering POST /api/calls)
            twilio.calls.script_number(PERSON, Answer(script=HEARS_GREETING, ring_s=1.0))
            async with httpx2.AsyncClient(base_url=a.base_url, headers=BEARER, timeout=30) as http:
                for name, words in (("sales", "You sell boats."), ("support", "You fix boats.")):
                    saved = await http.post("/api/agents", json={"name": name, "instructions": words})
                    assert saved.status_code == 201, saved.text
                rules = await http.put("/api/routing", json={"rules": [{"to": PERSON, "agent": "support"}]})
                assert rules.status_code == 200, rules.text
                answer = await http.post("/api/calls", json={"to": PERSON, "agent": "sales"})
            assert answer.status_code == 201, answer.text
            call_id = answer.json()["call_id"]
            with trio.fail_after(30):
                await twilio.calls.calls[call_id].done.wait()
                await b.wait_call_ended(call_id)
            events = await b.events(call_id)
        nursery.cancel_scope.cancel()

    assert ("/twiml", "engine-b") in routed and ("/call", "engine-b") in routed, routed
    [placed] = of_type(events, OutboundCallPlaced)
    [decision] = of_type(events, AgentRouted)
    assert placed.agent == "sales" and events.index(placed) < events.index(decision)
    assert (decision.agent, decision.source) == ("sales", "placed")
    [started] = of_type(events, CallStarted)
    assert (started.engine_id, started.agent_name) == ("engine-b", "sales")
    assert started.session_config["instructions"] == "You sell boats."
