"""One fresh call for a test: a real server (the engine, ``/twiml``, ``/call``) on 127.0.0.1 with its
own temporary event store, the model (the simulated one, scripted, or the real API), and the
simulated caller playing the test's caller, all on real sockets inside this trio run.

Each test gets its own server and store, so tests running at once never share a call, an agent or
a model script, and the rerun never writes to the store the recorded call came from. Its tools
answer from the recorded call or the test file where the plan says so (``tool_stubs.py``).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG
from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_report import CallReport, FrameSent
from callbridge.adapters.sim.caller_script import Step
from callbridge.adapters.sim.fake_openai import FakeOpenAI, FakeOpenAIOptions, serve_fake_openai
from callbridge.adapters.sim.fake_openai_script import Script
from callbridge.engine.agent import Agent
from callbridge.engine.events import SETTINGS_STREAM, DefaultSessionConfigSaved, Event
from callbridge.regression.tool_answers import ToolStubs
from callbridge.regression.tool_secrets import tool_environ
from callbridge.regression.tool_stubs import StubbedTools
from callbridge.server import Server
from callbridge.web.settings import Settings, load_settings


@dataclass(frozen=True)
class ModelChoice:
    """``sim``: the simulated model, scripted per test; ``openai``: the real API with ``api_key``."""

    kind: str = "sim"
    api_key: str | None = None
    realtime_url: str | None = None


@dataclass(frozen=True)
class RerunPlan:
    caller: list[Step]
    script: Script
    agent: Agent
    from_number: str = "+15005550006"
    to_number: str = "+15005550001"
    max_duration_s: float = 600.0
    default_session: dict[str, Any] | None = None
    """The default session configuration the rerun's engine starts with (else the built-in one)."""
    stubs: ToolStubs | None = None
    """What answers the tools instead of running them (None: every tool runs for real)."""


@dataclass
class Rerun:
    call_id: str
    events: list[Event]
    report: CallReport
    speech: list[tuple[float, float]] = field(default_factory=list)
    """When the caller was talking: (start, end) in seconds since its first frame."""
    call_window: tuple[float, float] = (0.0, 0.0)
    """When the call was placed and when it ended, on trio's clock (the engine's start-up excluded)."""
    notes: list[str] = field(default_factory=list)
    """What the reader should know about this call (a tool call nothing answered)."""


class SpeechRuns:
    """The caller's talk, from the frames it sent (``on_frame_sent``), on the clock of what it heard
    (seconds since its first frame went out): when each frame really went, not its timestamp, which
    runs behind when a busy process sends frames late."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, float]] = []
        self._first: float | None = None
        self._start: float | None = None

    def frame(self, now: float, sent: FrameSent) -> None:
        if self._first is None:
            self._first = now
        at = now - self._first
        if sent.speech and self._start is None:
            self._start = at
        if self._start is not None and (not sent.speech or sent.end_of_utterance):
            self.runs.append((self._start, at + (0.02 if sent.speech else 0.0)))
            self._start = None


def starting_session(plan: RerunPlan) -> dict[str, Any]:
    """The session configuration the rerun's calls start with: the built-in defaults, the saved
    default session, then the agent's (as ``Server`` merges them)."""
    return {**DEFAULT_SESSION_CONFIG, **(plan.default_session or {}), **plan.agent.session_defaults()}


def session_tool_names(plan: RerunPlan) -> list[str]:
    """The function tools of :func:`starting_session`."""
    tools = starting_session(plan).get("tools")
    if not isinstance(tools, list):
        return []
    return [
        t["name"]
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]


def _start_engine(settings: Settings, plan: RerunPlan, model_url: str | None, stubbed: StubbedTools | None) -> Server:
    """The rerun's server, its store made (in a worker thread: opening stores is ~0.1 s of blocking
    work, and a suite starts many engines while other tests' calls are running)."""
    server = Server(
        settings,
        agent=plan.agent,
        model_url=model_url,
        fold_views=False,
        engine_id="regression",
        call_tools=stubbed.registry if stubbed is not None else None,
        tool_environ=tool_environ(plan.agent, plan.stubs, os.environ),
    )
    if plan.default_session is not None:
        saved = DefaultSessionConfigSaved(
            call_id=SETTINGS_STREAM, at=time.time(), session_config=plan.default_session, source="callbridge test"
        )
        server.store.append([saved])
    return server


async def rerun_call(plan: RerunPlan, workdir: Path, model: ModelChoice) -> Rerun:
    """Place the test's call into a fresh server in ``workdir``; returns the new call's events and
    what the caller observed. The server is stopped (every event written) before this returns."""
    env = {"CALLBRIDGE_STORE": str(workdir / "rerun.db"), "CALLBRIDGE_API_TOKEN": secrets.token_urlsafe(24)}
    if model.kind == "openai" and model.api_key:
        env["OPENAI_API_KEY"] = model.api_key
        if model.realtime_url:
            env["OPENAI_REALTIME_URL"] = model.realtime_url
    settings = load_settings(env, host="127.0.0.1", port=0, model=model.kind)
    speech = SpeechRuns()
    stubbed = StubbedTools(plan.stubs, session_tool_names(plan)) if plan.stubs is not None else None
    async with trio.open_nursery() as nursery:
        model_url = None
        if model.kind == "sim":
            options = FakeOpenAIOptions(expire_after_s=None)
            fake: FakeOpenAI = await nursery.start(
                partial(serve_fake_openai, "127.0.0.1", 0, script=plan.script, options=options)
            )
            model_url = fake.url
        server = await trio.to_thread.run_sync(partial(_start_engine, settings, plan, model_url, stubbed))
        try:
            port = await nursery.start(server.run)
            placed = trio.current_time()
            report = await place_call(
                f"http://127.0.0.1:{port}",
                script=plan.caller,
                from_number=plan.from_number,
                to_number=plan.to_number,
                max_duration_s=plan.max_duration_s,
                on_frame_sent=speech.frame,
            )
            with trio.move_on_after(15):
                while server.live.get(report.call_sid) is not None:
                    await server.live.wait_empty()
            ended = trio.current_time()
            await server.writer.flush()
            recorded = await trio.to_thread.run_sync(server.store.read_call, report.call_sid)
        finally:
            server.shutdown.set()
            with trio.move_on_after(10):
                while server.port is not None and not server.stopped.is_set():
                    await server.stopped.wait()
            nursery.cancel_scope.cancel()
    server.finish()
    notes = list(stubbed.notes) if stubbed is not None else []
    return Rerun(report.call_sid, [r.event for r in recorded], report, speech.runs, (placed, ended), notes)
