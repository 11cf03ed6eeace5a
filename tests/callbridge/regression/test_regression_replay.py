"""``callbridge test`` on a recorded call, through the CLI entry point, over real sockets: replayed
against the agent that answered it, it passes with an empty diff; replayed against a changed agent,
the expected assertions fail and the diff shows what changed, in text, JSON and JUnit XML."""

from __future__ import annotations

import json
import shutil
import time
from functools import partial
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import trio
from regression_support import AGENT_TOML, SCRIPT, record_call, write

from callbridge.adapters.sim.fake_openai import serve_fake_openai
from callbridge.cli import main
from callbridge.engine.events import SETTINGS_STREAM, CallStarted, DefaultSessionConfigSaved
from callbridge.engine.store import EventStore, open_existing_store


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("recorded")
    agent = write(folder / "agent.toml", AGENT_TOML)
    return folder, record_call(folder, agent)


def started_calls(store_url: str) -> list[str]:
    store = open_existing_store(store_url)
    try:
        return [r.event.call_id for r in store.read_all(limit=100_000) if isinstance(r.event, CallStarted)]
    finally:
        store.close()


def test_a_recorded_call_replayed_against_its_unchanged_agent_passes_with_an_empty_diff(
    recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, call_id = recorded
    store = str(folder / "callbridge.db")
    junit = folder / "unchanged.xml"
    # no --agent: today's version of the profile that answered the call, from the store
    code = main(["test", "--last", "1", "--of-agent", "default", "--store", store, "--json", "--junit", str(junit)])
    out, err = capsys.readouterr()

    assert code == 0, out + err
    run = json.loads(out)
    [result] = run["results"]
    assert result["passed"] and result["original_call"] == call_id and result["new_call"] != call_id
    assert f"[1/1] PASS call {call_id}" in err  # the progress line
    checks = {check["name"].split(" with arguments")[0]: check["ok"] for check in result["checks"]}
    assert checks == {
        "call completed": True,
        "tool called: get_weather_from_coords": True,
        "tool called: transfer_call": True,
        "ended by transfer": True,
        "transferred to sales": True,
        "no model errors": True,
    }
    diff = result["diff"]
    assert diff["compared"] and [turn["changed"] for turn in diff["turns"]] == [[], [], []]
    assert diff["outcome_then"] == diff["outcome_now"] == "transferred to sales"
    assert [t["tools_now"] for t in diff["turns"]] == [t["tools_then"] for t in diff["turns"]]
    assert diff["turns"][0]["agent_now"] == ["Acme Plumbing, how can I help?"]
    assert diff["turns"][1]["caller"] == "What's the weather at the depot?"
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    assert started_calls(store) == [call_id]  # the rerun went to its own store, not the recorded one


def test_a_changed_agent_fails_the_expected_assertions_and_the_diff_shows_what_changed(
    recorded: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, call_id = recorded
    # today's agent greets differently, has new instructions and no transfer target: the model is not
    # offered the transfer
    changed = write(
        folder / "changed.toml", 'greeting = "Welcome to Acme, what do you need?"\ninstructions = "Be terse."\n'
    )
    junit = folder / "changed.xml"
    code = main(
        ["test", call_id, "--store", str(folder / "callbridge.db"), "--agent", str(changed), "--junit", str(junit)]
    )
    out, _ = capsys.readouterr()

    assert code == 1
    assert f"FAIL call {call_id}" in out
    assert "NOT ended by transfer: the caller hung up" in out
    assert "NOT transferred to sales" in out
    assert "NOT tool called: transfer_call" in out
    assert "ok  tool called: get_weather_from_coords" in out
    # new instructions: the simulated model cannot follow them, and the run says so
    assert "note: the instructions differ from the recorded call's, and the simulated model cannot" in out
    lines = out.splitlines()
    greeting = next(i for i, line in enumerate(lines) if "turn 0:" in line)
    assert lines[greeting].lstrip().startswith("! turn 0") and "[changed: agent]" in lines[greeting]
    assert "Acme Plumbing, how can I help?" in lines[greeting + 1] and "Welcome to Acme" in lines[greeting + 1]
    transfer = next(line for line in lines if "turn 2:" in line)
    assert transfer.lstrip().startswith("! turn 2") and "tools" in transfer
    assert any(
        line.lstrip().startswith("! ended: transferred to sales") and "the caller hung up" in line for line in lines
    )
    suite = ET.parse(junit).getroot()
    [case] = suite.findall("testcase")
    failure = case.find("failure")
    assert suite.get("failures") == "1" and failure is not None
    assert failure.get("message", "").startswith("tool called: transfer_call")
    assert "! ended: transferred to sales" in (failure.text or "")


def test_an_unknown_or_missing_call_is_bad_input_before_anything_runs(
    recorded: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, _ = recorded
    assert main(["test", "CAnope", "--store", str(folder / "callbridge.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callbridge test: no call CAnope in ") and "GET /api/conversations" in err
    assert main(["test", "CAnope", "--store", str(tmp_path / "none" / "callbridge.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("callbridge test: ") and "check --store or CALLBRIDGE_STORE" in err
    assert not (tmp_path / "none").exists()  # a store is never created by reading it


async def test_with_an_api_key_the_rerun_talks_to_the_configured_realtime_api_with_todays_session(
    recorded: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``OPENAI_API_KEY`` set: the rerun's engine opens ``OPENAI_REALTIME_URL`` with the key (here a
    simulated model that checks it and answers on its own script, as the real one answers afresh),
    configured with today's default session from the recorded store (the console's Session page)."""
    folder, call_id = recorded
    for file in folder.glob("callbridge*"):  # a copy of the store (and its key store) to change
        shutil.copy(file, tmp_path / file.name)
    store = EventStore(str(tmp_path / "callbridge.db"))
    today = {"instructions": "You answer for Acme Plumbing. Never mention prices.", "voice": "marin"}
    store.append([DefaultSessionConfigSaved(call_id=SETTINGS_STREAM, at=time.time(), session_config=today)])
    store.close()
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0, script=SCRIPT, api_key="sk-test-key"))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        monkeypatch.setenv("OPENAI_REALTIME_URL", fake.url)
        argv = ["test", call_id, "--store", str(tmp_path / "callbridge.db"), "--json"]
        code = await trio.to_thread.run_sync(main, argv)
        sessions = list(fake.sessions)
        nursery.cancel_scope.cancel()
    out, err = capsys.readouterr()

    assert code == 0, out + err
    run = json.loads(out)
    assert run["model"] == "openai" and run["results"][0]["passed"]
    assert len(sessions) == 1 and "sk-test-key" not in out + err
    updates = [json.loads(e.raw)["session"] for e in sessions[0].client_events if e.type == "session.update"]
    assert updates[0]["instructions"] == today["instructions"]
