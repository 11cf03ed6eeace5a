"""A real bridge for integration tests: the simulated model, the server and the store, on real
sockets on 127.0.0.1, all inside the test's trio run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from callbridge.adapters.sim.fake_openai import FakeOpenAI, FakeOpenAIOptions, serve_fake_openai
from callbridge.adapters.sim.fake_openai_script import Script
from callbridge.engine.agent import Agent
from callbridge.engine.context import Telephony
from callbridge.engine.events import Event
from callbridge.engine.reconnect import ReconnectPolicy
from callbridge.engine.store import RecordedEvent
from callbridge.engine.tools import ToolRegistry
from callbridge.server import Server
from callbridge.web.settings import load_settings


@dataclass
class Bridge:
    server: Server
    fake: FakeOpenAI
    base_url: str

    async def events(self, call_id: str) -> list[Event]:
        """The call's events as stored (after flushing what the writer holds)."""
        await self.server.writer.flush()
        recorded: list[RecordedEvent] = await trio.to_thread.run_sync(self.server.store.read_call, call_id)
        return [r.event for r in recorded]

    async def wait_call_ended(self, call_id: str) -> None:
        while self.server.live.get(call_id) is not None:
            await self.server.live.wait_empty()


@asynccontextmanager
async def running_bridge(
    tmp_path: Path,
    *,
    script: Script | None = None,
    env: dict[str, str] | None = None,
    registry: ToolRegistry | None = None,
    reconnect: ReconnectPolicy | None = None,
    fake_options: dict[str, Any] | None = None,
    agent: Agent | None = None,
    engine_id: str | None = None,
    telephony: Telephony | None = None,
) -> AsyncIterator[Bridge]:
    async with trio.open_nursery() as nursery:
        options = FakeOpenAIOptions(expire_after_s=None)
        fake: FakeOpenAI = await nursery.start(
            partial(serve_fake_openai, "127.0.0.1", 0, script=script, options=options, **(fake_options or {}))
        )
        settings = load_settings(
            {"CALLBRIDGE_STORE": str(tmp_path / "callbridge.db"), "CALLBRIDGE_API_TOKEN": "test-token", **(env or {})},
            port=0,
            model="sim",
        )
        server = Server(
            settings,
            registry=registry,
            model_url=fake.url,
            reconnect=reconnect or ReconnectPolicy(max_attempts=3, first_delay_s=0.05, max_delay_s=0.2),
            agent=agent,
            engine_id=engine_id,
            telephony=telephony,
        )
        port = await nursery.start(server.run)
        try:
            yield Bridge(server=server, fake=fake, base_url=f"http://127.0.0.1:{port}")
        finally:
            server.shutdown.set()
            nursery.cancel_scope.deadline = trio.current_time() + 10
            # the server's run returns once it has ended calls and flushed; then stop the fake
            with trio.move_on_after(10):
                while server.port is not None and not server.stopped.is_set():
                    await server.stopped.wait()
            nursery.cancel_scope.cancel()


def of_type(events: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]
