"""Agent profiles: named, versioned agents, and the fold of the ``agents`` stream every engine keeps
(pure: the store side is ``engine/agent_directory.py``).

A profile is an agent (``engine/agent.py``: the agent file's keys) with a name. Why it is kept so:

- **Every save is a new version, never an edit.** ``AgentSaved`` holds the whole agent, defaults filled
  in, and each call records the name and version that answered it (``AgentRouted``, ``CallStarted``),
  so "which prompt answered this call?" is one lookup, however the profile changed since. A rollback
  is a new version with an old one's content; a deleted profile's versions stay readable, and a
  profile saved later under the same name numbers on after them (a name and version mean one
  content, forever).
- **One stream for profiles and routing rules**, so a save checks the rules and the profiles it
  names against the same state, and is appended only if the stream did not move meanwhile
  (optimistic concurrency across engines: ``EventStore.append_if_unchanged``).
- **Errors name the key**: the agent's own messages (``greeting: empty …``), with the key's path in
  :attr:`ProfileError.key` so the console marks the field.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

import msgspec

from callbridge.engine.agent import DEFAULT_PROFILE, Agent, AgentError, check_profile_name, error_key, parse_agent
from callbridge.engine.events import AgentDeleted, AgentSaved, Event, RoutingRulesSaved
from callbridge.engine.routing import NO_ROUTING, Routing, RoutingError, parse_routing

READ_ONLY_KEYS = frozenset({"name", "version", "saved_at", "saved_by", "source", "rolled_back_from"})
"""Keys of a profile as the API answers it that a save ignores (so what GET answers can be PUT back)."""


class ProfileError(ValueError):
    """A save that cannot be made: ``status`` is the HTTP answer (400 bad input, 404 unknown, 409 a
    conflict), ``key`` the key at fault (``transfer_targets[0].to``) when there is one."""

    def __init__(self, message: str, *, status: int = 400, key: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.key = key


def agent_dict(agent: Agent) -> dict[str, Any]:
    """The agent as stored and answered: every key, defaults filled in."""
    data: dict[str, Any] = msgspec.to_builtins(agent)
    return data


def parse_profile(body: Any, *, name: str) -> Agent:
    """The agent in an API body (the agent file's keys; the read-only keys of an answer are ignored);
    :class:`ProfileError` names the key that is wrong."""
    if not isinstance(body, dict):
        raise ProfileError("the profile must be a JSON object of the agent file's keys")
    data = {key: value for key, value in body.items() if key not in READ_ONLY_KEYS}
    try:
        return parse_agent(data, where=name)
    except AgentError as error:
        message = str(error).removeprefix(f"{name}: ")
        raise ProfileError(message, key=error_key(message)) from None


def apply_overrides(agent: Agent, overrides: dict[str, Any], *, name: str) -> Agent:
    """``agent`` with the keys in ``overrides`` replaced (an assistant request's, for one call)."""
    if not overrides:
        return agent
    return parse_profile({**agent_dict(agent), **overrides}, name=name)


@dataclass(frozen=True)
class ProfileVersion:
    name: str
    version: int
    agent: dict[str, Any]
    at: float
    by: str
    source: str = ""
    rolled_back_from: int | None = None

    def decoded(self) -> Agent:
        """The stored agent (``AgentError`` when this code cannot read it any more)."""
        return parse_agent(self.agent, where=f"agent {self.name!r} version {self.version}")

    def holds(self, data: dict[str, Any]) -> bool:
        """Whether this version's content is ``data`` (an ``agent_dict``): a version saved before a key
        existed lacks that key, and still holds the same agent when the key is at its default."""
        if self.agent == data:
            return True
        try:
            return agent_dict(self.decoded()) == data
        except AgentError:
            return False

    def summary(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "saved_at": self.at,
            "saved_by": self.by,
            "source": self.source,
            "rolled_back_from": self.rolled_back_from,
        }


@dataclass
class ProfileHistory:
    versions: list[ProfileVersion] = field(default_factory=list)
    deleted: tuple[int, float, str] | None = None
    """(the last version, when, by whom) when the profile is deleted now."""
    deletions: list[tuple[int, float, str]] = field(default_factory=list)


@dataclass(frozen=True)
class RoutingVersion:
    version: int
    routing: Routing
    at: float
    by: str


class AgentBook:
    """The fold of the ``agents`` stream: every profile's versions, and the routing rules."""

    def __init__(self) -> None:
        self.position = 0
        """The last store position folded."""
        self.stream_version = 0
        """How many events of the stream were folded (its last version): a save appends after it."""
        self.profiles: dict[str, ProfileHistory] = {}
        self.routing: RoutingVersion | None = None

    def apply(self, event: Event, *, position: int, version: int) -> None:
        self.position = max(self.position, position)
        self.stream_version = max(self.stream_version, version)
        if isinstance(event, AgentSaved):
            history = self.profiles.setdefault(event.name, ProfileHistory())
            history.versions.append(
                ProfileVersion(
                    event.name,
                    event.version,
                    dict(event.agent),
                    event.at,
                    event.by,
                    event.source,
                    event.rolled_back_from,
                )
            )
            history.deleted = None
        elif isinstance(event, AgentDeleted):
            history = self.profiles.setdefault(event.name, ProfileHistory())
            history.deleted = (event.version, event.at, event.by)
            history.deletions.append(history.deleted)
        elif isinstance(event, RoutingRulesSaved):
            try:
                routing = parse_routing(
                    {
                        "rules": event.rules,
                        "default_agent": event.default_agent,
                        "assistant_request": event.assistant_request,
                    }
                )
            except RoutingError:  # saved by a newer engine in a shape this one cannot read: keep the last
                return
            self.routing = RoutingVersion(event.version, routing, event.at, event.by)

    # --- reading -------------------------------------------------------------------------------

    def current(self, name: str) -> ProfileVersion | None:
        """The profile's latest version; None when there is none or it is deleted."""
        history = self.profiles.get(name)
        if history is None or history.deleted is not None or not history.versions:
            return None
        return history.versions[-1]

    def version_of(self, name: str, version: int) -> ProfileVersion | None:
        """Any version ever saved (a deleted profile's too)."""
        history = self.profiles.get(name)
        return next((v for v in history.versions if v.version == version), None) if history else None

    def names(self) -> list[str]:
        """The profiles that exist now: ``default`` first, then by name."""
        live = sorted(name for name in self.profiles if self.current(name) is not None)
        return sorted(live, key=lambda name: name != DEFAULT_PROFILE)

    def last_version(self, name: str) -> int:
        history = self.profiles.get(name)
        if history is None:
            return 0
        return max([v.version for v in history.versions] + [d[0] for d in history.deletions], default=0)

    def current_routing(self) -> Routing:
        return self.routing.routing if self.routing is not None else NO_ROUTING

    def routing_version(self) -> int:
        return self.routing.version if self.routing is not None else 0

    def rules_naming(self, name: str) -> list[str]:
        """Where the routing names the profile ``name``: ``rule #2``, ``default_agent``."""
        routing = self.current_routing()
        found = [f"rule #{number}" for number, rule in enumerate(routing.rules, 1) if rule.agent == name]
        if routing.default_agent == name and name != DEFAULT_PROFILE:
            found.append("default_agent")
        return found

    def missing_agents(self, routing: Routing) -> list[str]:
        """Agents ``routing`` names that do not exist now (``default`` always does)."""
        return sorted(name for name in routing.agents() if name != DEFAULT_PROFILE and self.current(name) is None)

    def last_from_file(self, name: str) -> ProfileVersion | None:
        """The latest version of ``name`` loaded from the agent file."""
        history = self.profiles.get(name)
        if history is None:
            return None
        return next((v for v in reversed(history.versions) if v.source.startswith("file:")), None)


def profile_answer(version: ProfileVersion) -> dict[str, Any]:
    """A profile as the API answers it: the agent file's keys plus ``name``, ``version`` and where the
    version came from."""
    return {"name": version.name, **version.summary(), **version.agent}


def check_name(name: str) -> None:
    try:
        check_profile_name(name)
    except ValueError as error:
        raise ProfileError(str(error), key="name") from None


def diff_versions(before: ProfileVersion, after: ProfileVersion) -> list[dict[str, Any]]:
    """What changed from ``before`` to ``after``, key by key: ``{key, before, after, diff}`` where
    ``diff`` is a unified diff of the two values as text (a multi-line prompt shows its changed lines)."""
    changes = []
    for key in sorted(set(before.agent) | set(after.agent)):
        old, new = before.agent.get(key), after.agent.get(key)
        if old == new:
            continue
        old_lines, new_lines = _lines(old), _lines(new)
        diff = list(
            difflib.unified_diff(
                old_lines, new_lines, f"version {before.version}", f"version {after.version}", lineterm="", n=2
            )
        )
        changes.append({"key": key, "before": old, "after": new, "diff": diff})
    return changes


def _lines(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
