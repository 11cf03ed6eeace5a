"""The benchmarks' harnesses work end to end: every field of their reports is filled and their
baselines do the work they stand for. Their numbers are never asserted (performance is measured,
printed and read by people, not judged by a test on a shared machine)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import BargeIn, HangUp, Silence, Speak
from callbridge.adapters.sim.fake_openai import FakeOpenAI, serve_fake_openai
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.websocket import WebSocketClosed, accept_request, connect

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))  # the benchmark scripts import each other by their own names

from bridge_analysis import downlink, uplink  # noqa: E402
from bridge_report import RunResult  # noqa: E402
from bridge_table import render_sitting  # noqa: E402
from peer_callers import CallLog  # noqa: E402
from peer_fake import SessionTimings  # noqa: E402
from peer_sockets import PeerSocket  # noqa: E402

pytestmark = pytest.mark.slow
CORES = len(os.sched_getaffinity(0))


def _bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, timeout=180
    )


@pytest.fixture(scope="module")
def bridge_runs() -> list[dict[str, Any]]:
    """One sitting of ``bridge.py`` through the real processes: 2 calls x 3 s, every target, one
    busy-loop contender."""
    done = _bench("bridge.py", "--calls", "2", "--seconds", "3", "--ramp", "0", "--wait-quiet", "0",
                  "--contend", "1", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    runs: list[dict[str, Any]] = json.loads(done.stdout)
    return runs


def test_bridge_benchmark_measures_callbridge_mainstream_and_floor_in_one_sitting(
    bridge_runs: list[dict[str, Any]],
) -> None:
    assert [run["target"] for run in bridge_runs] == ["callbridge", "mainstream", "floor"]
    assert "uvicorn" in bridge_runs[1]["stack"] and "asyncio" in bridge_runs[1]["stack"]
    for run in bridge_runs:
        name = run["target"]
        why = {key: run[key] for key in ("peak_concurrent_calls", "failed_calls", "call_errors", "server_log_errors")}
        assert run["round"] == 1 and run["peak_concurrent_calls"] == 2 and run["failed_calls"] == 0, f"{name}: {why}"
        up, down = run["uplink"], run["downlink"]
        assert up["sent"] >= 2 * 140 and up["matched"] == up["sent"] and up["lost"] == 0, name
        assert sum(window["count"] for window in up["windows"]) == up["matched"], name
        assert down["sent"] > 0 and down["matched"] == down["sent"] and down["lost"] == 0, name
        assert sum(window["count"] for window in down["windows"]) == down["matched"], name
        # CPU in /proc's 10 ms ticks: a 3 s run of the trivial forwarder may cost less than one
        assert run["server_cpu_s"] >= 0 and run["server_peak_rss_mb"] > 0, name
        peers = run["peers"]
        assert peers["cores"] > 0 and not math.isnan(peers["loop_lag_ms_p99"]), name
        assert peers["send_late_ms"]["count"] == up["sent"], name
        assert peers["contenders"] == 1 and peers["contender_cores"] > 0.1, name
        assert run["cpu_timeline"], name
    store = bridge_runs[0]["store"]
    assert store["complete"] == 2 and store["missing_ended"] == 0 and store["frames_stored"] >= store["frames_sent"]
    assert bridge_runs[1]["store"] is None and bridge_runs[2]["store"] is None


def test_a_run_that_cannot_start_is_reported_and_the_sitting_goes_on(tmp_path: Path) -> None:
    prelude = tmp_path / "broken.py"
    prelude.write_text("raise SystemExit('this server does not start')\n")
    done = _bench("bridge.py", "--calls", "1", "--seconds", "2", "--ramp", "0", "--wait-quiet", "0",
                  "--targets", "callbridge,floor", "--server-prelude", str(prelude), "--json")  # fmt: skip
    assert done.returncode == 1
    assert [run["target"] for run in json.loads(done.stdout)] == ["floor"]
    assert "run failed, not measured: callbridge round 1, 1 calls: callbridge serve exited early" in done.stderr
    assert "this server does not start" in done.stderr


def test_a_server_prelude_runs_in_the_server_and_in_each_of_its_workers(tmp_path: Path) -> None:
    """The workers carry the calls: a patch tried in the parent alone would measure the unpatched code."""
    marks = tmp_path / "marks"
    marks.mkdir()
    prelude = tmp_path / "mark.py"
    prelude.write_text(
        f"import os, sys\nopen(os.path.join({str(marks)!r}, str(os.getpid())), 'w').write(' '.join(sys.argv[1:]))\n"
    )
    done = _bench("bridge.py", "--calls", "1", "--seconds", "2", "--ramp", "0", "--wait-quiet", "0",
                  "--targets", "callbridge", "--server-prelude", str(prelude), "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    ran_in = sorted(path.read_text() for path in marks.iterdir())
    workers = [args for args in ran_in if "--worker " in args]
    assert len(ran_in) == len(workers) + 1 and len(workers) >= 2, ran_in  # the parent, and every worker
    assert all(args.startswith("serve ") for args in ran_in)


def test_the_calls_split_over_several_peer_processes_are_measured_as_one_run() -> None:
    """One peer process is one core at most: ``--peer-processes`` shares the calls out, the models
    listen on one port, and the timings of every process make one run (on the machine's one clock)."""
    done = _bench("bridge.py", "--calls", "3", "--seconds", "3", "--ramp", "0", "--wait-quiet", "0",
                  "--targets", "callbridge", "--peer-processes", "2", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    [run] = json.loads(done.stdout)
    assert run["peers"]["processes"] == 2 and run["peak_concurrent_calls"] == 3 and run["failed_calls"] == 0
    up, down = run["uplink"], run["downlink"]
    assert up["sent"] >= 3 * 140 and up["matched"] == up["sent"] and up["lost"] == 0
    assert down["sent"] > 0 and down["matched"] == down["sent"] and down["lost"] == 0
    assert run["store"]["complete"] == 3 and run["peers"]["send_late_ms"]["count"] == up["sent"]
    assert done.stderr.count("peers pid ") == 1 and re.search(r"peers pid \d+, \d+;", done.stderr)


def _nan_for_null(value: Any) -> Any:
    """JSON has no NaN: the ``--json`` output writes an empty summary's numbers as null."""
    if isinstance(value, dict):
        return {k: math.nan if v is None and k in ("p50", "p99", "max", "mean") else _nan_for_null(v)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, list):
        return [_nan_for_null(item) for item in value]
    return value


def test_bridge_benchmark_tables_pair_callbridge_with_the_mainstream_round_by_round(
    bridge_runs: list[dict[str, Any]],
) -> None:
    first = [msgspec.convert(_nan_for_null(run), RunResult) for run in bridge_runs]
    second = [msgspec.structs.replace(run, round=2) for run in first]
    text = render_sitting([*first, *second], "### heading")

    assert "| | callbridge r1 | mainstream r1 | floor r1 | callbridge r2 | mainstream r2 | floor r2 | target |" in text
    assert "| callbridge vs the others, same round | round 1 | round 2 | median | target |" in text
    ratio = first[0].server_cpu_s_per_call_minute / first[1].server_cpu_s_per_call_minute
    cpu_row = next(line for line in text.splitlines() if line.startswith("| server CPU per call-minute ÷ mainstream"))
    assert cpu_row.count(f" {ratio:.2f} ") == 3  # both rounds and their median
    assert "| 0-3 s |" in text  # the latency of the only (partial) 10 s window of a 3 s call


def _log(index: int, sent: list[float], *, received: list[tuple[float, int]], stop_at: float) -> CallLog:
    return CallLog(index=index, call_sid=f"CA{index}", sent=sent, received=received, stop_at=stop_at)


def test_latency_is_reported_per_10_s_of_call_and_its_growth_is_last_minus_first() -> None:
    sent = [100.0 + frame * 0.02 for frame in range(1500)]  # a 30 s call
    slow_from = 1000  # its last 10 s arrive 50 ms late, the rest 1 ms
    appends = [(at + (0.050 if frame >= slow_from else 0.001), 0, frame) for frame, at in enumerate(sent)]
    deltas = [(101.0, 7), (125.0, 8), (131.0, 9)]  # the last one after the caller hung up (at 130)
    session = SessionTimings(
        index=0, connected_at=99.0, appends=appends, untagged_appends=0, deltas=deltas,
        client_types={"input_audio_buffer.append": 1500}, server_types={}, close_code=1000,
    )  # fmt: skip
    log = _log(0, sent, received=[(101.002, 7)], stop_at=130.0)

    up, down = uplink([log], [session]), downlink([log], [session])

    assert [window.count for window in up.windows] == [500, 500, 500]
    assert math.isclose(up.windows[0].p99, 1.0, abs_tol=0.01) and math.isclose(up.windows[2].p99, 50.0, abs_tol=0.01)
    assert math.isclose(up.window_p99_growth(30.0), 49.0, abs_tol=0.02)
    assert up.due_latency_ms is not None and math.isclose(up.due_latency_ms.p99, 50.0, abs_tol=0.01)
    assert math.isnan(up.window_p99_growth(15.0))  # one whole window: nothing to compare
    assert down.sent == 2 and down.lost == 1 and down.sent_after_hangup == 1  # delta 8 lost; 9 undeliverable
    assert [window.count for window in down.windows] == [1, 0, 0] and down.windows_lost == [0, 0, 1]


def test_uplink_latency_from_the_due_time_counts_the_wait_to_be_sent() -> None:
    """A bridge that stops reading makes the caller's sends wait (its socket buffers are full):
    each frame then leaves late and arrives 1 ms after it left, 500 ms after it was due."""
    sent = [100.0] + [100.5 + frame * 0.02 for frame in range(1, 100)]
    appends = [(at + 0.001, 0, frame) for frame, at in enumerate(sent)]
    session = SessionTimings(
        index=0, connected_at=99.0, appends=appends, untagged_appends=0, deltas=[],
        client_types={"input_audio_buffer.append": 100}, server_types={}, close_code=1000,
    )  # fmt: skip

    up = uplink([_log(0, sent, received=[], stop_at=103.0)], [session])

    assert math.isclose(up.latency_ms.p99, 1.0, abs_tol=0.01)
    assert up.due_latency_ms is not None and math.isclose(up.due_latency_ms.p99, 501.0, abs_tol=0.01)


def test_a_call_whose_last_10_s_never_arrived_grew_without_bound() -> None:
    sent = [100.0 + frame * 0.02 for frame in range(1500)]
    appends = [(at + 0.001, 0, frame) for frame, at in enumerate(sent) if frame < 1000]  # then starved
    session = SessionTimings(
        index=0, connected_at=99.0, appends=appends, untagged_appends=0, deltas=[],
        client_types={"input_audio_buffer.append": 1000}, server_types={}, close_code=1000,
    )  # fmt: skip

    up = uplink([_log(0, sent, received=[], stop_at=130.0)], [session])

    assert up.lost == 500 and up.windows_lost == [0, 0, 500] and up.windows[2].count == 0
    assert up.window_p99_growth(30.0) == math.inf


async def test_mainstream_baseline_clears_twilio_and_truncates_on_barge_in() -> None:
    """The baseline does the sample's barge-in work (``clear`` and ``conversation.item.truncate``),
    so what callbridge is compared with is a bridge, not a pipe."""
    reply = "Once upon a time, a small wooden boat sailed across a calm blue ocean, while the sailors sang."
    script = Script(turns=[Turn(transcript="Tell me a story", reply=reply)], fallback_reply=reply)
    async with trio.open_nursery() as nursery:
        fake: FakeOpenAI = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0, script=script))
        process = await trio.lowlevel.open_process(
            [sys.executable, str(BENCHMARKS / "mainstream_bridge.py"), fake.url], stdout=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await process.stdout.receive_some(1024)
            port = json.loads(line)["port"]
            caller = [Speak(900), BargeIn(after_ms=1500, speak_ms=900), Silence(600), HangUp()]
            report = await place_call(f"http://127.0.0.1:{port}", script=caller)
        finally:
            process.kill()
            await process.wait()
        nursery.cancel_scope.cancel()
    assert report.ok, report.errors
    assert report.clears_received == 1 and report.marks_received > 0
    types = fake.sessions[0].client_types()
    assert types[0] == "session.update" and "conversation.item.truncate" in types


async def test_a_peer_socket_closed_by_one_task_while_another_reads_ends_cleanly() -> None:
    """The simulated caller hangs up (``aclose``) while its receiving task is between two reads:
    the close reads the server's answer itself, and the receiving task's next read must end with
    ``ConnectionClosed``, not with the socket busy."""
    release_server, got_first, resume_reader = trio.Event(), trio.Event(), trio.Event()
    outcome: list[str] = []

    async def server(stream: trio.SocketStream) -> None:
        ws = await (await accept_request(stream)).accept()
        await ws.send_message("first")
        await release_server.wait()
        with pytest.raises(WebSocketClosed):  # after answering the client's close frame
            await ws.get_message()

    async def reader(socket: PeerSocket) -> None:
        await socket.get_message()
        got_first.set()
        await resume_reader.wait()  # busy elsewhere (echoing a mark) when the hang-up starts
        try:
            await socket.get_message()
        except ConnectionClosed:
            outcome.append("closed")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, server, 0, host="127.0.0.1"))
        socket = PeerSocket(await connect(f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/call"))
        nursery.start_soon(reader, socket)
        await got_first.wait()
        nursery.start_soon(socket.aclose)
        await trio.testing.wait_all_tasks_blocked()  # the close is reading the server's answer
        resume_reader.set()
        await trio.testing.wait_all_tasks_blocked()  # the reader found the socket busy and waits
        release_server.set()
        with trio.fail_after(10):
            while not outcome:
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert outcome == ["closed"]


def test_websocket_echo_measures_every_server() -> None:
    done = _bench("websocket_echo.py", "--connections", "2", "--rate", "20", "--seconds", "1", "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    results = json.loads(done.stdout)
    assert [r["server"] for r in results] == ["adapters", "trio-websocket", "quart", "uvicorn"]
    for result in results:
        assert result["sent"] == 40 and result["echoed"] == 40 and not result["errors"], result["server"]
        # /proc counts CPU in 10 ms ticks, and 40 echoes can cost less than one on a fast day: a number
        # (not NaN, which an empty run gives) at or above 0
        assert result["server_cpu_us_per_message"] >= 0, result["server"]
        assert result["round_trip_ms"]["count"] == 40, result["server"]


@pytest.mark.parametrize(
    ("script", "args", "named"),
    [
        ("bridge.py", ["--calls", "0"], "--calls"),
        ("bridge.py", ["--calls", "30,x"], "--calls"),
        ("bridge.py", ["--targets", "callbridge,nginx"], "--targets"),
        ("bridge.py", ["--calls", "2", "--peer-processes", "3"], "--peer-processes"),
        ("bridge.py", ["--pin", "--peer-processes", str(CORES), "--calls", str(CORES)], "--pin"),
        ("cores.py", ["--bridge-cores", "64"], "--bridge-cores"),
        ("websocket_echo.py", ["--servers", "nginx"], "--servers"),
    ],
)
def test_bad_options_are_refused_naming_the_option(script: str, args: list[str], named: str) -> None:
    done = _bench(script, *args)
    assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr


def test_the_store_check_counts_frames_refused_as_a_flood_as_accounted_for_and_uplink_drops_apart(
    tmp_path: Path,
) -> None:
    """Callers that fell seconds behind send their backlog at once; callbridge's flood guard refuses
    what comes faster than a phone sends and records how many instead of the audio. The check must
    not call those calls incomplete, and must tell both kinds of drop apart."""
    from bridge_report import check_store

    from callbridge.engine.events import CallerAudioDropped, CallerAudioReceived
    from callbridge.engine.store import EventStore
    from callbridge.engine.synthetic import CallLog as SyntheticCall

    call = SyntheticCall("CA" + "f" * 32).start().wait(1000)
    at = call.events[-1].at
    call.events.append(CallerAudioDropped(call_id=call.call_id, at=at, count=30, reason="faster than 75 frames/s"))
    call.events.append(CallerAudioDropped(call_id=call.call_id, at=at, count=5, reason="model socket behind: 5"))
    call.end()
    url = str(tmp_path / "bench.db")
    store = EventStore(url)
    call.write(store)
    store.close()
    stored = sum(len(e.frame_sizes) for e in call.events if isinstance(e, CallerAudioReceived))

    def sent(frames: int) -> CallLog:
        return CallLog(index=0, call_sid=call.call_id, sent=[0.0] * frames)

    accounted, short = check_store(url, [sent(stored + 30)]), check_store(url, [sent(stored + 31)])
    assert (accounted.complete, short.complete) == (1, 0)
    assert (accounted.frames_refused_as_flood, accounted.frames_dropped_by_uplink) == (30, 5)
    assert accounted.frames_stored == stored
