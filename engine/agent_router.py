"""Which agent answers each call: decided at ``/twiml``, carried to the stream's start through the log.

- **At ``/twiml``** (:meth:`AgentRouter.route_webhook`): the profiles and rules are caught up from the
  log, the operator's assistant-request endpoint is asked when one is set (``engine/assistant_request``,
  at most 1.5 s; it fails → the rules decide, and the reason says so), else the rules, else the default.
  The decision is recorded (``AgentRouted``, in the call's own log, before ``CallStarted``) and
  written to the store *before* the TwiML is answered.
- **At the stream's start** (:meth:`AgentRouter.call_starting`), possibly on another engine (Twilio
  opens the stream wherever the load balancer sends it): the decision is taken from this engine's
  memory, else from the call's log (it is there: ``/twiml`` waited for the write), as
  ``web/outbound.py`` does for an outbound call's greeting. Nothing in the stream's parameters decides
  the agent, so a forged ``start`` cannot choose one. A stream that comes without any ``/twiml``
  decision (a test peer, a lost write) is routed by the rules then, recorded just after
  ``CallStarted``, and the reason says so.
- The chosen version is the one that answers, even if the profile is saved again or deleted before
  the stream starts; the assistant request's overrides apply to that call only.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from callbridge.adapters.http import HttpClient
from callbridge.engine.agent import DEFAULT_PROFILE, Agent
from callbridge.engine.agent_directory import AgentDirectory
from callbridge.engine.agent_profiles import ProfileError, apply_overrides
from callbridge.engine.assistant_request import AssistantRequestFailed, ask_assistant
from callbridge.engine.events import AGENTS_STREAM, SETTINGS_STREAM, AgentRouted, Event
from callbridge.engine.routing import CallFacts, choose
from callbridge.engine.tools import ToolRegistry

log = logging.getLogger(__name__)

ROUTE_WRITE_TIMEOUT_S = 2.0
"""How long ``/twiml`` waits for its decision to be written before answering anyway."""
REMEMBERED_DECISIONS = 10_000
"""Decisions of ``/twiml`` kept in memory for their stream's start (older ones are in the log)."""
RESERVED_STREAMS = frozenset({AGENTS_STREAM, SETTINGS_STREAM})


@dataclass(frozen=True)
class CallAgent:
    """The agent one call runs with: the profile's version, overrides applied, and its tools."""

    routed: AgentRouted
    agent: Agent
    registry: ToolRegistry
    unrecorded: bool = False
    """Decided at the stream's start: ``routed`` is recorded right after ``CallStarted`` (so a call
    that never went through ``/twiml`` still begins with ``CallStarted``)."""

    @property
    def name(self) -> str:
        return self.routed.agent

    @property
    def version(self) -> int:
        return self.routed.version


class AgentRouter:
    def __init__(
        self,
        directory: AgentDirectory,
        *,
        http: HttpClient,
        record: Callable[[Event], None],
        flush: Callable[[], Awaitable[object]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.http = http
        self.record = record
        self.flush = flush
        self.clock = clock
        """Wall-clock seconds for the time-of-day rules (tests set their own)."""
        self._decided: OrderedDict[str, AgentRouted] = OrderedDict()
        self._live: dict[str, CallAgent] = {}

    async def _refresh(self) -> None:
        try:
            await trio.to_thread.run_sync(self.directory.refresh)
        except Exception:  # the store is unwell: route with what this engine knows
            log.exception("cannot read the agents from the log; routing with what this engine folded last")

    # --- deciding -------------------------------------------------------------------------------

    async def decide(self, call: CallFacts, *, ask: bool = True, chosen: str | None = None) -> AgentRouted:
        """The routing decision for ``call`` now (nothing recorded); ``chosen``: the agent the
        outbound call was placed with, which wins over the assistant request and the rules."""
        book = self.directory.book
        routing = book.current_routing()
        choice = choose(routing, call, self.clock())
        agent, source, reason, rule = choice.agent, "rule" if choice.rule else "default", choice.reason, choice.rule
        overrides: dict[str, Any] = {}
        took: float | None = None
        request = routing.assistant_request
        if chosen is not None:
            agent, source, reason, rule = chosen, "placed", "chosen when the call was placed", None
        elif ask and request is not None:
            began = trio.current_time()
            try:
                answer = await ask_assistant(self.http, request, call, book.names(), environ=self.directory.environ)
                named = answer.agent or choice.agent
                profile = book.current(named)
                if profile is None:
                    raise AssistantRequestFailed(f"it named agent {named!r}, which does not exist")
                if answer.overrides:
                    base = self.directory.agent_at(named, profile.version, refresh=False)
                    try:
                        apply_overrides(base or self.directory.configured, answer.overrides, name=named)
                    except ProfileError as error:  # the log says how; the reason names the key only (no values)
                        log.warning("call %s: the assistant request's overrides are not valid: %s", call.call_id, error)
                        where = f"at {error.key}" if error.key else "(not agent keys)"
                        raise AssistantRequestFailed(f"its overrides are not valid {where}") from None
                agent, overrides = named, answer.overrides
                if answer.agent is not None:
                    source, reason, rule = "assistant_request", "assistant request", None
                else:
                    source, reason = "assistant_request", f"assistant request (overrides); agent by {choice.reason}"
            except AssistantRequestFailed as failed:
                source = "fallback"
                why = "timeout" if failed.timed_out else "error"
                reason = f"fallback after {why} ({failed}): {choice.reason}"
            took = round((trio.current_time() - began) * 1000, 1)
        if overrides:
            reason += f" with overrides of {', '.join(sorted(overrides))}"
        current = book.current(agent)
        if current is None and agent != DEFAULT_PROFILE:  # named, then deleted between two saves
            reason += f"; agent {agent!r} does not exist, so: default"
            agent, overrides, current = DEFAULT_PROFILE, {}, book.current(DEFAULT_PROFILE)
        return AgentRouted(
            call_id=call.call_id,
            at=self.clock(),
            agent=agent,
            version=current.version if current is not None else 0,
            reason=reason,
            source=source,
            rule=rule,
            overrides=overrides,
            routing_version=book.routing_version(),
            assistant_request_ms=took,
        )

    async def route_webhook(self, call: CallFacts, *, chosen: str | None = None) -> AgentRouted:
        """``/twiml``: decide, record the decision in the call's log and wait (bounded) until it is
        written, so the engine that gets the stream finds it. A call decided before (Twilio retrying
        the webhook, a ``<Redirect>`` back to ``/twiml``, a held call) keeps its decision: one per call.
        ``chosen``: the agent an outbound call was placed with (from our own log, never the request)."""
        earlier = self._decided.get(call.call_id) or await self._recorded(call.call_id)
        if earlier is not None:
            return earlier
        await self._refresh()
        routed = await self.decide(call, chosen=chosen)
        if call.call_id and call.call_id not in RESERVED_STREAMS and ":" not in call.call_id:
            self.record(routed)
            self._remember(routed)
            with trio.move_on_after(ROUTE_WRITE_TIMEOUT_S):
                await self.flush()
        log.info("call %s: agent %s v%d (%s)", call.call_id, routed.agent, routed.version, routed.reason)
        return routed

    def _remember(self, routed: AgentRouted) -> None:
        self._decided[routed.call_id] = routed
        self._decided.move_to_end(routed.call_id)
        while len(self._decided) > REMEMBERED_DECISIONS:
            self._decided.popitem(last=False)

    # --- the stream starts ------------------------------------------------------------------------

    async def call_starting(self, call: CallFacts) -> CallAgent:
        """The agent the call runs with: ``/twiml``'s decision (this engine's memory, else the call's
        log), or one made now by the rules (recorded)."""
        routed = self._decided.pop(call.call_id, None)
        if routed is None:
            routed = await self._recorded(call.call_id)
        unrecorded = routed is None
        if routed is None:
            await self._refresh()
            routed = await self.decide(call, ask=False)
            reason = f"{routed.reason} (at stream start: /twiml decided nothing)"
            routed = msgspec.structs.replace(routed, reason=reason, at_stream_start=True)
        if routed.version and self.directory.book.version_of(routed.agent, routed.version) is None:
            await self._refresh()  # decided on an engine that saw a newer save than this one has folded
        answering = self._resolve(routed, unrecorded=unrecorded)
        self._live[call.call_id] = answering
        return answering

    async def agent_exists(self, name: str) -> bool:
        """Whether a profile called ``name`` exists now (``default`` always does)."""
        await self._refresh()
        return name == DEFAULT_PROFILE or self.directory.book.current(name) is not None

    async def agent_names(self) -> list[str]:
        """The profiles that exist now, ``default`` first."""
        await self._refresh()
        names = self.directory.book.names()
        return names if DEFAULT_PROFILE in names else [DEFAULT_PROFILE, *names]

    def call_ended(self, call_id: str) -> None:
        self._live.pop(call_id, None)

    async def _recorded(self, call_id: str) -> AgentRouted | None:
        try:
            page = await trio.to_thread.run_sync(lambda: self.directory.store.read_call_page(call_id, limit=50))
        except Exception:
            log.exception("call %s: cannot read its routing decision from the log", call_id)
            return None
        decisions = [r.event for r in page if isinstance(r.event, AgentRouted)]
        return decisions[-1] if decisions else None

    def _resolve(self, routed: AgentRouted, *, unrecorded: bool = False) -> CallAgent:
        """Never blocks: what the fold does not hold yet is the default's (the caller refreshed first)."""
        directory = self.directory
        agent = directory.agent_at(routed.agent, routed.version, refresh=False) if routed.version else None
        if agent is None:
            if routed.version:
                log.error(
                    "call %s: agent %s v%d cannot be read on this engine; the default answers",
                    routed.call_id,
                    routed.agent,
                    routed.version,
                )
            agent = directory.default_agent()
        overrides = routed.overrides
        if overrides:
            try:
                agent = apply_overrides(agent, overrides, name=routed.agent)
            except ProfileError as error:
                log.error(
                    "call %s: the overrides cannot be used (%s); the agent answers without them", routed.call_id, error
                )
                overrides = {}
        registry = directory.registry_for(routed.agent, routed.version, agent, cache=not overrides)
        return CallAgent(routed, agent, registry, unrecorded)

    # --- asking about a call ----------------------------------------------------------------------

    async def agent_of_call(self, call_id: str) -> Agent:
        """The agent a call runs (or ran) with: live here, else from its log, else the default."""
        live = self._live.get(call_id)
        if live is not None:
            return live.agent
        routed = await self._recorded(call_id)
        if routed is None:
            return self.directory.default_agent()
        if routed.version and self.directory.book.version_of(routed.agent, routed.version) is None:
            await self._refresh()
        return self._resolve(routed).agent
