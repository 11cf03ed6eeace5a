"""``callbridge serve --workers 2``: two engine processes on one port, one store, one set of views.

A real ``serve`` (the parent and its workers as processes), simulated callers on the real wire
protocol, and the API asked over fresh connections (each may land on either worker): every worker
sees every call, the views are folded once, and SIGTERM stops them all with status 0.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import trio
import trio_websocket
from serve_process import CLEAN_ENV, TOKEN, Serve, serve_process, serve_refused

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.engine.events import CallStarted, EngineHeartbeat
from callbridge.engine.store import EventStore
from callbridge.serve_command import prepare_shared_files
from callbridge.web.settings import load_settings

DEADLINE = 90


@asynccontextmanager
async def two_workers(
    tmp_path: Path, store: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Serve, str]]:
    """``serve --workers 2`` on the simulated model, once both workers listen, and its base URL."""
    env = {"CALLBRIDGE_API_TOKEN": TOKEN, **(env or {})}
    arguments = ("--workers", "2", "--port", "0", "--store", store, "--model", "sim")
    async with serve_process(tmp_path, *arguments, env=env) as served:
        port = await served.console_port()
        await served.wait_for(r"worker 0 listening \(engine (\S+)-w0\)")
        await served.wait_for(r"worker 1 listening \(engine (\S+)-w1\)")
        yield served, f"http://127.0.0.1:{port}"


async def test_two_workers_share_the_port_the_store_and_the_views(tmp_path: Path) -> None:
    store = str(tmp_path / "data" / "callbridge.db")
    with trio.fail_after(DEADLINE):
        async with two_workers(tmp_path, store) as (served, base):
            reports = []

            async def call(n: int) -> None:
                script = [Speak(800), WaitForAssistant(15), HangUp()]
                reports.append(await place_call(base, script=script, from_number=f"+1555000000{n}"))

            async with served.feed() as feed:  # the feed follows the log: every worker's calls
                async with trio.open_nursery() as nursery:
                    for n in range(6):
                        nursery.start_soon(call, n)
                ended: set[str] = set()
                while len(ended) < 6:
                    message = json.loads(await feed.get_message())
                    if message["type"] == "call.ended":
                        ended.add(message["call_id"])
            assert all(report.ok for report in reports), [report.errors for report in reports]
            assert ended == {report.call_sid for report in reports}
            listings = []
            for _ in range(6):  # a new connection each time: whichever worker's turn it is answers
                async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    listed = (await http.get(f"{base}/api/conversations")).json()
                listings.append(sorted((c["call_id"], c["status"]) for c in listed))
            assert all(listing == listings[0] for listing in listings), listings
            assert sorted(call_id for call_id, _ in listings[0]) == sorted(r.call_sid for r in reports)
            assert {status for _, status in listings[0]} == {"completed"}
            assert await served.stop() == 0
    assert "workers stopped (exit statuses 0, 0)" in served.output
    reader = EventStore(store)
    try:
        events = [r.event for r in reader.read_all(after=0, limit=100_000)]
    finally:
        reader.close()
    beating = {e.engine_id for e in events if isinstance(e, EngineHeartbeat)}
    assert {engine.rsplit("-", 1)[1] for engine in beating} == {"w0", "w1"}  # two engines of one base name
    carried = {e.engine_id for e in events if isinstance(e, CallStarted)}
    assert carried <= beating


async def test_the_first_worker_carries_its_fill_before_the_next_takes_a_call(tmp_path: Path) -> None:
    """With ``CALLBRIDGE_WORKER_FILL=1``, a second call goes to the worker carrying none; meanwhile
    requests are answered by that worker too, and it lists the call the other one carries."""
    store = str(tmp_path / "data" / "callbridge.db")
    with trio.fail_after(DEADLINE):
        async with two_workers(tmp_path, store, {"CALLBRIDGE_WORKER_FILL": "1"}) as (served, base):
            reports = []

            async def call(number: str, script: list[Step]) -> None:
                reports.append(await place_call(base, script=script, from_number=number))

            async with served.feed() as feed, trio.open_nursery() as nursery:
                nursery.start_soon(call, "+15550000001", [Speak(600), WaitForAssistant(15), Silence(4000), HangUp()])
                first = await _next_call_started(feed)
                async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
                    health = (await http.get(f"{base}/healthz")).json()
                    listed = (await http.get(f"{base}/api/conversations")).json()
                assert health["live_calls"] == 0  # answered by the worker that carries no call
                assert [c["call_id"] for c in listed] == [first]  # yet it lists the other's call
                nursery.start_soon(call, "+15550000002", [Speak(600), WaitForAssistant(15), HangUp()])
                second = await _next_call_started(feed)
            assert all(report.ok for report in reports), [report.errors for report in reports]
            assert await served.stop() == 0
    reader = EventStore(store)
    try:
        started = {
            r.event.call_id: r.event.engine_id
            for r in reader.read_all(after=0, limit=100_000)
            if isinstance(r.event, CallStarted)
        }
    finally:
        reader.close()
    assert started.keys() == {first, second}
    assert started[first] != started[second]  # one call each: the second went to the worker with room


async def _next_call_started(feed: trio_websocket.WebSocketConnection) -> str:
    while True:
        message = json.loads(await feed.get_message())
        if message["type"] == "call.started":
            return str(message["call_id"])


async def test_draining_for_a_deploy_takes_no_new_calls_and_lets_the_live_one_finish(tmp_path: Path) -> None:
    import signal

    from serve_process import serve

    from callbridge.adapters.sim.caller_script import Silence

    store = str(tmp_path / "data" / "callbridge.db")
    with trio.fail_after(DEADLINE):
        async with serve(store, tmp_path) as engine, engine.http() as http, trio.open_nursery() as nursery:
            finished = trio.Event()
            reports = []

            async def live_call() -> None:
                reports.append(await place_call(engine.base_url, script=[Speak(600), Silence(3000), HangUp()]))
                finished.set()

            async with engine.feed() as feed:
                nursery.start_soon(live_call)
                while json.loads(await feed.get_message())["type"] != "call.started":
                    pass
            engine.process.send_signal(signal.SIGUSR1)
            await engine.wait_for_line("draining: no new calls; 1 live call(s) finish first")
            health = await http.get("/healthz")
            assert health.status_code == 503 and health.json()["problems"] == [
                "draining: live calls finish, no new ones"
            ]
            refused = await place_call(engine.base_url, max_duration_s=1)
            assert refused.errors == ["stream upgrade rejected with HTTP 503"]
            await finished.wait()
            assert await engine.exit_status() == 0  # it stopped by itself once the call was over
    [report] = reports
    assert report.ok and report.ended_by == "caller"  # the live call was not cut short


async def test_a_fill_that_is_not_a_number_of_calls_stops_serve_with_one_line(tmp_path: Path) -> None:
    env = {"CALLBRIDGE_WORKER_FILL": "ten"}
    refused = await serve_refused(tmp_path, "--workers", "2", "--port", "0", env=env)
    assert refused.process.returncode == 2
    assert refused.error_lines == ["callbridge: CALLBRIDGE_WORKER_FILL must be a whole number of calls, got 'ten'"]


def test_the_parent_creates_the_store_and_the_views_before_the_workers_open_them(tmp_path: Path) -> None:
    """N workers creating one new store at once collide (SQLite's switch to WAL answers "database is
    locked" at once to all but one; a fresh ``serve --workers 2`` stopped so): the parent makes them."""
    store = tmp_path / "data" / "callbridge.db"
    settings = load_settings({}, store=str(store), model="sim")
    assert prepare_shared_files(settings) is None
    for made in (store, tmp_path / "data" / "views.db"):
        db = sqlite3.connect(made)
        try:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal", made
        finally:
            db.close()
    reader = EventStore(str(store), create=False)  # tables and all: a store, not an empty file
    reader.close()


async def test_a_store_the_parent_cannot_create_stops_serve_before_any_worker_starts(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = str(tmp_path / "file" / "callbridge.db")
    env = {"CALLBRIDGE_API_TOKEN": TOKEN}  # no token file to keep: the store is the first thing made
    refused = await serve_refused(tmp_path, "--workers", "2", "--port", "0", "--store", store, env=env)
    assert refused.process.returncode == 2
    assert any(line.startswith(f"callbridge: cannot open the event store sqlite:{store}") for line in refused.lines)
    assert "Check CALLBRIDGE_STORE" in refused.output
    assert "started 2 workers" not in refused.output and "Traceback" not in refused.output


async def test_a_data_folder_that_is_a_file_stops_serve_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = str(tmp_path / "file" / "callbridge.db")
    refused = await serve_refused(tmp_path, "--workers", "2", "--port", "0", "--store", store)
    assert refused.process.returncode == 2
    assert refused.error_lines == [
        f"callbridge: cannot keep the API token in the data folder {tmp_path / 'file'} (File exists); "
        "check --store or CALLBRIDGE_STORE, and that this user can write there"
    ]


async def test_a_worker_that_crashes_below_python_leaves_its_stacks_and_the_signal_in_the_log(tmp_path: Path) -> None:
    """A segfault in a C library (SQLite closed under a reader did it once) used to leave nothing but a
    worker gone: now its threads' Python stacks and the signal's name are in the log."""
    store = str(tmp_path / "data" / "callbridge.db")
    with trio.fail_after(DEADLINE):
        async with two_workers(tmp_path, store) as (served, _):
            pids = (await served.wait_for(r"started 2 workers \(pids (\d+), (\d+)\)")).groups()
            os.kill(int(pids[1]), signal.SIGSEGV)
            status = await served.process.wait()
            await served.ended.wait()
    assert status == 1
    assert "Fatal Python error: Segmentation fault" in served.output
    assert "most recent call first" in served.output  # a stack follows
    assert f"worker {pids[1]} was killed by SIGSEGV: stopping the others" in served.output


def test_ctrl_c_in_a_terminal_stops_every_worker_once_and_cleanly(tmp_path: Path) -> None:
    """A terminal sends SIGINT to its whole foreground group; the parent passes it on too. Each worker
    must get it once, from the parent (a second one, met after its stop, killed a worker: exit -2, and
    serve's status 1): the workers run in a session of their own."""
    env = {**CLEAN_ENV, "CALLBRIDGE_API_TOKEN": TOKEN}
    command = [sys.executable, "-m", "callbridge", "serve", "--workers", "2", "--port", "0", "--model", "sim"]
    serve = subprocess.Popen(  # its own group, as a shell's job is: the SIGINT below reaches it, not pytest
        command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert serve.stderr is not None
        lines: list[str] = []
        for line in serve.stderr:
            lines.append(line)
            if "worker 1 listening" in "".join(lines) and "worker 0 listening" in "".join(lines):
                break
        found = re.search(r"started 2 workers \(pids (\d+), (\d+)\)", "".join(lines))
        assert found, lines
        assert {os.getpgid(int(pid)) for pid in found.groups()}.isdisjoint({os.getpgid(serve.pid)})
        os.killpg(serve.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group
        _, rest = serve.communicate(timeout=30)
    finally:
        if serve.poll() is None:
            serve.kill()  # the workers die with it
            serve.wait()
    output = "".join(lines) + rest
    assert serve.returncode == 0, output
    assert "workers stopped (exit statuses 0, 0)" in output
