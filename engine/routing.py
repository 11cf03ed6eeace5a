"""Routing: which agent profile answers a call, decided from the call's numbers, its direction and
the time of day (pure; the rules are in the log as ``RoutingRulesSaved``).

The routing document (``GET/PUT /api/routing``)::

    {"default_agent": "default",
     "rules": [{"to": "+15551230001", "agent": "sales"},
               {"from": "+44*", "agent": "uk"},
               {"days": ["sat", "sun"], "agent": "weekend"},
               {"hours": "18:00-08:00", "timezone": "America/New_York", "agent": "night"}],
     "assistant_request": {"url": "https://ops.example/route", "secret_env": "ROUTE_SECRET"}}

Why it is built so:

- **First match wins, then the default.** A rule holds conditions that must all hold (``to``: the
  number called; ``from``: the caller's number; ``direction``: ``inbound`` or ``outbound``; ``days`` and
  ``hours`` in the rule's IANA ``timezone``), so an operator reads the list top to bottom as the engine
  does. A rule without any condition is refused: that is what ``default_agent`` is for.
- **Number patterns are globs**, not regular expressions: ``*`` any run of characters, ``?`` one
  (``+1555*``); everything else is literal, so ``+`` needs no escaping.
- **Time of day is the local time where the rule says**: ``hours`` ``09:00-17:00`` holds from 09:00 up
  to (not including) 17:00; ``22:00-06:00`` wraps midnight. ``days`` and ``hours`` are both read from the
  same local time (a call at 02:00 on Saturday is a Saturday call).
- **The reason is recorded** (``AgentRouted.reason``: ``rule #2 'to=+1555…'``), naming the rule by its
  number and its conditions, never the caller's own number.
- An ``assistant_request`` endpoint, when set, is asked first at ``/twiml``
  (``engine/assistant_request.py``); the rules decide when it fails or is too slow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time
from functools import cache
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

from callbridge.engine.agent import check_profile_name, error_key, explain

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
PATTERN = re.compile(r"^[A-Za-z0-9+*?:@._-]{1,64}$")
HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")
MAX_RULES = 200
ASSISTANT_REQUEST_TIMEOUT_S = 1.5
"""The longest the assistant request may take (Twilio is waiting for ``/twiml``'s answer)."""
LOOPBACK_HOSTS = ("localhost", "127.", "[::1]")


class RoutingError(ValueError):
    """A routing document that cannot be used; the message names the key (``rules[2].hours``)."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _glob(pattern: str) -> re.Pattern[str]:
    parts = ("." if ch == "?" else ".*" if ch == "*" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts))


def _clock(text: str) -> time | None:
    """``HH:MM`` as a time of day; ``24:00`` (the end of the day) as None."""
    hours, minutes = int(text[:2]), int(text[3:])
    return None if hours == 24 else time(hours, minutes)


class RoutingRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    agent: str
    to: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    direction: Literal["inbound", "outbound"] | None = None
    days: list[Day] | None = None
    hours: str | None = None
    timezone: str = "UTC"
    note: str = ""
    """The operator's own words about the rule (shown, never matched)."""

    def __post_init__(self) -> None:
        check_profile_name(self.agent, key="agent")
        for key, value in (("to", self.to), ("from", self.from_)):
            if value is not None and not PATTERN.match(value):
                raise ValueError(
                    f"{key}: {value[:80]!r} is not a number or pattern: 1-64 of digits, '+', letters, "
                    "':@._-', and the wildcards '*' (any run) and '?' (one character)"
                )
        if self.days is not None and not self.days:
            raise ValueError("days: empty (leave it out for every day)")
        if self.hours is not None:
            if not HOURS.match(self.hours):
                raise ValueError(f"hours: {self.hours[:40]!r} is not HH:MM-HH:MM (24-hour clock, e.g. 09:00-17:00)")
            if self.hours[:5] == self.hours[6:] or self.hours[:5] == "24:00":
                raise ValueError(f"hours: {self.hours!r} is an empty window (start and end must differ)")
        try:
            _zone(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: {self.timezone[:60]!r} is not a time zone name this engine knows (IANA, e.g. "
                "Europe/Paris or America/New_York)"
            ) from None
        if len(self.note) > 200:
            raise ValueError("note: at most 200 characters")
        if not self.conditions():
            raise ValueError(
                "a rule needs at least one of to, from, direction, days, hours (the default_agent answers the rest)"
            )

    def conditions(self) -> list[str]:
        """The rule's conditions as the reason quotes them: ``to=+1555*``, ``hours=09:00-17:00 Europe/Paris``."""
        found = [f"{key}={value}" for key, value in (("to", self.to), ("from", self.from_)) if value is not None]
        if self.direction is not None:
            found.append(f"direction={self.direction}")
        if self.days is not None:
            found.append("days=" + ",".join(self.days))
        if self.hours is not None:
            found.append(f"hours={self.hours}")
        if (self.days is not None or self.hours is not None) and self.timezone != "UTC":
            found.append(self.timezone)
        return found

    def matches(self, call: CallFacts, now: float) -> bool:
        if self.to is not None and not _glob(self.to).fullmatch(call.to_number):
            return False
        if self.from_ is not None and not _glob(self.from_).fullmatch(call.from_number):
            return False
        if self.direction is not None and not call.direction.startswith(self.direction):
            return False
        if self.days is None and self.hours is None:
            return True
        local = datetime.fromtimestamp(now, UTC).astimezone(_zone(self.timezone))
        if self.days is not None and DAYS[local.weekday()] not in self.days:
            return False
        return self.hours is None or _within(self.hours, local.time())


def _within(hours: str, moment: time) -> bool:
    start, end = _clock(hours[:5]), _clock(hours[6:])
    assert start is not None  # 24:00 is refused as a start
    if end is None:
        return moment >= start
    if start < end:
        return start <= moment < end
    return moment >= start or moment < end  # wraps midnight


class AssistantRequestSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The operator's endpoint asked at ``/twiml`` which agent answers (``engine/assistant_request.py``)."""

    url: str
    secret_env: str
    """The environment variable holding its Standard Webhooks secret (``whsec_…``), never the secret."""
    timeout_s: float = ASSISTANT_REQUEST_TIMEOUT_S

    def __post_init__(self) -> None:
        if not re.match(r"^https://[^\s/]+", self.url) and not _loopback_http(self.url):
            raise ValueError(f"url: {self.url[:80]!r} must be https:// (plain http only to this machine)")
        if not re.match(r"^[A-Z_][A-Z0-9_]*$", self.secret_env):
            raise ValueError("secret_env: the name of an environment variable (A-Z, 0-9, _) holding the secret")
        if not 0.1 <= self.timeout_s <= ASSISTANT_REQUEST_TIMEOUT_S:
            raise ValueError(f"timeout_s: between 0.1 and {ASSISTANT_REQUEST_TIMEOUT_S:g} seconds (Twilio is waiting)")


def _loopback_http(url: str) -> bool:
    return url.startswith("http://") and url[len("http://") :].startswith(LOOPBACK_HOSTS)


class Routing(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    default_agent: str = "default"
    rules: list[RoutingRule] = []
    assistant_request: AssistantRequestSettings | None = None

    def __post_init__(self) -> None:
        check_profile_name(self.default_agent, key="default_agent")
        if len(self.rules) > MAX_RULES:
            raise ValueError(f"rules: at most {MAX_RULES}")

    def agents(self) -> set[str]:
        """Every agent the document names."""
        return {self.default_agent, *(rule.agent for rule in self.rules)}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = msgspec.to_builtins(self)  # a rule leaves out the keys it does not set
        return data


NO_ROUTING = Routing()


@dataclass(frozen=True)
class CallFacts:
    """What routing may look at: the call's numbers and direction (``/twiml``'s or the stream's
    parameters)."""

    call_id: str
    from_number: str = ""
    to_number: str = ""
    direction: str = "inbound"

    @classmethod
    def of(cls, call_id: str, params: Mapping[str, str]) -> CallFacts:
        """From Twilio's parameters (``/twiml``'s form, or the stream's ``customParameters``)."""
        return cls(call_id, params.get("From", ""), params.get("To", ""), params.get("Direction") or "inbound")


@dataclass(frozen=True)
class RuleChoice:
    agent: str
    rule: int | None
    """1-based number of the matching rule (None: the default)."""
    reason: str


def choose(routing: Routing, call: CallFacts, now: float) -> RuleChoice:
    """The first rule that matches ``call`` at ``now`` (Unix seconds), else the default agent."""
    for number, rule in enumerate(routing.rules, 1):
        if rule.matches(call, now):
            return RuleChoice(rule.agent, number, f"rule #{number} '{' '.join(rule.conditions())}'")
    return RuleChoice(routing.default_agent, None, "default")


def parse_routing(data: Any) -> Routing:
    """The routing document ``data`` checked; :class:`RoutingError` names the key that is wrong."""
    if not isinstance(data, dict):
        raise RoutingError("the routing must be a JSON object with rules, default_agent, assistant_request")
    try:
        return msgspec.convert(data, Routing)
    except msgspec.ValidationError as error:
        message = explain(error)
        raise RoutingError(message, key=error_key(message)) from None
