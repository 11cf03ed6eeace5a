"""The console's side of regression tests, through its HTTP API on a real server: "Save as test" on a
recorded call writes its test file with suggested assertions, ``callbridge test`` runs it (the CLI),
and the Tests view's API lists the run with its pass/fail and its diff against the original."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import running_bridge
from regression_support import AGENT_TOML, CALLER, SCRIPT, write

from callbridge.adapters.sim.caller import place_call
from callbridge.cli import main
from callbridge.engine.agent import load_agent
from callbridge.projections.test_runs import store_run

TOKEN = {"Authorization": "Bearer test-token"}


async def call_and_save_as_test(folder: Path) -> tuple[str, dict[str, Any], list[httpx2.Response]]:
    agent = load_agent(write(folder / "agent.toml", AGENT_TOML))
    async with running_bridge(folder, script=SCRIPT, agent=agent) as bridge:
        with trio.fail_after(40):
            report = await place_call(bridge.base_url, script=CALLER)
            await bridge.wait_call_ended(report.call_sid)
        async with httpx2.AsyncClient(base_url=bridge.base_url, timeout=30) as http:
            saved = await http.post(f"/api/calls/{report.call_sid}/test", json={}, headers=TOKEN)
            others = [
                await http.post("/api/calls/CAunknown/test", json={}, headers=TOKEN),
                await http.post(f"/api/calls/{report.call_sid}/test", json={}),  # no token
                await http.get("/api/tests", headers=TOKEN),
            ]
    assert saved.status_code == 201, saved.text
    return report.call_sid, saved.json(), others


async def open_tests_view(folder: Path, run_id: str | None = None) -> tuple[dict[str, Any], httpx2.Response | None]:
    async with (
        running_bridge(folder, script=SCRIPT) as bridge,
        httpx2.AsyncClient(base_url=bridge.base_url, headers=TOKEN, timeout=30) as http,
    ):
        listing = (await http.get("/api/tests")).json()
        wanted = run_id or (listing["runs"][0]["run_id"] if listing["runs"] else None)
        run = await http.get(f"/api/tests/runs/{wanted}") if wanted else None
    return listing, run


def test_a_call_saved_as_a_test_on_the_console_runs_and_its_run_is_listed_with_its_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    call_id, saved, (unknown, unauthorized, before) = trio.run(call_and_save_as_test, tmp_path)

    assert saved["path"] == f"tests/{call_id}.toml"
    test_file = tmp_path / "tests" / f"{call_id}.toml"
    assert test_file.read_text() == saved["toml"]
    spec = tomllib.loads(saved["toml"])
    assert spec["call"] == call_id
    assert [tool["name"] for tool in spec["expect"]["tools"]] == ["get_weather_from_coords", "transfer_call"]
    assert (spec["expect"]["ended_by"], spec["expect"]["transfer_to"]) == ("transfer", "sales")
    assert unknown.status_code == 404 and unknown.json()["error"] == "no call CAunknown"
    assert unauthorized.status_code == 401
    assert before.json()["runs"] == [] and before.json()["saved"] == [f"{call_id}.toml"]

    code = main(["test", str(test_file), "--store", str(tmp_path / "callbridge.db")])
    out, _ = capsys.readouterr()
    assert code == 0, out

    listing, run = trio.run(open_tests_view, tmp_path)
    [summary] = listing["runs"]
    assert (summary["passed"], summary["failed"], summary["model"]) == (1, 0, "sim")
    assert summary["tests"] == [{"name": f"call {call_id}", "passed": True}]
    assert run is not None and run.status_code == 200
    [result] = run.json()["results"]
    assert result["original_call"] == call_id and result["source"] == str(test_file)
    assert result["diff"]["compared"] and all(turn["changed"] == [] for turn in result["diff"]["turns"])
    assert result["diff"]["turns"][2]["tools_then"] == result["diff"]["turns"][2]["tools_now"] != []

    _, missing = trio.run(open_tests_view, tmp_path, "20990101T000000-000")
    assert missing is not None and missing.status_code == 404

    # erasing the call erases its words from the saved test and the kept runs too; it cannot be
    # replayed again, nor saved as a test
    assert main(["erase", call_id, "--store", str(tmp_path / "callbridge.db")]) == 0
    capsys.readouterr()
    assert not test_file.exists()
    [kept] = (tmp_path / "test-runs").glob("*.json")
    assert call_id in kept.read_text() and "What's the weather" not in kept.read_text()
    [scrubbed] = json.loads(kept.read_text())["results"]
    assert (scrubbed["passed"], scrubbed["erased"], scrubbed["checks"], scrubbed["diff"]) == (True, True, [], None)
    assert main(["test", call_id, "--store", str(tmp_path / "callbridge.db")]) == 2
    assert capsys.readouterr().err == (
        f"callbridge test: call {call_id} was erased: its audio is gone, it cannot be replayed\n"
    )
    refused = trio.run(save_again, tmp_path, call_id)
    assert refused.status_code == 409 and "was erased" in refused.json()["error"]


async def save_again(folder: Path, call_id: str) -> httpx2.Response:
    async with (
        running_bridge(folder, script=SCRIPT) as bridge,
        httpx2.AsyncClient(base_url=bridge.base_url, headers=TOKEN, timeout=30) as http,
    ):
        return await http.post(f"/api/calls/{call_id}/test", json={})


async def test_an_erasure_made_through_the_api_scrubs_the_saved_test_and_the_kept_runs(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path / "agent.toml", AGENT_TOML))
    async with running_bridge(tmp_path, script=SCRIPT, agent=agent) as bridge:
        with trio.fail_after(40):
            report = await place_call(bridge.base_url, script=CALLER)
            await bridge.wait_call_ended(report.call_sid)
        call_id = report.call_sid
        words = {"caller": "What's the weather at the depot?", "agent_then": ["It is 22 degrees."]}
        other = {"name": "another call", "original_call": "CAother", "passed": True, "checks": [], "diff": words}
        mine = {
            "name": "this call",
            "original_call": call_id,
            "passed": False,
            "checks": [{"name": "x"}],
            "diff": words,
        }
        store_run(tmp_path, "20261206T000000-000", {"run_id": "20261206T000000-000", "results": [mine, other]})
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=TOKEN, timeout=30) as http:
            assert (await http.post(f"/api/calls/{call_id}/test", json={})).status_code == 201
            assert (await http.post(f"/api/calls/{call_id}/erase", json={})).status_code == 200
            with trio.fail_after(10):
                await bridge.server.erasures.seen.wait_for(1)
            run = (await http.get("/api/tests/runs/20261206T000000-000")).json()

    assert not (tmp_path / "tests" / f"{call_id}.toml").exists()
    scrubbed, untouched = run["results"]
    assert (scrubbed["passed"], scrubbed["erased"], scrubbed["checks"], scrubbed["diff"]) == (False, True, [], None)
    assert untouched == other
