"""``/api/agents`` and ``/api/routing`` against a real server: every save a new version in the log,
bad input refused naming the key with nothing recorded, conflicts answered 409."""

from __future__ import annotations

from pathlib import Path

import httpx2
from agents_support import SALES_LINE, agents_bridge
from bridge_harness import of_type

from callbridge.engine.events import AgentDeleted, AgentSaved, RoutingRulesSaved

AGENT_KEYS = {"instructions", "voice", "greeting", "end_call", "dtmf", "transfer_targets", "tools", "max_duration_s"}


async def test_profiles_are_created_read_versioned_listed_and_deleted(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        created = await agents.ok("POST", "/api/agents", {"name": "sales", "instructions": "Sell."}, 201)
        fetched = await agents.ok("GET", "/api/agents/sales")
        edited = dict(fetched, greeting="Sales, hello!")  # what GET answers can be PUT back
        second = await agents.ok("PUT", "/api/agents/sales", edited)
        same = await agents.ok("PUT", "/api/agents/sales", second)  # nothing changed: no new version
        listed = await agents.ok("GET", "/api/agents")
        first = await agents.ok("GET", "/api/agents/sales?version=1")
        upserted = await agents.ok("PUT", "/api/agents/support", {"instructions": "Help."}, 201)
        deleted = await agents.ok("DELETE", "/api/agents/support")
        gone = await agents.http.get("/api/agents/support")
        old = await agents.ok("GET", "/api/agents/support?version=1")
        again = await agents.ok("POST", "/api/agents", {"name": "support", "instructions": "Help again."}, 201)
        log = await agents.agents_log()

    assert created["name"] == "sales" and created["version"] == 1 and created["saved_by"] == "api"
    assert AGENT_KEYS <= set(created) and created["instructions"] == "Sell." and created["end_call"] is True
    assert created["saved_at"].endswith("Z")
    assert (second["version"], second["greeting"]) == (2, "Sales, hello!")
    assert same["version"] == 2 and same["unchanged"] is True
    assert [a["name"] for a in listed] == ["default", "sales"] and listed[1]["version"] == 2
    assert first["greeting"] is None and first["version"] == 1
    assert upserted["version"] == 1 and deleted == {"name": "support", "deleted": True, "version": 1}
    assert gone.status_code == 404 and "deleted" in gone.json()["error"]
    assert old["instructions"] == "Help."  # a deleted profile's versions stay readable
    assert again["version"] == 2  # a name and a version mean one content, forever
    assert [(type(e).__name__, getattr(e, "name", ""), getattr(e, "version", 0)) for e in log] == [
        ("AgentSaved", "default", 1),
        ("AgentSaved", "sales", 1),
        ("AgentSaved", "sales", 2),
        ("AgentSaved", "support", 1),
        ("AgentDeleted", "support", 1),
        ("AgentSaved", "support", 2),
    ]


async def test_bad_profiles_are_refused_naming_the_key_and_nothing_is_recorded(tmp_path: Path) -> None:
    cases = [
        ("POST", "/api/agents", {"name": "sales", "greeting": " "}, "greeting", "greeting: empty"),
        ("POST", "/api/agents", {"name": "sales", "temperature": 0.3}, "temperature", "unknown key 'temperature'"),
        ("POST", "/api/agents", {"name": "Sales Team"}, "name", "is not an agent name"),
        ("POST", "/api/agents", {"instructions": "x"}, "name", "name: the new agent's name is required"),
        (
            "POST",
            "/api/agents",
            {"name": "sales", "transfer_targets": [{"label": "desk", "to": "555-1234"}]},
            "transfer_targets[0].to",
            "is neither an E.164 number",
        ),
        ("POST", "/api/agents", {"name": "sales", "dtmf": "shout"}, "dtmf", "dtmf: Invalid enum value 'shout'"),
        (
            "POST",
            "/api/agents",
            {"name": "sales", "tools": [{"name": "lookup", "url": "https://x.example/t", "secret_env": "NOPE_SECRET"}]},
            "tools[0].secret_env",
            "NOPE_SECRET",
        ),
        ("PUT", "/api/agents/sales", {"name": "support"}, "name", "differs from the URL's 'sales'"),
        ("PUT", "/api/agents/default", {"version": "latest"}, "version", "is not a version number"),
    ]
    async with agents_bridge(tmp_path) as agents:
        answers = [await agents.http.request(method, path, json=body) for method, path, body, _, _ in cases]
        log = await agents.agents_log()

    for (_, _, _, key, words), answer in zip(cases, answers, strict=True):
        assert answer.status_code == 400, answer.text
        assert answer.json()["key"] == key and words in answer.json()["error"], answer.json()
    assert [type(e) for e in log] == [AgentSaved]  # the default's first version only


async def test_conflicts_and_refusals_answer_409_and_say_what_to_do(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        await agents.ok("POST", "/api/agents", {"name": "sales"}, 201)
        await agents.ok("PUT", "/api/routing", {"rules": [{"to": SALES_LINE, "agent": "sales"}]})
        exists = await agents.http.post("/api/agents", json={"name": "sales"})
        await agents.ok("PUT", "/api/agents/sales", {"instructions": "Two.", "version": 1})
        stale = await agents.http.put("/api/agents/sales", json={"instructions": "Mine.", "version": 1})
        default = await agents.http.delete("/api/agents/default")
        routed = await agents.http.delete("/api/agents/sales")
        unknown = await agents.http.delete("/api/agents/nobody")
        no_version = await agents.http.post("/api/agents/sales/rollback", json={"version": 9})
        current = await agents.ok("GET", "/api/agents/sales")

    assert exists.status_code == 409 and "PUT /api/agents/sales" in exists.json()["error"]
    assert stale.status_code == 409 and stale.json()["key"] == "version"
    assert "is at version 2" in stale.json()["error"] and "reload it" in stale.json()["error"]
    assert default.status_code == 409 and "cannot be deleted" in default.json()["error"]
    assert routed.status_code == 409 and "rule #1" in routed.json()["error"]
    assert "change the routing first" in routed.json()["error"]
    assert unknown.status_code == 404 and no_version.status_code == 404
    assert (current["version"], current["instructions"]) == (2, "Two.")


async def test_the_routing_is_saved_versioned_and_checked_against_the_agents(tmp_path: Path) -> None:
    rules = [
        {"to": SALES_LINE, "agent": "sales", "note": "the sales line"},
        {"from": "+44*", "days": ["sat", "sun"], "hours": "09:00-17:00", "timezone": "Europe/London", "agent": "sales"},
    ]
    async with agents_bridge(tmp_path) as agents:
        empty = await agents.ok("GET", "/api/routing")
        unknown_agent = await agents.http.put("/api/routing", json={"rules": rules})
        await agents.ok("POST", "/api/agents", {"name": "sales"}, 201)
        saved = await agents.ok("PUT", "/api/routing", {"rules": rules, "default_agent": "sales"})
        fetched = await agents.ok("GET", "/api/routing")
        unchanged = await agents.ok("PUT", "/api/routing", fetched)
        stale = await agents.http.put("/api/routing", json={"rules": [], "version": 0})
        bad = await agents.http.put("/api/routing", json={"rules": [{"agent": "sales", "hours": "9 to 5"}]})
        tried = await agents.ok("POST", "/api/routing/test", {"to": SALES_LINE})
        log = await agents.agents_log()

    assert empty["version"] == 0 and empty["rules"] == [] and empty["default_agent"] == "default"
    assert unknown_agent.status_code == 400 and unknown_agent.json()["key"] == "rules[0].agent"
    assert "'sales' is not an agent (the agents: default)" in unknown_agent.json()["error"]
    assert saved["version"] == 1 and saved["rules"] == rules and saved["agents"] == ["default", "sales"]
    assert fetched["saved_by"] == "api" and unchanged.get("unchanged") is True and unchanged["version"] == 1
    assert stale.status_code == 409 and bad.status_code == 400 and bad.json()["key"] == "rules[0].hours"
    assert tried == {"agent": "sales", "version": 1, "rule": 1, "reason": f"rule #1 'to={SALES_LINE}'"}
    assert len(of_type(log, RoutingRulesSaved)) == 1 and of_type(log, AgentDeleted) == []


async def test_the_agents_api_needs_the_token(tmp_path: Path) -> None:
    async with agents_bridge(tmp_path) as agents:
        async with httpx2.AsyncClient(base_url=agents.bridge.base_url) as anonymous:
            answers = [
                await anonymous.get("/api/agents"),
                await anonymous.post("/api/agents", json={"name": "x"}),
                await anonymous.put("/api/routing", json={}),
            ]
        log = await agents.agents_log()
    assert [a.status_code for a in answers] == [401, 401, 401] and len(log) == 1
