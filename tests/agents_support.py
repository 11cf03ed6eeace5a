"""What the agent and routing tests share: a bridge with an API client, calls placed to a number
through ``/twiml`` as Twilio does, and what the simulated model was told."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import trio
from bridge_harness import Bridge, of_type, running_bridge

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_report import CallReport
from callbridge.adapters.sim.caller_script import HangUp, Silence, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai_records import SessionRecord
from callbridge.engine.agent import Agent
from callbridge.engine.events import AGENTS_STREAM, AgentRouted, CallStarted, Event, ModelEventSent

BEARER = {"Authorization": "Bearer test-token"}
SALES_LINE = "+15551230001"
SUPPORT_LINE = "+15551230002"
OTHER_LINE = "+15551239999"
GREETED = [WaitForAssistant(timeout_s=10), HangUp()]
"""A caller who hears the greeting out, then hangs up."""
SHORT = [Silence(300), HangUp()]
"""A caller who hangs up after a moment (the agent has no greeting)."""


@dataclass
class AgentsBridge:
    bridge: Bridge
    http: httpx2.AsyncClient

    async def call(self, to: str, script: list[Step] | None = None, *, from_: str = "+15550001111") -> CallRecord:
        """A call to ``to`` through ``/twiml`` (as Twilio places it), to its end; its log."""
        with trio.fail_after(90):  # a safety net, not a timing assumption
            report = await place_call(self.bridge.base_url, script=script or SHORT, to_number=to, from_number=from_)
            await self.bridge.wait_call_ended(report.call_sid)
        assert report.ok, report.errors
        return CallRecord(report, await self.bridge.events(report.call_sid))

    async def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        response = await self.http.request(method, path, json=body)
        assert response.status_code == status, response.text
        return response.json()

    async def agents_log(self) -> list[Event]:
        return await self.bridge.events(AGENTS_STREAM)


@dataclass
class CallRecord:
    report: CallReport
    events: list[Event]

    @property
    def routed(self) -> AgentRouted:
        (routed,) = of_type(self.events, AgentRouted)
        return routed

    @property
    def started(self) -> CallStarted:
        (started,) = of_type(self.events, CallStarted)
        return started

    def sent(self, kind: str) -> list[dict[str, Any]]:
        """The client events of ``kind`` the call sent to the model, as recorded in its log."""
        return [json.loads(e.raw) for e in of_type(self.events, ModelEventSent) if e.type == kind]


def session_updates(session: SessionRecord) -> list[dict[str, Any]]:
    """What the simulated model received as ``session.update`` (its ``session`` objects)."""
    return [json.loads(e.raw)["session"] for e in session.client_events if e.type == "session.update"]


@asynccontextmanager
async def agents_bridge(tmp_path: Path, *, agent: Agent | None = None, **options: Any) -> AsyncIterator[AgentsBridge]:
    async with running_bridge(tmp_path, agent=agent, **options) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=60) as http:
            yield AgentsBridge(bridge, http)
