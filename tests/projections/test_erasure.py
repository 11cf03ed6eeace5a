"""Erasing a call (``POST /api/calls/{id}/erase``, ``callbridge erase``): nothing of what was said,
typed or sent remains readable in any file — the store, its keys, the views, their logs — while the
call's timing and metrics stay, other calls are untouched, and a rebuild of the views agrees."""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import httpx2
import trio
from bridge_harness import running_bridge
from old_log_answers import FIXTURE
from privacy_calls import (
    CALLER_NUMBER,
    ORDER,
    PHRASE,
    SCRIPT,
    SECRETS,
    files_holding,
    order_registry,
    place_secret_call,
)
from test_mcp_support import mcp_client, structured

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import Silence, Speak
from callbridge.cli import main as cli_main
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.replay_cli import replay_cli
from callbridge.projections.views_db import dump_views, open_views

BEARER = {"Authorization": "Bearer test-token"}
KEPT = "tangerine submarine"


def kept_call(store_path: Path) -> None:
    """Another call, recorded before the server starts: it must survive the erasure untouched."""
    store = EventStore(str(store_path))
    CallLog("CAkept").start().caller_says(f"Bring the {KEPT}").assistant_says("Right away.").end().write(store)
    store.close()


async def test_an_erased_call_leaves_no_plaintext_in_any_file_and_reads_as_erased(tmp_path: Path) -> None:
    kept_call(tmp_path / "callbridge.db")
    async with running_bridge(tmp_path, script=SCRIPT, registry=order_registry()) as bridge:
        call_id = await place_secret_call(bridge)
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            before = (await http.get(f"/api/conversations/{call_id}")).json()
            assert before["caller_number"] == CALLER_NUMBER and before["erased_at"] is None
            assert any(PHRASE in (item["text"] or "") for item in before["items"])
            assert any(ORDER in (item["arguments"] or "") for item in before["items"])
            held = files_holding(tmp_path, SECRETS)  # the test can fail: the views held them
            assert any(name.startswith("views.db") and len(found) == 4 for name, found in held.items()), held

            erased = await http.post(f"/api/calls/{call_id}/erase")
            assert erased.status_code == 200, erased.text
            assert erased.json()["erased"] is True and erased.json()["already_erased"] is False

            after = (await http.get(f"/api/conversations/{call_id}")).json()
            assert after["erased_at"] is not None and after["caller_number"] == "[erased]"
            assert after["status"] == "completed" and after["duration_seconds"] == before["duration_seconds"]
            assert [i["item_id"] for i in after["items"]] == [i["item_id"] for i in before["items"]]
            texts = [i[k] for i in after["items"] for k in ("text", "arguments", "output") if i[k]]
            assert texts and set(texts) == {"[erased]"}
            assert (await http.get("/api/conversations", params={"q": "marmalade"})).json() == []
            wav = await http.get(f"/api/calls/{call_id}/recording.wav")
            assert wav.status_code == 410 and "erased" in wav.json()["error"]
            events = (await http.get(f"/api/calls/{call_id}/events", params={"audio": 1})).json()
            assert any(record.get("erased") for record in events)
            assert not any(secret in str(events) for secret in SECRETS)
            assert events[-1]["type"] == "CallErased"
            metrics = (await http.get(f"/api/calls/{call_id}/metrics")).json()
            assert metrics["tool_calls"] == 1 and metrics["responses"] >= 2  # what was measured stays

            kept = (await http.get("/api/conversations/CAkept")).json()
            assert kept["erased_at"] is None and any(KEPT in (i["text"] or "") for i in kept["items"])
            assert (await http.get("/api/calls/CAkept/recording.wav")).status_code == 200
            again = await http.post(f"/api/calls/{call_id}/erase")
            assert again.status_code == 200 and again.json()["already_erased"] is True

            async with mcp_client(f"{bridge.base_url}/mcp", BEARER) as mcp:  # what an AI assistant reads
                shown = await structured(mcp, "get_conversation", {"call_id": call_id})
                timeline = await mcp.call_tool("get_call_timeline", {"call_id": call_id})
                found = await structured(mcp, "search_conversations", {"query": "marmalade"})
            assert shown["erased_at"] is not None and found["results"] == []
            assert not any(secret in str(shown) + str(timeline.content) for secret in SECRETS)
            assert files_holding(tmp_path, SECRETS) == {}  # while the server runs
            live_views = dump_views(open_views(bridge.server.views_path))
        assert files_holding(tmp_path, SECRETS) == {}  # and after it stopped

    # the rebuild, through the command users run, agrees with the views folded live
    store = str(tmp_path / "callbridge.db")
    assert cli_main(["projections", "rebuild", "--store", store, "--views", str(tmp_path / "rebuilt.db")]) == 0
    rebuilt = dump_views(open_views(tmp_path / "rebuilt.db"))
    assert rebuilt == live_views
    assert files_holding(tmp_path, SECRETS) == {}

    timeline = io.StringIO()
    assert replay_cli(store, call_id, wav=None, as_json=False, out=timeline) == 0
    assert "call erased (api)" in timeline.getvalue() and not any(s in timeline.getvalue() for s in SECRETS)
    assert replay_cli(store, call_id, wav=str(tmp_path / "erased.wav"), as_json=False, out=io.StringIO()) == 1
    assert not (tmp_path / "erased.wav").exists()
    assert replay_cli(store, "CAkept", wav=str(tmp_path / "kept.wav"), as_json=False, out=io.StringIO()) == 0


async def test_a_live_or_unknown_call_is_not_erased(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    # no CallEnded, and too recent to be ended as lost (unowned calls are, after 4 h)
    CallLog("CAopen", start_at=time.time()).start().caller_says("still talking").write(store)
    store.close()
    async with running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            unknown = await http.post("/api/calls/CAnobody/erase")
            assert unknown.status_code == 404
            open_call = await http.post("/api/calls/CAopen/erase")
            assert open_call.status_code == 409 and '"force": true' in open_call.json()["error"]
            bad = await http.post(
                "/api/calls/CAopen/erase", content=b"[1]", headers={"Content-Type": "application/json"}
            )
            assert bad.status_code == 400
            forced = await http.post("/api/calls/CAopen/erase", json={"force": True})
            assert forced.status_code == 200
            conversation = (await http.get("/api/conversations/CAopen")).json()
            assert conversation["erased_at"] is not None
            assert {i["text"] for i in conversation["items"] if i["text"]} == {"[erased]"}


def _erase(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "callbridge", "erase", *args, "--store", str(store)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=store.parent)


def test_callbridge_erase_erases_from_the_command_line_and_updates_the_views(tmp_path: Path) -> None:
    store_path = tmp_path / "callbridge.db"
    store = EventStore(str(store_path))
    CallLog("CAgone", from_number="+15550001111").start().caller_says(f"the {PHRASE}").end().write(store)
    CallLog("CAstays").start().caller_says(f"the {KEPT}").end().write(store)
    store.close()
    assert cli_main(["projections", "rebuild", "--store", str(store_path)]) == 0  # the folder's views.db
    with sqlite3.connect(tmp_path / "views.db") as db:
        assert db.execute("SELECT count(*) FROM conversation_items WHERE text LIKE '%marmalade%'").fetchone() == (1,)

    done = _erase(store_path, "CAgone")
    assert done.returncode == 0, done.stderr
    assert "call CAgone is erased" in done.stdout and "views.db: updated" in done.stdout
    assert files_holding(tmp_path, ("marmalade", "+15550001111")) == {}
    views = open_views(tmp_path / "views.db")
    texts = dict(views.execute("SELECT call_id, group_concat(text) FROM conversation_items GROUP BY call_id"))
    assert texts == {"CAgone": "[erased]", "CAstays": f"the {KEPT}"}

    again = _erase(store_path, "CAgone")
    assert again.returncode == 0 and "was already erased" in again.stdout
    unknown = _erase(store_path, "CAnobody")
    assert unknown.returncode == 1 and "no events for call CAnobody" in unknown.stderr
    missing = _erase(tmp_path / "typo.db", "CAgone")
    assert missing.returncode == 2 and not (tmp_path / "typo.db").exists()


def test_a_call_recorded_before_encryption_is_scrubbed_in_place(tmp_path: Path) -> None:
    store_path = tmp_path / "callbridge.db"
    shutil.copy(FIXTURE / "callbridge.db", store_path)
    assert b"My name is Ada" in store_path.read_bytes()  # the v1 engine stored everything in clear
    calls = [
        "CAfixture0001plainturn00000000000",
        "CAfixture0002toolcall000000000000",
        "CAfixture0003bargein0000000000000",
    ]
    for call_id in calls:
        done = _erase(store_path, call_id)
        assert done.returncode == 0, done.stderr
        assert "events recorded before encryption were scrubbed" in done.stdout
    store = EventStore(str(store_path))
    try:
        for call_id in calls:
            recorded = store.read_call(call_id)
            assert recorded[-1].event.__class__.__name__ == "CallErased"
            assert "Ada" not in str([r.event for r in recorded])
        untouched = [r.event for r in store.read_call("CAfixture0004reconnect00000000000")]
        assert "My name is Ada" in str(untouched)  # the fourth call reads as before
    finally:
        store.close()
    with sqlite3.connect(store_path) as db:  # no byte of the three calls in the file, the fourth's only
        states = b"".join(row[0] for row in db.execute("SELECT state FROM stored_events"))
    assert states.count(b"My name is Ada") == store_path.read_bytes().count(b"My name is Ada") >= 1
    assert b"Berlin" in states  # the fourth call's own words


async def test_a_call_live_on_this_engine_is_refused_until_it_has_ended(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        heard = trio.Event()
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            async with trio.open_nursery() as nursery:
                script = [Speak(600), Silence(600_000)]
                nursery.start_soon(
                    partial(place_call, bridge.base_url, script=script, on_media_received=lambda *_: heard.set())
                )
                await heard.wait()
                (call_id,) = bridge.server.live.calls
                refused = await http.post(f"/api/calls/{call_id}/erase")
                assert refused.status_code == 409 and "live on this engine" in refused.json()["error"]
                bridge.server.live.hang_up_all("test_done")
            await bridge.wait_call_ended(call_id)
            assert (await http.post(f"/api/calls/{call_id}/erase")).status_code == 200
