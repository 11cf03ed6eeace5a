"""The composition root of ``callbridge serve``: store, writer, tools, model, app and listener.

Nothing else knows all of these. ``Server.run`` owns every long-lived task in one nursery.

- **Start**: the engine takes its name (``engine.engine_id``) and writes its first heartbeat before
  anything is served, so a store that opens but does not take writes stops ``serve`` there
  (``StoreNotWritableError``, exit 2); so does a key store (``engine.keys``) that cannot be created.
  Calls a previous process of this engine left open are ended (``projections.lost_calls``).
- **Privacy**: the redaction rules (``CALLBRIDGE_REDACT``) are the store's; every erasure, wherever
  it was made, is followed here (``projections.erasure.ErasureWatcher``).
- **Agents**: every agent profile and the routing rules are folded from the log (``agents`` stream);
  the agent file (``--agent``) is the ``default`` profile's first version, and a changed file a new
  one (``engine.agent_directory``). ``/twiml`` decides which profile answers and records it; the call's
  start takes that decision, wherever it was made (``engine.agent_router``).
- **Health and shutdown** (``/healthz``, draining, the stop signal's budget, the truthful last line):
  ``callbridge.server_lifecycle``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from functools import partial
from typing import Any

import msgspec
import trio
from hypercorn.config import Config

from callbridge.adapters.http import Httpx2Client
from callbridge.adapters.openai.client import open_realtime, realtime_url_for_model
from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG
from callbridge.adapters.tls import load_tls_contexts
from callbridge.engine.agent import DEFAULT_AGENT, DEFAULT_PROFILE, Agent
from callbridge.engine.agent_directory import BUILT_IN, FILE_SOURCE, AgentDirectory
from callbridge.engine.agent_router import AgentRouter, CallAgent
from callbridge.engine.apology import Apology
from callbridge.engine.call import run_call
from callbridge.engine.context import CallSettings, Telephony
from callbridge.engine.default_tools import default_registry
from callbridge.engine.engine_id import ENGINE_ID_ENV, EngineIdentity, EngineIdError, claim_engine_id
from callbridge.engine.events import SETTINGS_STREAM, CallResumed, CallStarted, DefaultSessionConfigSaved, Event
from callbridge.engine.http_tools import agent_registry
from callbridge.engine.live_calls import LiveCalls
from callbridge.engine.reconnect import ReconnectPolicy
from callbridge.engine.redaction import Redaction, RedactionError
from callbridge.engine.redaction_record import rules_to_record
from callbridge.engine.routing import CallFacts
from callbridge.engine.store import open_store_with_keys
from callbridge.engine.store_writer import EventWriter
from callbridge.engine.tools import ToolRegistry
from callbridge.mcp_server.data import ServerCallData
from callbridge.mcp_server.http import McpHttp
from callbridge.mcp_server.server import CallbridgeMCP
from callbridge.projections.appends import AppendSignal
from callbridge.projections.call_commands import CallCommands
from callbridge.projections.erasure import ErasureWatcher
from callbridge.projections.freshness import ReadYourWrites
from callbridge.projections.lost_calls import EngineTimings, LostCalls, write_first_heartbeat
from callbridge.projections.service import ProjectionService
from callbridge.projections.views_db import views_path
from callbridge.projections.webhook_service import WebhookService, webhook_timings
from callbridge.server_lifecycle import ServerLifecycle
from callbridge.web.app import create_app
from callbridge.web.call_admission import CallAdmission
from callbridge.web.listener import serve_front
from callbridge.web.live_feed import LiveFeed
from callbridge.web.media import handle_media_stream
from callbridge.web.outbound import OutboundCalls
from callbridge.web.settings import Settings, SettingsError
from callbridge.web.warm_transfer import tell_transfer_status_url
from callbridge.web.worker_board import WorkerTurns

log = logging.getLogger(__name__)

DB_THREADS = 4
"""Worker threads the API may use at once for views, store reads and recordings."""


class Server(ServerLifecycle):
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
        engine_id: str | None = None,
        fold_views: bool = True,
        turns: WorkerTurns | None = None,
        timings: EngineTimings | None = None,
        call_tools: Callable[[ToolRegistry], ToolRegistry] | None = None,
        tool_environ: Mapping[str, str] | None = None,
    ) -> None:
        """Open the store and check it takes writes. Raises ``SettingsError`` (an engine setting is
        wrong), ``StoreOpenError`` (the store cannot be opened or written)."""
        self.settings = settings
        try:
            self.timings = timings or EngineTimings.from_env(os.environ)
            self.webhook_timings = webhook_timings(os.environ)
        except ValueError as error:
            raise SettingsError(str(error)) from None
        try:
            redaction = Redaction.from_env(os.environ)
        except RedactionError as error:
            raise SettingsError(str(error)) from None
        self.store = open_store_with_keys(settings.store_url, redaction=redaction)
        try:
            self.identity: EngineIdentity = claim_engine_id(
                settings.data_dir, engine_id if engine_id is not None else os.environ.get(ENGINE_ID_ENV)
            )
        except EngineIdError as error:
            self.store.close()
            raise SettingsError(str(error)) from None
        try:
            self.started_at_position = write_first_heartbeat(self.store, self.identity, self.timings)
        except Exception:
            self.identity.release()
            self.store.close()
            raise
        self.writer = EventWriter(self.store)
        self.views_path = views_path(settings.data_dir)
        self.appends = AppendSignal(self.store, self.writer)
        """Wakes the followers below on this server's writes and (PostgreSQL) on any process's."""
        self.projections = ProjectionService(
            self.store, self.views_path, wait_for_appends=self.appends.waiter(), fold=fold_views
        )
        """The views; with ``fold_views`` False (a worker other than the first) another process folds
        them and this one follows how far they are."""
        self.turns = turns
        """With ``serve --workers``: the shared listening socket, and this worker's turn on it."""
        self.feed = LiveFeed(self.store, self.writer, wait_for_appends=self.appends.waiter())
        """The live feed hub behind ``WS /logs``."""
        self.erasures = ErasureWatcher(
            self.store, self.views_path, self.projections.watermark, self.appends.waiter, settings.data_dir
        )
        """Evicts erased calls' keys and truncates the views' log after each erasure, wherever made."""
        self.db_threads = trio.CapacityLimiter(DB_THREADS)
        self.fresh = ReadYourWrites(self.store, self.writer, self.projections.watermark, limiter=self.db_threads)
        """Read-your-writes for the API and ``/mcp``: flush, then wait for the views (bounded)."""
        self.http = Httpx2Client()
        self.registry = registry or default_registry(
            weather_url=settings.weather_url, simulated=settings.model == "sim"
        )
        self.call_tools = call_tools
        """What a call's tools become once its agent's are known (None: as they are); ``callbridge test``
        answers them from the recorded call or the test file (``regression/tool_stubs.py``)."""
        self.live = LiveCalls()
        self.commands = CallCommands(
            self.live, self.identity, self.store, self.writer, self.appends.waiter, clock=self.now
        )
        """Operator commands reach a live call on whichever engine carries it (through the log)."""
        self.admission = CallAdmission(self.store)
        """CallSids let in (one stream per CallSid, ever) and the per-call tokens of ``/twiml``."""
        self.reconnect = reconnect or ReconnectPolicy()
        self.apology = apology if apology is not None else Apology.bundled()
        self.lost_calls = LostCalls(
            self.identity,
            self.store,
            self.writer,
            self.views_path,
            self.projections.watermark,
            started_at_position=self.started_at_position,
            live=lambda call_id: self.live.get(call_id) is not None,
            timings=self.timings,
        )
        """Heartbeats; ends the calls of engines that died (this one before a restart included)."""
        self.webhooks = WebhookService(
            self.store,
            self.writer.record,
            self.projections.watermark,
            self.views_path,
            self.identity,
            self.appends.waiter,
            timings=self.webhook_timings,
            engine_timings=self.timings,
        )
        """Webhooks out: the delivery lease, and a sender per registered endpoint while holding it."""
        self.accepting = True
        self.draining = False
        self._stop_started: float | None = None
        self._stop_started_clock = 0.0
        self.model_url = model_url
        """Where the realtime model is: set at start (the in-process simulated model's URL for ``sim``)."""
        configured = agent or DEFAULT_AGENT
        self.agents = AgentDirectory(
            self.store,
            configured=configured,
            source=f"{FILE_SOURCE}{settings.agent_path}" if settings.agent_path else BUILT_IN,
            base_registry=self.registry,
            environ=tool_environ,
        )
        """Every agent profile and the routing rules, from the log; ``--agent FILE`` is ``default``'s first
        version (greeting, hang-up, transfers, keypad, limits; its instructions and voice win over the
        console's default session)."""
        self.routing = AgentRouter(self.agents, http=self.http, record=self.writer.record, flush=self.writer.flush)
        """Which agent answers each call: decided at ``/twiml``, taken up at the stream's start."""
        self.telephony = telephony
        """Twilio's REST API for hang-ups and transfers (None: through the stream's ``<Connect action>``)."""
        self.default_session: dict[str, Any] = {**DEFAULT_SESSION_CONFIG, **configured.session_defaults()}
        self.outbound = OutboundCalls(self)
        """Outbound calls placed through ``POST /api/calls``: the cap, and each call's greeting."""
        agent_registry(self.registry, configured, environ=None if tool_environ is None else dict(tool_environ))
        # an HTTP tool without its secret stops serve here (``tool_environ``: where the secrets are read,
        # os.environ by default; ``callbridge test`` gives tools it answers itself a stand-in)
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

    @property
    def agent(self) -> Agent:
        """The ``default`` agent profile's current version (the agent file's before the log is read)."""
        return self.agents.default_agent()

    @property
    def agent_registry(self) -> ToolRegistry:
        """The server's tools and the ``default`` agent's own (HTTP tools, tools a person answers)."""
        current = self.agents.book.current(DEFAULT_PROFILE)
        return self.agents.registry_for(DEFAULT_PROFILE, current.version if current else 0, self.agent)

    def load_default_session(self) -> None:
        """The last saved default session config survives restarts: it is an event."""
        for recorded in self.store.read_call(SETTINGS_STREAM):
            if isinstance(recorded.event, DefaultSessionConfigSaved):
                self.default_session = dict(recorded.event.session_config)
        changed = rules_to_record(self.store, self.store.redaction, self.now())
        if changed is not None:  # so that `callbridge mcp` masks them too (engine/redaction_record.py)
            self.writer.record(changed)

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

    def call_settings(self, model: str | None = None) -> CallSettings:
        """What a call needs from the server; ``model``: the realtime model its agent profile names (the
        socket opens with it; None: the one in the configured URL)."""
        assert self.model_url is not None
        api_key = self.settings.openai_api_key if self.settings.model == "openai" else "sim"
        url = realtime_url_for_model(self.model_url, model) if model else self.model_url
        opener: Callable[[], AbstractAsyncContextManager[Any]] = partial(open_realtime, url, api_key)
        return CallSettings(
            open_model=opener,
            model_kind=self.settings.model,
            model_url=self.model_url.split("?")[0],
            registry=self.agent_registry,
            tool_context_http=self.http,
            reconnect=self.reconnect,
            apology=self.apology,
            agent=self.agent,
            telephony=self.telephony,
            before_each_batch=self.writer.before_each_batch,
        )

    async def _run_call(self, link: Any, start: Any) -> str:
        facts = CallFacts.of(start.start.call_sid, start.start.custom_parameters)
        answering = await self.routing.call_starting(facts)  # the agent /twiml chose (or the rules now)
        agent = answering.agent
        greeting = await self.outbound.call_starting(start)
        if greeting:  # POST /api/calls gave this outbound call its own greeting
            agent = msgspec.structs.replace(agent, greeting=greeting)
        session_config = {**self.default_session, **answering.agent.session_defaults()}  # the profile wins
        registry = answering.registry if self.call_tools is None else self.call_tools(answering.registry)
        settings = replace(self.call_settings(answering.agent.model), agent=agent, registry=registry)
        history = self.admission.resumed_history(start.start.call_sid)
        if history is not None:  # back from a warm transfer nobody answered (web/warm_transfer.py)
            settings = replace(settings, resumed_history=history)
        try:
            return await run_call(
                link,
                start,
                settings=settings,
                session_config=session_config,
                sink=partial(self._record_call_event, answering=answering),
                live=self.live,
            )
        finally:
            self.routing.call_ended(facts.call_id)

    def _record_call_event(self, event: Event, answering: CallAgent | None = None) -> None:
        """The calls' sink: the writer, with this engine named as the owner of each call it starts or
        resumes (``CallStarted.engine_id``, ``CallResumed.engine_id``), so its calls can be ended for it
        if it dies, and the agent profile and version that answers (``CallStarted.agent_name``,
        ``agent_version``)."""
        if isinstance(event, CallStarted | CallResumed) and not event.engine_id:
            event = msgspec.structs.replace(event, engine_id=self.identity.engine_id)
        if type(event) is CallStarted and answering is not None:
            event = msgspec.structs.replace(event, agent_name=answering.name, agent_version=answering.version)
            if answering.unrecorded:  # routed at the stream's start: the decision follows CallStarted
                self.writer.record(event)
                event = msgspec.structs.replace(answering.routed, at=event.at)
        self.writer.record(event)

    async def _media(self, stream: trio.abc.HalfCloseableStream) -> None:
        await handle_media_stream(
            stream,
            public_url=self.settings.public_url,
            auth_token=self.settings.twilio_auth_token,
            accepting=lambda: self.accepting,
            refusal=lambda: None if self.writer.accepting_calls else self.apology,
            run=self._run_call,
            admission=self.admission,
        )

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until ``self.shutdown`` is set; ``task_status.started`` gets the bound port."""
        await trio.to_thread.run_sync(self.load_default_session)
        await trio.to_thread.run_sync(self.agents.load)
        await load_tls_contexts()  # before the webhooks' client, a tool or a model socket needs one
        config = Config()
        config.graceful_timeout = 2.0
        config.accesslog = None
        async with trio.open_nursery() as services:
            self._services = services
            await services.start(self.writer.run)
            await services.start(self.appends.run)
            await services.start(self.projections.run)
            await services.start(self.lost_calls.run)
            await services.start(self.mcp.run)
            await services.start(self.feed.run)
            await services.start(self.commands.run)
            await services.start(self.erasures.run)
            await services.start(self.webhooks.run)
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
                        turns=self.turns,
                        task_status=task_status,
                    )
                finally:
                    front_done.set()

            self.port = await services.start(front)
            if self.settings.public_url_from_bind and self.settings.port != self.port:
                self.settings = replace(self.settings, public_url=f"http://{self.settings.host}:{self.port}")
            self.mcp.allow(self.settings.public_url, self.port)
            tell_transfer_status_url(self.telephony, self.settings.public_url)
            task_status.started(self.port)
            await front_done.wait()
            services.cancel_scope.cancel()  # the writer flushes what is left as it stops
        self.identity.release()  # another process may now run as this engine
        self.stopped.set()


def server_mcp(server: Server) -> McpHttp:
    """``/mcp`` for a running ``callbridge serve``: its store, writer, projections, read-your-writes
    service (the API's own) and token."""
    data = ServerCallData(
        server.store,
        server.writer,
        server.projections,
        server.views_path,
        limiter=server.db_threads,
        fresh=server.fresh,
    )
    return McpHttp(
        CallbridgeMCP(data),
        token=lambda: server.settings.api_token,
        public_url=server.settings.public_url,
        port=server.settings.port,
    )
