"""The composition root of ``callbridge serve``: store, writer, tools, model, app and listener.

Nothing else knows all of these. ``Server.run`` owns every long-lived task in one nursery; on
shutdown it stops taking calls, ends the live ones cleanly (each records ``CallEnded``), flushes
every accepted event and returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from functools import partial
from typing import Any

import msgspec
import trio
from hypercorn.config import Config

from callbridge.adapters.openai.client import open_realtime
from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG
from callbridge.adapters.sim.fake_weather import simulated_weather
from callbridge.engine.agent import DEFAULT_AGENT, Agent
from callbridge.engine.apology import Apology
from callbridge.engine.call import run_call
from callbridge.engine.context import CallSettings, Telephony
from callbridge.engine.events import SETTINGS_STREAM, DefaultSessionConfigSaved
from callbridge.engine.live_calls import LiveCalls
from callbridge.engine.reconnect import ReconnectPolicy
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.tools import Httpx2Client, ToolRegistry, default_registry
from callbridge.mcp_server.http import server_mcp
from callbridge.projections.appends import AppendSignal
from callbridge.projections.service import ProjectionService
from callbridge.projections.views_db import views_path
from callbridge.web.app import create_app
from callbridge.web.call_admission import CallAdmission
from callbridge.web.listener import serve_front
from callbridge.web.live_feed import LiveFeed
from callbridge.web.media import handle_media_stream
from callbridge.web.outbound import OutboundCalls
from callbridge.web.settings import Settings

log = logging.getLogger(__name__)

SHUTDOWN_CALLS_TIMEOUT_S = 5.0
DB_THREADS = 4
"""Worker threads the API may use at once for views, store reads and recordings."""


class Server:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: ToolRegistry | None = None,
        reconnect: ReconnectPolicy | None = None,
        model_url: str | None = None,
        apology: Apology | None = None,
        agent: Agent | None = None,
        telephony: Telephony | None = None,
    ) -> None:
        self.settings = settings
        self.store = EventStore(settings.store_url)
        self.writer = EventWriter(self.store)
        self.views_path = views_path(settings.data_dir)
        self.appends = AppendSignal(self.store, self.writer)
        """Wakes the followers below on this server's writes and (PostgreSQL) on any process's."""
        self.projections = ProjectionService(self.store, self.views_path, wait_for_appends=self.appends.waiter())
        self.feed = LiveFeed(self.store, self.writer, wait_for_appends=self.appends.waiter())
        """The live feed hub behind ``WS /logs``."""
        self.db_threads = trio.CapacityLimiter(DB_THREADS)
        self.http = Httpx2Client()
        self.registry = registry or default_registry(weather_url=settings.weather_url, http=simulated_weather(settings))
        self.live = LiveCalls()
        self.admission = CallAdmission(self.store)
        """CallSids let in (one stream per CallSid, ever) and the per-call tokens of ``/twiml``."""
        self.reconnect = reconnect or ReconnectPolicy()
        self.apology = apology if apology is not None else Apology.bundled()
        self.accepting = True
        self.model_url = model_url
        """Where the realtime model is: set at start (the in-process simulated model's URL for ``sim``)."""
        self.agent = agent or DEFAULT_AGENT
        """Greeting, hang-up, transfers, keypad, limits (``--agent FILE``); its instructions and voice
        are the default session's until the console saves another."""
        self.telephony = telephony
        """Twilio's REST API for hang-ups and transfers (None: through the stream's ``<Connect action>``)."""
        self.default_session: dict[str, Any] = {**DEFAULT_SESSION_CONFIG, **self.agent.session_defaults()}
        self.outbound = OutboundCalls(self)
        """Outbound calls placed through ``POST /api/calls``: the cap, and each call's greeting."""
        self.port: int | None = None
        self.shutdown = trio.Event()
        self._services: trio.Nursery | None = None
        self.stopped = trio.Event()
        """Set once the server has ended its calls and flushed every event."""
        self.app = create_app(self)
        self.mcp = server_mcp(self)
        """``/mcp``: the MCP server over streamable HTTP, in front of the app."""

    @staticmethod
    def now() -> float:
        return time.time()

    async def store_answers(self) -> bool:
        try:
            return await trio.to_thread.run_sync(self.store.ping)
        except Exception:
            log.exception("store ping failed")
            return False

    def load_default_session(self) -> None:
        """The last saved default session config survives restarts: it is an event."""
        for recorded in self.store.read_call(SETTINGS_STREAM):
            if isinstance(recorded.event, DefaultSessionConfigSaved):
                self.default_session = dict(recorded.event.session_config)

    def start_background(self, fn: Callable[[], Awaitable[object]]) -> None:
        """Run ``fn()`` in the server's own nursery (e.g. a console test call): it is cancelled when
        the server stops, and an exception is logged, never fatal to the server. RuntimeError when
        the server is not running."""
        if self._services is None or self.stopped.is_set():
            raise RuntimeError("the server is not running")

        async def guarded() -> None:
            try:
                await fn()
            except Exception:
                log.exception("background task failed")

        self._services.start_soon(guarded)

    def call_settings(self) -> CallSettings:
        assert self.model_url is not None
        api_key = self.settings.openai_api_key if self.settings.model == "openai" else "sim"
        opener: Callable[[], AbstractAsyncContextManager[Any]] = partial(open_realtime, self.model_url, api_key)
        return CallSettings(
            open_model=opener,
            model_kind=self.settings.model,
            model_url=self.model_url.split("?")[0],
            registry=self.registry,
            tool_context_http=self.http,
            reconnect=self.reconnect,
            apology=self.apology,
            agent=self.agent,
            telephony=self.telephony,
        )

    async def _run_call(self, link: Any, start: Any) -> str:
        settings = self.call_settings()
        greeting = await self.outbound.call_starting(start)
        if greeting:  # POST /api/calls gave this outbound call its own greeting
            settings = replace(settings, agent=msgspec.structs.replace(self.agent, greeting=greeting))
        return await run_call(
            link,
            start,
            settings=settings,
            session_config=self.default_session,
            sink=self.writer.record,
            live=self.live,
        )

    async def _media(self, stream: trio.abc.HalfCloseableStream) -> None:
        await handle_media_stream(
            stream,
            public_url=self.settings.public_url,
            auth_token=self.settings.twilio_auth_token,
            accepting=lambda: self.accepting,
            run=self._run_call,
            admission=self.admission,
        )

    async def _end_calls(self) -> None:
        self.accepting = False
        if len(self.live):
            log.info("ending %d live call(s)", len(self.live))
        self.live.hang_up_all("server_shutdown")
        with trio.move_on_after(SHUTDOWN_CALLS_TIMEOUT_S):
            await self.live.wait_empty()
        await self.writer.flush()

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``self.shutdown`` is set; ``task_status.started`` gets the bound port."""
        await trio.to_thread.run_sync(self.load_default_session)
        config = Config()
        config.graceful_timeout = 2.0
        config.accesslog = None
        async with trio.open_nursery() as services:
            self._services = services
            await services.start(self.writer.run)
            await services.start(self.appends.run)
            await services.start(self.projections.run)
            await services.start(self.mcp.run)
            await services.start(self.feed.run)
            if self.model_url is None:
                if self.settings.model == "sim":
                    from callbridge.adapters.sim.fake_openai import serve_fake_openai

                    fake = await services.start(partial(serve_fake_openai, "127.0.0.1", 0))
                    self.model_url = fake.url
                else:
                    self.model_url = self.settings.openai_realtime_url
            front_done = trio.Event()

            async def front(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    await serve_front(
                        self.mcp.wrap(self.app),
                        config,
                        self._media,
                        host=self.settings.host,
                        port=self.settings.port,
                        shutdown=self.shutdown,
                        before_close=self._end_calls,
                        task_status=task_status,
                    )
                finally:
                    front_done.set()

            self.port = await services.start(front)
            if self.settings.public_url_from_bind and self.settings.port != self.port:
                self.settings = replace(self.settings, public_url=f"http://{self.settings.host}:{self.port}")
            self.mcp.allow(self.settings.public_url, self.port)
            task_status.started(self.port)
            await front_done.wait()
            services.cancel_scope.cancel()  # the writer flushes what is left as it stops
        self.stopped.set()
