"""The agent profiles and routing rules of the log, kept current on this engine, and every save.

Every engine folds the ``agents`` stream (``engine/agent_profiles.py``) and catches up before each
decision that depends on it (a ``/twiml`` routing, an API read), with one indexed read of what it
has not seen yet: a profile saved on one engine answers the next call on any engine.

Saves are appended straight to the store, only if the stream did not move since it was folded
(``EventStore.append_if_unchanged``; on a conflict the save is checked again against what the other
engine saved, and retried), so two engines can never both save "version 3", and the API answers only
once the version is in the log.

At start the agent file (``--agent``) becomes the ``default`` profile's first version when the log
has none; a changed agent file is loaded as a new version (compared with the last version loaded
from a file, so the console's own saves survive restarts until the file changes); without a file,
the agent the server was given (the built-in one) never replaces a saved one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from eventsourcing.persistence import IntegrityError

from callbridge.engine.agent import DEFAULT_PROFILE, Agent, AgentError
from callbridge.engine.agent_profiles import (
    AgentBook,
    ProfileError,
    ProfileVersion,
    agent_dict,
    check_name,
    parse_profile,
)
from callbridge.engine.events import AGENTS_STREAM, AgentDeleted, AgentSaved, Event, RoutingRulesSaved
from callbridge.engine.http_tools import HttpToolError, agent_registry, check_server_tools
from callbridge.engine.routing import Routing, RoutingError, parse_routing
from callbridge.engine.store import EventStore
from callbridge.engine.tools import ToolRegistry

log = logging.getLogger(__name__)

SAVE_ATTEMPTS = 5
PAGE = 500
BUILT_IN = "built-in"
FILE_SOURCE = "file:"
"""A ``source`` starting so is an agent file's: a changed file is loaded as a new version. Any other
source (the built-in agent, one handed to the server in code) only seeds a log without ``default``."""


@dataclass(frozen=True)
class Saved:
    """What a save left: the profile's version now, and whether this save made it."""

    version: ProfileVersion
    created: bool = False
    unchanged: bool = False


class AgentDirectory:
    """This engine's view of the profiles and the routing, and the one door for saving them."""

    def __init__(
        self,
        store: EventStore,
        *,
        configured: Agent,
        source: str,
        base_registry: ToolRegistry,
        clock: Callable[[], float] = time.time,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store = store
        self.book = AgentBook()
        self.configured = configured
        """The agent file's agent (or the built-in one): ``default`` until the log says otherwise."""
        self.source = source
        """``file:<path>`` for an agent file, ``built-in`` without one."""
        self.base_registry = base_registry
        self.clock = clock
        self.environ = os.environ if environ is None else environ
        self._lock = threading.Lock()
        self._agents: dict[tuple[str, int], Agent] = {}
        self._unreadable: set[tuple[str, int]] = set()
        self._registries: dict[tuple[str, int], ToolRegistry] = {}

    # --- following the log (blocking: call in a worker thread) --------------------------------

    def refresh(self) -> None:
        """Fold what the stream holds beyond what this engine has seen."""
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        while True:
            page = self.store.read_call_page(AGENTS_STREAM, after=self.book.position, limit=PAGE)
            for recorded in page:
                self.book.apply(recorded.event, position=recorded.position, version=recorded.version)
            if len(page) < PAGE:
                return

    def _stored_version(self) -> int:
        """The stream's last version as stored (events this code cannot read count too)."""
        return self.store.last_version(AGENTS_STREAM)

    def _append(self, make: Callable[[AgentBook], Event | None]) -> Event | None:
        """Fold, let ``make`` decide against that (raising :class:`ProfileError`, or None: nothing to
        save), and append its event only if nobody appended meanwhile; retried on a conflict."""
        for _ in range(SAVE_ATTEMPTS):
            with self._lock:
                self._refresh()
                event = make(self.book)
                if event is None:
                    return None
                try:
                    self.store.append_if_unchanged(AGENTS_STREAM, self.book.stream_version, [event])
                except IntegrityError:
                    self._refresh()
                    self.book.stream_version = max(self.book.stream_version, self._stored_version())
                    continue
                self._refresh()
                return event
        raise ProfileError("another engine kept saving agents at the same moment: try again", status=409)

    def _next_version(self, book: AgentBook, name: str, agent: dict[str, Any], *, by: str, **more: Any) -> AgentSaved:
        """``name``'s next version (numbered after every version it ever had, deleted ones too)."""
        version = book.last_version(name) + 1
        return AgentSaved(
            call_id=AGENTS_STREAM, at=self.clock(), name=name, version=version, agent=agent, by=by, **more
        )

    # --- start ----------------------------------------------------------------------------------

    def load(self) -> None:
        """At start: fold the stream, and make the agent file ``default``'s version if it is new."""
        data = agent_dict(self.configured)

        def make(book: AgentBook) -> Event | None:
            current = book.current(DEFAULT_PROFILE)
            if current is not None:
                if not self.source.startswith(FILE_SOURCE) or current.holds(data):
                    return None
                loaded = book.last_from_file(DEFAULT_PROFILE)
                if loaded is not None and loaded.holds(data):
                    return None  # the file did not change: the console's later saves stand
            return self._next_version(book, DEFAULT_PROFILE, data, by="serve", source=self.source)

        saved = self._append(make)
        if isinstance(saved, AgentSaved):
            log.info("agent 'default' version %d loaded from %s", saved.version, self.source)
        current = self.book.current(DEFAULT_PROFILE)
        if current is not None and current.holds(data):  # the very agent this engine was given
            self._agents[(DEFAULT_PROFILE, current.version)] = self.configured

    # --- saves (blocking) -------------------------------------------------------------------------

    def save_profile(
        self, name: str, body: Any, *, by: str, create: bool = False, expected_version: int | None = None
    ) -> Saved:
        """Save ``body`` as the next version of ``name`` (``create``: only if there is no such profile).
        ``expected_version``: the version the client edited (409 when another save came first). A body
        equal to the current version saves nothing (``unchanged``)."""
        check_name(name)
        agent = parse_profile(body, name=name)
        self.check_tools(agent, name)
        data = agent_dict(agent)
        existed: list[bool] = []

        def make(book: AgentBook) -> Event | None:
            current = book.current(name)
            existed.append(current is not None)
            if create and current is not None:
                raise ProfileError(
                    f"agent {name!r} exists (version {current.version}): PUT /api/agents/{name} saves a new version",
                    status=409,
                    key="name",
                )
            _expect(name, current, expected_version)
            if current is not None and current.holds(data):
                return None
            return self._next_version(book, name, data, by=by)

        saved = self._append(make)
        current = self._version_saved(name, saved)
        return Saved(current, created=saved is not None and not existed[-1], unchanged=saved is None)

    def rollback(self, name: str, version: int, *, by: str) -> Saved:
        """A new version of ``name`` with the content of its ``version``."""

        def make(book: AgentBook) -> Event | None:
            current = _existing(book, name)
            old = book.version_of(name, version)
            if old is None:
                raise ProfileError(f"agent {name!r} has no version {version}", status=404, key="version")
            try:
                self.check_tools(old.decoded(), name)
            except AgentError as error:
                raise ProfileError(f"version {version} cannot be used by this engine: {error}", status=409) from None
            if current.holds(agent_dict(old.decoded())):
                return None
            return self._next_version(book, name, dict(old.agent), by=by, rolled_back_from=version)

        saved = self._append(make)
        return Saved(self._version_saved(name, saved), unchanged=saved is None)

    def _version_saved(self, name: str, saved: Event | None) -> ProfileVersion:
        """The version this save made (not the current one: another engine may have saved after it),
        or the current one when nothing was saved."""
        found = self.book.version_of(name, saved.version) if isinstance(saved, AgentSaved) else None
        found = found or self.book.current(name)
        assert found is not None
        return found

    def delete_profile(self, name: str, *, by: str) -> int:
        """Delete ``name``; returns its last version. Refused for ``default`` and for a profile the
        routing names (change the routing first)."""

        def make(book: AgentBook) -> Event | None:
            current = _existing(book, name)
            if name == DEFAULT_PROFILE:
                raise ProfileError(
                    "the 'default' agent answers every call no rule sends elsewhere: it cannot be deleted "
                    "(save a new version of it instead)",
                    status=409,
                )
            naming = book.rules_naming(name)
            if naming:
                raise ProfileError(
                    f"the routing sends calls to agent {name!r} ({', '.join(naming)}): change the routing first",
                    status=409,
                )
            return AgentDeleted(call_id=AGENTS_STREAM, at=self.clock(), name=name, version=current.version, by=by)

        saved = self._append(make)
        assert isinstance(saved, AgentDeleted)
        return saved.version

    def save_routing(self, body: Any, *, by: str, expected_version: int | None = None) -> bool:
        """Save the routing document; False when it equals the current one (nothing saved)."""
        if not isinstance(body, dict):
            raise ProfileError("the routing must be a JSON object with rules, default_agent, assistant_request")
        try:
            routing = parse_routing({k: v for k, v in body.items() if k not in ("version", "saved_at", "saved_by")})
        except RoutingError as error:
            raise ProfileError(str(error), key=error.key) from None
        self.check_secret(routing)
        data = routing.to_dict()

        def make(book: AgentBook) -> Event | None:
            if expected_version is not None and expected_version != book.routing_version():
                raise ProfileError(
                    f"the routing is at version {book.routing_version()} (another save came first), you edited "
                    f"version {expected_version}: reload it and make your change again",
                    status=409,
                    key="version",
                )
            _check_agents_exist(book, routing)
            if book.routing is not None and book.routing.routing.to_dict() == data:
                return None
            return RoutingRulesSaved(
                call_id=AGENTS_STREAM,
                at=self.clock(),
                version=book.routing_version() + 1,
                rules=data["rules"],
                default_agent=data["default_agent"],
                assistant_request=data["assistant_request"],
                by=by,
            )

        return self._append(make) is not None

    # --- checks -----------------------------------------------------------------------------------

    def check_tools(self, agent: Agent, name: str) -> None:
        """Every HTTP tool's secret is in this engine's environment, and every ``server_tools`` name is
        one of the server's tools (else :class:`ProfileError`)."""
        try:
            check_server_tools(self.base_registry, agent)
        except HttpToolError as error:
            message = str(error)
            raise ProfileError(message, key=message.partition(":")[0]) from None
        for index, tool in enumerate(agent.tools):
            if tool.secret_unset(self.environ):
                raise ProfileError(
                    f"tools[{index}].secret_env: the environment variable {tool.secret_env} (tool {tool.name!r}'s "
                    "secret) is not set on this engine",
                    key=f"tools[{index}].secret_env",
                )

    def check_secret(self, routing: Routing) -> None:
        request = routing.assistant_request
        if request is not None and not self.environ.get(request.secret_env):
            raise ProfileError(
                f"assistant_request.secret_env: the environment variable {request.secret_env} is not set on this "
                "engine (set it to a whsec_… secret on every engine, then save again)",
                key="assistant_request.secret_env",
            )

    # --- what answers -----------------------------------------------------------------------------

    def agent_at(self, name: str, version: int, *, refresh: bool = True) -> Agent | None:
        """The agent of ``name`` at ``version`` (None when the log has no such version, or this code
        cannot read it). With ``refresh``, blocking when the version is not folded yet."""
        key = (name, version)
        agent = self._agents.get(key)
        if agent is not None:
            return agent
        found = self.book.version_of(name, version)
        if found is None and refresh:
            self.refresh()
            found = self.book.version_of(name, version)
        if found is None or key in self._unreadable:
            return None
        try:
            agent = self._agents[key] = found.decoded()
        except AgentError as error:  # saved by a newer engine, or under rules this code no longer keeps
            self._unreadable.add(key)
            log.error("%s; the default agent answers in its place", error)
            return None
        return agent

    def default_agent(self) -> Agent:
        """``default``'s current version (the configured agent before the log has one)."""
        current = self.book.current(DEFAULT_PROFILE)
        if current is None:
            return self.configured
        return self.agent_at(DEFAULT_PROFILE, current.version, refresh=False) or self.configured

    def registry_for(self, name: str, version: int, agent: Agent, *, cache: bool = True) -> ToolRegistry:
        """The server's tools (the ones the agent names in ``server_tools``, or all) plus the agent's own;
        an HTTP tool whose secret is missing on this engine, or a server tool it does not have, is left
        out of the call (logged), never fatal."""
        key = (name, version)
        if cache and key in self._registries:
            return self._registries[key]
        if agent.server_tools is not None:  # saved on an engine with other tools: offer the ones here
            known = [tool for tool in agent.server_tools if self.base_registry.get(tool) is not None]
            if len(known) != len(agent.server_tools):
                log.error(
                    "agent %s v%d: server tools %s are not on this engine",
                    name,
                    version,
                    sorted(set(agent.server_tools) - set(known)),
                )
                agent = msgspec.structs.replace(agent, server_tools=known)
        usable = [t for t in agent.tools if not t.secret_unset(self.environ)]
        if len(usable) != len(agent.tools):
            left_out = sorted({t.name for t in agent.tools} - {t.name for t in usable})
            log.error(
                "agent %s v%d: tools %s left out: their secret is not set on this engine", name, version, left_out
            )
            agent = msgspec.structs.replace(agent, tools=usable)
        try:
            registry = agent_registry(self.base_registry, agent, name=name, environ=dict(self.environ))
        except HttpToolError as error:  # the environment changed under us
            log.error("agent %s v%d: %s; its tools are left out", name, version, error)
            registry = self.base_registry
        if cache:
            self._registries[key] = registry
        return registry


def _existing(book: AgentBook, name: str) -> ProfileVersion:
    current = book.current(name)
    if current is None:
        raise ProfileError(f"there is no agent {name!r} (GET /api/agents lists them)", status=404)
    return current


def _expect(name: str, current: ProfileVersion | None, expected: int | None) -> None:
    if expected is None:
        return
    now = current.version if current is not None else 0
    if now != expected:
        raise ProfileError(
            f"agent {name!r} is at version {now} (saved by {current.by if current else '?'} meanwhile), you edited "
            f"version {expected}: reload it and make your change again",
            status=409,
            key="version",
        )


def _check_agents_exist(book: AgentBook, routing: Routing) -> None:
    known = ", ".join(book.names()) or "none"
    if routing.default_agent != DEFAULT_PROFILE and book.current(routing.default_agent) is None:
        raise ProfileError(
            f"default_agent: {routing.default_agent!r} is not an agent (the agents: {known})", key="default_agent"
        )
    for index, rule in enumerate(routing.rules):
        if rule.agent != DEFAULT_PROFILE and book.current(rule.agent) is None:
            raise ProfileError(
                f"rules[{index}].agent: {rule.agent!r} is not an agent (the agents: {known})",
                key=f"rules[{index}].agent",
            )
