"""``callbridge serve`` as a user runs it, in a subprocess: what every start prints, what it leaves
on disk, a port already taken, too few file descriptors, and a flood of idle connections."""

from __future__ import annotations

import resource
import socket
import stat
import wave
from functools import partial
from pathlib import Path

import httpx2
import trio
from serve_process import serve_process, serve_refused

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai import serve_fake_openai
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest

ACCOUNT = "AC" + "ab" * 16
TWILIO_TOKEN = "twilio-secret-token-0123456789"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_every_start_says_where_the_console_and_the_token_are_and_the_data_is_private(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        account = FakeTwilioRest(ACCOUNT, TWILIO_TOKEN)
        account.add_number("+15550001111", friendly_name="Support")
        twilio: FakeTwilioRest = await nursery.start(partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=account))
        env = {"TWILIO_ACCOUNT_SID": ACCOUNT, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN, "TWILIO_API_BASE_URL": twilio.url}
        async with serve_process(tmp_path, "--port", "0", env=env) as first:
            port = await first.console_port()
            await first.wait_for(r"API token: data/api-token  \(TOKEN=\$\(cat data/api-token\)\)")
            token = (await first.wait_for(r"New token \(shown once\): (\S+)"))[1]
            await first.wait_for(r"open files limit \d+.*: up to \d+ calls and \d+ console/API connections")
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                setup = await http.get("/api/setup", headers={"Authorization": f"Bearer {token}"})
            assert setup.status_code == 200
            assert await first.stop() == 0
        nursery.cancel_scope.cancel()
    data = tmp_path / "data"
    assert (data / "api-token").read_text().strip() == token
    assert mode(data) == 0o700
    for name in ("api-token", "callbridge.db", "views.db"):
        assert mode(data / name) == 0o600, name
    assert "twilio.http_client" not in first.output  # the Twilio library's per-request lines are off
    assert token not in first.output.replace(f"New token (shown once): {token}", "")

    async with serve_process(tmp_path, "--port", "0") as again:
        await again.console_port()
        await again.wait_for(r"API token: data/api-token")
        assert await again.stop() == 0
    assert "New token" not in again.output and token not in again.output

    async with serve_process(tmp_path, "--port", "0", env={"CALLBRIDGE_API_TOKEN": "from-env"}) as configured:
        await configured.console_port()
        await configured.wait_for(r"API token: the CALLBRIDGE_API_TOKEN environment variable")
        assert await configured.stop() == 0


async def test_a_port_in_use_is_one_line_saying_how_to_choose_another_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        refused = await serve_refused(tmp_path, "--port", str(port))
    assert refused.process.returncode == 2
    assert refused.error_lines == [
        f"callbridge: cannot listen on 127.0.0.1:{port}: the port is already in use (another callbridge?). "
        "Choose another with --port N or PORT=N."
    ]
    assert "Traceback" not in refused.output and "stopped; every accepted event" not in refused.output


def few_descriptors() -> None:
    """In the child before exec: 160 open files at most, soft and hard (so serve cannot raise it)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))


async def test_a_flood_of_idle_connections_under_a_low_fd_limit_leaves_health_and_calls_working(
    tmp_path: Path,
) -> None:
    async with serve_process(tmp_path, "--port", "0", preexec_fn=few_descriptors) as served:
        port = await served.console_port()
        await served.wait_for(r"open files limit 160: up to \d+ calls and \d+ console/API connections")
        idle: list[trio.SocketStream] = []
        try:
            for _ in range(400):  # far more than 160 descriptors: each sends nothing, ever
                idle.append(await trio.open_tcp_stream("127.0.0.1", port))
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
                health = await http.get("/healthz")
            steps = [Speak(600), WaitForAssistant(timeout_s=15), HangUp()]
            report = await place_call(f"http://127.0.0.1:{port}", script=steps)
        finally:
            for stream in idle:
                await stream.aclose()
        await served.wait_for(r"at capacity \(up to \d+ calls")
        assert await served.stop() == 0
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert report.ok, report.errors
    assert "EMFILE" not in served.output and "Too many open files" not in served.output


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(pcm)


async def test_an_apology_that_cannot_be_used_stops_serve_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "apology.wav").write_bytes(b"not a wav at all")
    refused = await serve_refused(tmp_path, "--port", "0", env={"CALLBRIDGE_APOLOGY": "apology.wav"})
    assert refused.process.returncode == 2
    assert refused.error_lines == [
        "callbridge: CALLBRIDGE_APOLOGY: apology.wav is not a WAV file (give an 8 kHz mono WAV, μ-law or 16-bit PCM)"
    ]


async def test_the_operators_own_apology_is_what_a_caller_hears_when_the_model_refuses_the_key(tmp_path: Path) -> None:
    write_wav(tmp_path / "sorry.wav", b"\x10\x00" * 4000)  # 0.5 s at 8 kHz: 4,000 μ-law bytes on the line
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(partial(serve_fake_openai, api_key="the-real-key"))
        env = {
            "CALLBRIDGE_APOLOGY": str(tmp_path / "sorry.wav"),
            "OPENAI_API_KEY": "sk-a-wrong-key",
            "OPENAI_REALTIME_URL": fake.url,
        }
        async with serve_process(tmp_path, "--port", "0", env=env) as served:
            await served.wait_for(r"listening on")
            report = await place_call(served.base_url, script=[Silence(10_000), HangUp()])
            served.terminate()
            assert await served.exit_status() == 0
        nursery.cancel_scope.cancel()
    assert report.ended_by == "server"
    assert report.assistant_bytes_received == 4000 and report.assistant_bytes_played == 4000
