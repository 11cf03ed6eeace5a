"""``callbridge serve`` as a real subprocess for the tests about starting and stopping: what it
prints, what it leaves on disk, how it exits. Output (stdout and stderr together) is collected
line by line; ``wait_for`` waits on it without sleeping."""

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
from typing import Any

import trio

START_S = 30.0
"""Guard against a hang at start (not synchronisation)."""
STOP_S = 15.0

CLEAN_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("OPENAI_", "TWILIO_", "CALLBRIDGE_")) and key not in ("HOST", "PORT", "PUBLIC_URL")
}


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "callbridge", "serve", *args]


@dataclass
class ServeProcess:
    process: trio.Process
    lines: list[str] = field(default_factory=list)
    _changed: trio.Event = field(default_factory=trio.Event)
    ended: trio.Event = field(default_factory=trio.Event)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def wait_for(self, pattern: str, timeout_s: float = START_S) -> re.Match[str]:
        """The first output line matching ``pattern``; fails when the process ends first."""
        with trio.fail_after(timeout_s):
            while True:
                for line in self.lines:
                    found = re.search(pattern, line)
                    if found:
                        return found
                if self.ended.is_set():
                    raise AssertionError(f"serve ended without printing {pattern!r}:\n{self.output}")
                await self._changed.wait()

    async def port(self) -> int:
        return int((await self.wait_for(r"Console:\s+http://127\.0\.0\.1:(\d+)/"))[1])

    async def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        with trio.fail_after(STOP_S):
            await self.ended.wait()
            return await self.process.wait()

    async def read(self) -> None:
        assert self.process.stdout is not None
        buffered = b""
        while chunk := await self.process.stdout.receive_some(65536):
            buffered += chunk
            *complete, buffered = buffered.split(b"\n")
            self.lines += [line.decode(errors="replace") for line in complete]
            self._changed.set()
            self._changed = trio.Event()
        if buffered:
            self.lines.append(buffered.decode(errors="replace"))
        self.ended.set()
        self._changed.set()


@asynccontextmanager
async def serve_process(
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], Any] | None = None,
) -> AsyncIterator[ServeProcess]:
    """``callbridge serve ARGS`` in ``cwd`` with a clean environment plus ``env``; killed if the
    test leaves it running."""
    process = await trio.lowlevel.open_process(
        serve_command(*args),
        cwd=str(cwd),
        env={**CLEAN_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=preexec_fn,
    )
    served = ServeProcess(process)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(served.read)
        try:
            yield served
        finally:
            if process.returncode is None:
                process.kill()
            with trio.CancelScope(shield=True), trio.move_on_after(STOP_S):
                await process.wait()
                await served.ended.wait()
            nursery.cancel_scope.cancel()
