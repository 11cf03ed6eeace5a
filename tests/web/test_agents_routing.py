"""Which agent answers, over real sockets: simulated calls through ``/twiml`` and ``/call`` to a real
server whose profiles and routing rules were saved through the API.

Each call's log says which agent answered and why (``AgentRouted``, ``CallStarted``), and what the
simulated model was told (``session.update``) is that agent's."""

from __future__ import annotations

import io
from datetime import datetime
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import trio
from agents_support import GREETED, SALES_LINE, SUPPORT_LINE, AgentsBridge, agents_bridge, session_updates
from bridge_harness import of_type

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.engine.agent import DEFAULT_AGENT, Agent, load_agent
from callbridge.engine.events import AGENTS_STREAM, AgentRouted, AgentSaved, AssistantSaid, TransferRequested
from callbridge.projections.replay_cli import replay_cli

SCRIPT = Script(turns=[Turn(transcript="Hello?", reply="Hi!")])
A_LONG_CALL = [Silence(60_000), HangUp()]


async def two_agents(agents: AgentsBridge) -> None:
    await agents.ok(
        "POST", "/api/agents", {"name": "sales", "instructions": "You sell boats.", "greeting": "Boat sales!"}, 201
    )
    await agents.ok(
        "POST",
        "/api/agents",
        {"name": "support", "instructions": "You fix boats.", "greeting": "Boat repairs!", "voice": "cedar"},
        201,
    )
    rules = [{"to": SALES_LINE, "agent": "sales"}, {"to": "+1555123000?", "agent": "support"}]
    await agents.ok("PUT", "/api/routing", {"rules": rules})


async def test_two_numbers_reach_two_agents_and_each_call_says_which_and_why(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path, script=SCRIPT) as agents:
        await two_agents(agents)
        sales = await agents.call(SALES_LINE, GREETED)
        support = await agents.call(SUPPORT_LINE, GREETED)
        told = [session_updates(session)[0] for session in agents.bridge.fake.sessions]

    assert (sales.routed.agent, sales.routed.version, sales.routed.source) == ("sales", 1, "rule")
    assert sales.routed.reason == f"rule #1 'to={SALES_LINE}'" and sales.routed.rule == 1
    assert (support.routed.agent, support.routed.reason) == ("support", "rule #2 'to=+1555123000?'")
    assert sales.events.index(sales.routed) < sales.events.index(sales.started)  # decided at /twiml
    assert (sales.started.agent_name, sales.started.agent_version) == ("sales", 1)
    assert (support.started.agent_name, support.started.agent_version) == ("support", 1)
    # what each call told the model is its agent's, in the log and at the model itself
    assert sales.sent("session.update")[0]["session"]["instructions"] == "You sell boats."
    assert support.sent("session.update")[0]["session"]["instructions"] == "You fix boats."
    assert [t["instructions"] for t in told] == ["You sell boats.", "You fix boats."]
    assert told[1]["audio"]["output"]["voice"] == "cedar"
    assert sales.started.session_config["instructions"] == "You sell boats."
    greetings = [
        [e.text for e in of_type(c.events, AssistantSaid) if e.purpose == "greeting"] for c in (sales, support)
    ]
    assert greetings == [["Boat sales!"], ["Boat repairs!"]]


async def test_a_number_no_rule_names_reaches_the_default_agent(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await two_agents(agents)
        other = await agents.call("+15550009999")
    assert (other.routed.agent, other.routed.version, other.routed.reason) == ("default", 1, "default")
    assert other.started.agent_name == "default"


async def test_each_call_records_the_version_it_ran_and_a_rollback_is_a_new_version(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "Version one."}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        first = await agents.call(SALES_LINE)
        second_save = await agents.ok("PUT", "/api/agents/sales", {"instructions": "Version two.", "version": 1})
        second = await agents.call(SALES_LINE)
        rolled = await agents.ok("POST", "/api/agents/sales/rollback", {"version": 1})
        third = await agents.call(SALES_LINE)
        diff = await agents.ok("GET", "/api/agents/sales/diff?from=1&to=2")
        history = await agents.ok("GET", "/api/agents/sales/versions")

    assert second_save["version"] == 2 and rolled["version"] == 3 and rolled["rolled_back_from"] == 1
    ran = [
        (c.started.agent_version, c.sent("session.update")[0]["session"]["instructions"])
        for c in (first, second, third)
    ]
    assert ran == [(1, "Version one."), (2, "Version two."), (3, "Version one.")]
    assert [c.routed.version for c in (first, second, third)] == [1, 2, 3]
    (change,) = diff["changes"]
    assert (change["key"], change["before"], change["after"]) == ("instructions", "Version one.", "Version two.")
    assert "-Version one." in change["diff"] and "+Version two." in change["diff"]
    assert [(v["version"], v.get("rolled_back_from")) for v in history["versions"]] == [(3, 1), (2, None), (1, None)]
    # replay says which agent and version answered, and why
    printed = io.StringIO()
    assert (
        replay_cli(str(tmp_path / "callbridge.db"), second.report.call_sid, wav=None, as_json=False, out=printed) == 0
    )
    assert f"answered by agent sales v2: rule #1 'to={SALES_LINE}'" in printed.getvalue()


async def test_the_profile_wins_for_its_own_keys_over_the_consoles_default_session(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/session", {"session": {"instructions": "Console words.", "voice": "ballad"}})
        await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "Sales words."}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        sales = await agents.call(SALES_LINE)
        default = await agents.call("+15550009999")

    sales_session = sales.sent("session.update")[0]["session"]
    default_session = default.sent("session.update")[0]["session"]
    # the profile sets instructions: its own win; it sets no voice: the console's default stands
    assert (sales_session["instructions"], sales_session["audio"]["output"]["voice"]) == ("Sales words.", "ballad")
    # the built-in default agent sets neither: the console's default session decides both
    assert (default_session["instructions"], default_session["audio"]["output"]["voice"]) == (
        "Console words.",
        "ballad",
    )


def local(text: str, zone: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone)).timestamp()


async def test_a_time_of_day_rule_decides_by_the_clock_in_its_time_zone(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/agents", {"name": "night", "instructions": "It is late."}, 201)
        rule = {"hours": "18:00-08:00", "timezone": "America/New_York", "agent": "night"}
        await agents.ok("PUT", "/api/routing", {"rules": [rule]})
        router = agents.bridge.server.routing
        router.clock = lambda: local("2026-03-04 22:30", "America/New_York")
        late = await agents.call(SALES_LINE)
        router.clock = lambda: local("2026-03-04 10:00", "America/New_York")  # 15:00 in UTC: still day there
        day = await agents.call(SALES_LINE)
        tried = await agents.ok(
            "POST", "/api/routing/test", {"to": SALES_LINE, "at": local("2026-03-05 07:59", "America/New_York")}
        )

    assert (late.routed.agent, late.routed.reason) == ("night", "rule #1 'hours=18:00-08:00 America/New_York'")
    assert late.sent("session.update")[0]["session"]["instructions"] == "It is late."
    assert (day.routed.agent, day.routed.reason) == ("default", "default")
    assert (tried["agent"], tried["rule"]) == ("night", 1)


async def test_the_agent_file_is_defaults_first_version_and_a_changed_file_a_new_one(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('instructions = "From the file."\n', encoding="utf-8")
    env = {"CALLBRIDGE_AGENT": str(path)}

    async def start(agent: Agent) -> tuple[list[AgentSaved], str]:
        async with agents_bridge(tmp_path, agent=agent, env=env) as agents:
            call = await agents.call(SALES_LINE)
            log = of_type(await agents.agents_log(), AgentSaved)
            return log, call.sent("session.update")[0]["session"]["instructions"]

    first, said = await start(load_agent(path))
    assert [(e.version, e.source, e.by) for e in first] == [(1, f"file:{path}", "serve")] and said == "From the file."
    again, _ = await start(load_agent(path))  # a restart with the same file saves nothing
    assert len(again) == 1
    async with agents_bridge(tmp_path, agent=load_agent(path), env=env) as agents:
        await agents.ok("PUT", "/api/agents/default", {"instructions": "From the console."})
    kept, said = await start(load_agent(path))  # the console's save survives a restart with the same file
    assert len(kept) == 2 and said == "From the console."
    path.write_text('instructions = "A new file."\n', encoding="utf-8")
    changed, said = await start(load_agent(path))
    assert [(e.version, e.source) for e in changed[2:]] == [(3, f"file:{path}")] and said == "A new file."
    assert of_type(changed, AgentSaved)[0].call_id == AGENTS_STREAM


async def test_an_operators_transfer_uses_the_targets_of_the_agent_that_answered_the_call(tmp_path: Path) -> None:
    desk = {"label": "desk", "to": "+15557654321"}
    async with agents_bridge(tmp_path) as agents, trio.open_nursery() as callers:
        await agents.ok("POST", "/api/agents", {"name": "sales", "transfer_targets": [desk]}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        live = agents.bridge.server.live
        callers.start_soon(
            partial(place_call, agents.bridge.base_url, script=A_LONG_CALL, to_number=SALES_LINE, call_sid="CAsales1")
        )
        with trio.fail_after(20):
            while live.get("CAsales1") is None:
                await live.wait_added()
        its_agent = await agents.ok("GET", "/api/agent?call_id=CAsales1")
        default = await agents.ok("GET", "/api/agent")
        wrong = await agents.http.post("/api/calls/CAsales1/transfer", json={"target": "sales"})
        moved = await agents.http.post("/api/calls/CAsales1/transfer", json={"target": "desk"})
        await agents.bridge.wait_call_ended("CAsales1")
        events = await agents.bridge.events("CAsales1")
        callers.cancel_scope.cancel()

    assert [t["label"] for t in its_agent["transfer_targets"]] == ["desk"] and default["transfer_targets"] == []
    assert wrong.status_code == 400 and "the targets are: desk" in wrong.json()["error"]
    assert moved.status_code == 202, moved.text
    assert [(r.label, r.to, r.by) for r in of_type(events, TransferRequested)] == [("desk", desk["to"], "operator")]


async def test_without_an_agent_file_a_restart_keeps_the_saved_default(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path, agent=DEFAULT_AGENT) as agents:  # as `serve` without --agent
        await agents.ok("PUT", "/api/agents/default", {"instructions": "Saved in the console."})
    async with agents_bridge(tmp_path, agent=DEFAULT_AGENT) as agents:
        call = await agents.call(SALES_LINE)
        log = of_type(await agents.agents_log(), AgentSaved)
    assert [(e.version, e.source) for e in log] == [(1, "built-in"), (2, "")]
    assert call.sent("session.update")[0]["session"]["instructions"] == "Saved in the console."


async def test_a_call_keeps_its_first_decision_when_twilio_asks_twiml_again(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await two_agents(agents)
        form = {"CallSid": "CA" + "7" * 32, "From": "+15550001111", "To": SALES_LINE}
        first = await agents.http.post("/twiml", data=form)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "support"}]})
        again = await agents.http.post("/twiml", data=form)  # a retry, or a <Redirect> back to /twiml
        await agents.bridge.server.writer.flush()
        routed = [
            r.event for r in agents.bridge.server.store.read_call(form["CallSid"]) if type(r.event) is AgentRouted
        ]
    assert first.status_code == again.status_code == 200
    assert [(r.agent, r.reason) for r in routed] == [("sales", f"rule #1 'to={SALES_LINE}'")]
