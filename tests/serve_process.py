"""``callbridge serve`` as the user runs it: a subprocess on a free port, its output read line by line.

For what only a real process shows: what it prints, its start-up checks and exit status, a SIGTERM,
a ``kill -9``. The harness waits for output lines and feed messages (never for time):
:meth:`Serve.wait_for_line` / :meth:`Serve.wait_for` return when the process has printed a line
containing a text / matching a pattern. Two ways in: :func:`serve` (a store, the simulated model, a
free port) and :func:`serve_process` (any arguments, a clean environment).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import trio
import trio_websocket

TOKEN = "test-token"
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
START_S = 90.0
"""Guard against a hang at start (not synchronisation)."""
STOP_S = 15.0
CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("OPENAI_", "TWILIO_", "CALLBRIDGE_")) and key not in ("HOST", "PORT", "PUBLIC_URL")
}


@dataclass
class Serve:
    process: trio.Process
    lines: list[str] = field(default_factory=list)
    port: int | None = None
    _new_line: trio.Event = field(default_factory=trio.Event)
    ended: trio.Event = field(default_factory=trio.Event)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    output = log

    @property
    def error_lines(self) -> list[str]:
        """What serve said was wrong: its ``callbridge:`` lines, and the first line of any traceback."""
        return [line for line in self.lines if line.startswith("callbridge:") or "Traceback" in line]

    async def wait_for(self, pattern: str, timeout_s: float = START_S) -> re.Match[str]:
        """The first output line matching ``pattern``; fails when the process ends first."""
        with trio.fail_after(timeout_s):
            while True:
                for line in self.lines:
                    found = re.search(pattern, line)
                    if found:
                        return found
                if self.ended.is_set():
                    raise AssertionError(f"serve ended without printing {pattern!r}:\n{self.log}")
                await self._new_line.wait()

    async def console_port(self) -> int:
        return int((await self.wait_for(r"Console:\s+http://127\.0\.0\.1:(\d+)/"))[1])

    async def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.terminate()
        with trio.fail_after(STOP_S):
            return await self.exit_status()

    async def wait_for_line(self, text: str) -> str:
        """The first logged line containing ``text`` (waiting for it to be logged)."""
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if text in line:
                    return line
            seen = len(self.lines)
            if self.ended.is_set():
                raise AssertionError(f"callbridge serve ended without logging {text!r}:\n{self.log}")
            await self._new_line.wait()

    def http(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(base_url=self.base_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)

    @asynccontextmanager
    async def feed(self, call_id: str | None = None) -> AsyncIterator[trio_websocket.WebSocketConnection]:
        """``WS /logs`` (after its ``feed.hello``)."""
        query = f"token={TOKEN}" + (f"&call_id={call_id}" if call_id else "")
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{self.port}/logs?{query}") as ws:
            assert '"feed.hello"' in await ws.get_message()
            yield ws

    async def _read(self, stream: trio.abc.ReceiveStream) -> None:
        buffer = b""
        try:
            async for chunk in stream:
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for raw in complete:
                    self._add(raw.decode(errors="replace"))
        finally:
            if buffer:
                self._add(buffer.decode(errors="replace"))
            self.ended.set()
            self._wake()

    def _add(self, line: str) -> None:
        self.lines.append(line)
        if self.port is None and (match := LISTENING.search(line)):
            self.port = int(match.group(1))
        self._wake()

    def _wake(self) -> None:
        woken, self._new_line = self._new_line, trio.Event()
        woken.set()

    def kill(self) -> None:
        """``kill -9``: no cleanup, no final flush, no ``CallEnded``."""
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    async def exit_status(self) -> int:
        status = await self.process.wait()
        await self.ended.wait()
        return status


@asynccontextmanager
async def serve(
    store: str,
    cwd: Path,
    *,
    env: dict[str, str] | None = None,
    ready: bool = True,
    preexec: Callable[[], None] | None = None,
) -> AsyncIterator[Serve]:
    """Run ``callbridge serve --port 0 --store STORE --model sim`` in ``cwd``; with ``ready``, return
    once it listens. ``preexec`` runs in the child before it starts (e.g. a file-size limit). The
    process is killed on exit if it is still running."""
    environment = {
        **os.environ,
        "CALLBRIDGE_API_TOKEN": TOKEN,
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    for secret in ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "CALLBRIDGE_STORE", "PORT", "PUBLIC_URL"):
        environment.pop(secret, None)
    # one engine process (--workers 1), so a test can act on it: limit its files, kill it, signal it
    command = [
        sys.executable,
        "-m",
        "callbridge",
        "serve",
        "--port",
        "0",
        "--store",
        store,
        "--model",
        "sim",
        "--workers",
        "1",
    ]
    async with _running(command, cwd, environment, preexec, merge_stdout=False) as served:
        if ready:
            with trio.fail_after(START_S):  # a safety net, not a timing assumption
                await served.wait_for_line("listening on http://")
        yield served


@asynccontextmanager
async def _running(
    command: list[str],
    cwd: Path | str,
    environment: dict[str, str],
    preexec: Callable[[], object] | None,
    *,
    merge_stdout: bool,
) -> AsyncIterator[Serve]:
    """Start ``command``, read its output (stderr, or both streams) line by line, and kill it at the
    end if it still runs."""
    process = await trio.lowlevel.open_process(
        command,
        cwd=cwd,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if merge_stdout else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if merge_stdout else subprocess.PIPE,
        preexec_fn=preexec,
    )
    stream = process.stdout if merge_stdout else process.stderr
    assert stream is not None
    served = Serve(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(served._read, stream)
        try:
            yield served
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_S):
                await process.wait()
                await served.ended.wait()


async def serve_refused(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Serve:
    """``callbridge serve ARGS`` that must stop by itself (something it refuses): returns once it
    exited (``process.returncode``), with everything it printed."""
    async with serve_process(cwd, *args, env=env) as refused:
        with trio.fail_after(START_S):  # a safety net, not a timing assumption
            await refused.exit_status()
    return refused


@asynccontextmanager
async def serve_process(
    cwd: Path, *args: str, env: dict[str, str] | None = None, preexec_fn: Callable[[], object] | None = None
) -> AsyncIterator[Serve]:
    """``callbridge serve ARGS`` in ``cwd`` with a clean environment plus ``env`` (stdout and stderr
    together); killed if the test leaves it running."""
    command = [sys.executable, "-m", "callbridge", "serve", *args]
    async with _running(command, cwd, {**CLEAN_ENV, **(env or {})}, preexec_fn, merge_stdout=True) as served:
        yield served
