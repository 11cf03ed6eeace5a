"""``callbridge serve`` when its store cannot take writes — a real SQLite file, read-only or on a full
disk, in a real process: it refuses to start on one, says so on ``/healthz`` (503 and why) and refuses
calls while the disk is full, recovers by itself, and a SIGTERM meanwhile ends within its time with
the truth about the events it could not write."""

from __future__ import annotations

import base64
import re
import resource
from pathlib import Path

import pytest
import trio
from serve_process import serve
from store_support import fill_disk, free_disk, read_only, store_files

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence
from callbridge.engine.apology import Apology
from callbridge.engine.store import EventStore

FAST = {"CALLBRIDGE_HEARTBEAT_SECONDS": "0.5", "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "2"}
DEADLINE = 60  # a safety net that turns a hang into a failure, not a timing assumption


def existing_store(tmp_path: Path) -> Path:
    db = tmp_path / "data" / "callbridge.db"
    EventStore(str(db)).close()
    return db


def small_disk() -> None:
    """In the child: no file may grow beyond 4 kB (a full disk)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))


@pytest.mark.parametrize("failure", ["read-only file", "full disk"])
async def test_serve_refuses_to_start_on_a_store_that_does_not_take_writes(tmp_path: Path, failure: str) -> None:
    db = existing_store(tmp_path)
    with trio.fail_after(DEADLINE):
        if failure == "read-only file":
            with read_only(*store_files(db)):
                async with serve(str(db), tmp_path, ready=False) as served:
                    status = await served.exit_status()
        else:
            async with serve(str(db), tmp_path, ready=False, preexec=small_disk) as served:
                status = await served.exit_status()
    assert status == 2, served.log
    # a read-only file opens, and is found out by the first write; a full disk fails the opening itself
    if failure == "read-only file":
        assert (
            f"callbridge: the event store sqlite:{db} does not take writes (OperationalError: attempt to write"
            in served.log
        )
    else:
        assert f"callbridge: cannot open the event store sqlite:{db}: disk I/O error" in served.log
    assert "check the path, that this user can write the file and its folder, and that the disk has room" in served.log
    assert "listening on" not in served.log


async def test_a_full_disk_turns_healthz_503_refuses_calls_and_both_recover(tmp_path: Path) -> None:
    db = existing_store(tmp_path)
    with trio.fail_after(DEADLINE):
        async with serve(str(db), tmp_path, env=FAST) as served, served.http() as http:
            healthy = await http.get("/healthz")
            assert (healthy.status_code, healthy.json()["status"], healthy.json()["problems"]) == (200, "ok", [])
            fill_disk(served.process.pid)
            await served.wait_for_line("failed (attempt 3,")  # the heartbeats cannot be written
            sick = await http.get("/healthz")
            assert sick.status_code == 503
            body = sick.json()
            assert body["status"] == "unavailable" and body["accepting_calls"] is False
            assert any(re.fullmatch(r"the last \d+ writes to the event store failed", p) for p in body["problems"])
            assert str(tmp_path) not in sick.text and "disk I/O" not in sick.text  # public: no paths, no errors
            refused = await place_call(served.base_url, script=[Silence(10_000), HangUp()])
            apology = Apology.bundled()
            refused_why = (  # a string: pytest shows it whole (a tuple's repr is cut to a line)
                f"ended by {refused.ended_by}, close code {refused.close_code}, reason {refused.close_reason!r}, "
                f"errors {refused.errors}; the server's log ends:\n{served.log[-6000:]}"
            )
            assert refused.ended_by == "server" and refused.close_reason == "the service cannot take calls right now", (
                refused_why
            )
            heard_all = sum(len(base64.b64decode(chunk)) for chunk in apology.chunks)
            assert refused.assistant_bytes_played == heard_all  # the whole apology was heard
            await served.wait_for_line("refused: the event log cannot take calls now; the caller hears the apology")

            free_disk(served.process.pid)
            await served.wait_for_line("is writable again after")
            assert (await http.get("/healthz")).status_code == 200
            answered = await place_call(served.base_url, max_duration_s=1)
            assert answered.ok, answered.errors
            served.terminate()
            assert await served.exit_status() == 0
    assert "every accepted event is in" in served.lines[-1]


async def test_sigterm_with_a_full_disk_ends_in_time_and_tells_how_many_events_were_lost(tmp_path: Path) -> None:
    db = existing_store(tmp_path)
    with trio.fail_after(DEADLINE):
        async with serve(str(db), tmp_path, env=FAST) as served, served.http() as http:
            fill_disk(served.process.pid)
            for n in range(5):
                status = {"CallSid": f"CA{n}", "CallStatus": "completed", "CallDuration": "3"}
                assert (await http.post("/twilio/status", data=status)).status_code == 204
            await served.wait_for_line("failed (attempt 1,")
            served.terminate()
            status = await served.exit_status()
    assert status == 1, served.log
    last = served.lines[-1]
    found = re.search(r"stopped (\d+\.\d) s after the stop signal; (\d+) events were NOT written to sqlite:", last)
    assert found, served.log
    assert float(found[1]) <= 10.0  # the contract: SIGTERM to exit within 10 s, by the server's own clock
    assert int(found[2]) >= 5  # the status callbacks, and the heartbeats
    assert "every accepted event" not in served.log
