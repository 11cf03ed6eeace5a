"""Agents and routing across engines sharing one PostgreSQL store: a profile saved on one engine
routes the next call on another, ``/twiml``'s decision on one engine reaches the stream that Twilio
opens on the other (through the call's log), and two engines saving one profile at the same moment
get two versions, never the same one twice."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
import trio
from agents_support import BEARER, SALES_LINE, SHORT
from bridge_harness import of_type, running_bridge
from trio_websocket import open_websocket_url

from callbridge.adapters.sim.caller_http import new_sid, request_twiml, voice_webhook_params
from callbridge.adapters.sim.caller_report import CallReport
from callbridge.adapters.sim.caller_stream import run_stream
from callbridge.engine.events import AGENTS_STREAM, AgentRouted, AgentSaved, CallStarted, ModelEventSent

pytestmark = pytest.mark.postgres


async def test_twimls_decision_on_one_engine_answers_the_stream_on_another(
    postgres_store_url: str, tmp_path: Path
) -> None:
    env = {"CALLBRIDGE_STORE": postgres_store_url}
    async with (
        running_bridge(tmp_path / "a", env=env, engine_id="engine-a") as a,
        running_bridge(tmp_path / "b", env=env, engine_id="engine-b") as b,
        httpx2.AsyncClient(base_url=a.base_url, headers=BEARER) as api_a,
        httpx2.AsyncClient(headers=BEARER) as plain,
    ):
        created = await api_a.post("/api/agents", json={"name": "sales", "instructions": "Saved on A."})
        routed = await api_a.put("/api/routing", json={"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        assert created.status_code == 201 and routed.status_code == 200
        # Twilio asks engine B for the TwiML ...
        call_sid = new_sid("CA")
        params = voice_webhook_params(
            call_sid=call_sid, account_sid=new_sid("AC"), from_number="+15550001111", to_number=SALES_LINE
        )
        stream_url, parameters = await request_twiml(plain, b.base_url, params, auth_token=None)
        # ... and opens the media stream on engine A
        report = CallReport(call_sid=call_sid, stream_sid=new_sid("MZ"), to_number=SALES_LINE)
        with trio.fail_after(30):
            async with open_websocket_url(a.base_url.replace("http", "ws") + "/call") as ws:
                await run_stream(
                    ws, report, script=SHORT, account_sid=params["AccountSid"], custom_parameters=parameters
                )
            await a.wait_call_ended(call_sid)
        events = await a.events(call_sid)

    assert stream_url.endswith("/call") and report.errors == []
    decision, started = of_type(events, AgentRouted), of_type(events, CallStarted)
    assert [(d.agent, d.version, d.reason) for d in decision] == [("sales", 1, f"rule #1 'to={SALES_LINE}'")]
    assert events.index(decision[0]) < events.index(started[0])  # B recorded it before A started the call
    assert (started[0].engine_id, started[0].agent_name, started[0].agent_version) == ("engine-a", "sales", 1)
    (update,) = [e for e in of_type(events, ModelEventSent) if e.type == "session.update"][:1]
    assert '"instructions":"Saved on A."' in update.raw


async def test_two_engines_saving_one_profile_at_once_get_two_versions(postgres_store_url: str, tmp_path: Path) -> None:
    env = {"CALLBRIDGE_STORE": postgres_store_url}
    answers: list[httpx2.Response] = []
    async with (
        running_bridge(tmp_path / "a", env=env, engine_id="engine-a") as a,
        running_bridge(tmp_path / "b", env=env, engine_id="engine-b") as b,
    ):
        async with httpx2.AsyncClient(base_url=a.base_url, headers=BEARER) as first:
            assert (await first.post("/api/agents", json={"name": "sales"})).status_code == 201

        async def save(base_url: str, words: str) -> None:
            async with httpx2.AsyncClient(base_url=base_url, headers=BEARER) as client:
                answers.append(await client.put("/api/agents/sales", json={"instructions": words}))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(save, a.base_url, "From A.")
            nursery.start_soon(save, b.base_url, "From B.")
        log = await a.events(AGENTS_STREAM)

    assert [r.status_code for r in answers] == [200, 200]
    assert sorted(r.json()["version"] for r in answers) == [2, 3]
    versions = [(e.version, e.agent["instructions"]) for e in of_type(log, AgentSaved) if e.name == "sales"]
    assert [v for v, _ in versions] == [1, 2, 3] and {w for _, w in versions[1:]} == {"From A.", "From B."}
