"""Routing rules (``engine/routing.py``): first match wins, number globs, direction, time of day in the
rule's time zone, and errors that name the key."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from callbridge.engine.routing import CallFacts, RoutingError, choose, parse_routing

SALES, SUPPORT = "+15551230001", "+15551230002"


def at(text: str, zone: str = "UTC") -> float:
    """Unix seconds of a local wall-clock time ``YYYY-MM-DD HH:MM`` in ``zone``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone)).timestamp()


def call(to: str = SALES, from_: str = "+15550001111", direction: str = "inbound") -> CallFacts:
    return CallFacts("CA1", from_number=from_, to_number=to, direction=direction)


NOON = at("2026-03-04 12:00")  # a Wednesday


def test_the_first_matching_rule_wins_and_the_default_answers_the_rest() -> None:
    routing = parse_routing(
        {
            "rules": [
                {"to": SALES, "agent": "sales"},
                {"to": "+1555123000?", "agent": "support"},
                {"from": "+44*", "agent": "uk"},
            ],
            "default_agent": "reception",
        }
    )
    first = choose(routing, call(SALES), NOON)
    assert (first.agent, first.rule, first.reason) == ("sales", 1, f"rule #1 'to={SALES}'")
    assert choose(routing, call(SUPPORT), NOON).agent == "support"  # '?' is one character
    assert choose(routing, call("+15551230010"), NOON).agent == "reception"  # not two
    assert choose(routing, call("+15559999999", from_="+447700900123"), NOON).reason == "rule #3 'from=+44*'"
    fallback = choose(routing, call("+15559999999"), NOON)
    assert (fallback.agent, fallback.rule, fallback.reason) == ("reception", None, "default")


def test_direction_outbound_matches_every_outbound_kind() -> None:
    routing = parse_routing({"rules": [{"direction": "outbound", "agent": "collections"}]})
    assert choose(routing, call(direction="outbound-api"), NOON).agent == "collections"
    assert choose(routing, call(direction="inbound"), NOON).agent == "default"


def test_hours_and_days_are_read_in_the_rules_time_zone() -> None:
    routing = parse_routing(
        {
            "rules": [
                {"days": ["sat", "sun"], "agent": "weekend"},
                {"hours": "09:00-17:00", "timezone": "America/New_York", "agent": "office"},
                {"hours": "23:30-06:00", "timezone": "Europe/Paris", "agent": "night"},
            ]
        }
    )
    ny = "America/New_York"
    assert choose(routing, call(), at("2026-03-04 09:00", ny)).agent == "office"  # from 09:00
    assert choose(routing, call(), at("2026-03-04 16:59", ny)).agent == "office"
    assert (
        choose(routing, call(), at("2026-03-04 17:00", ny)).agent == "default"
    )  # 17:00 is out (and 23:00 in Paris, not night yet)
    # 12:00 UTC is 07:00 in New York: not office hours there, though it is in UTC
    assert choose(routing, call(), at("2026-03-04 12:00")).agent == "default"
    assert choose(routing, call(), at("2026-03-04 23:45", "Europe/Paris")).agent == "night"  # wraps midnight
    assert choose(routing, call(), at("2026-03-05 05:59", "Europe/Paris")).agent == "night"
    assert choose(routing, call(), at("2026-03-07 10:00", ny)).agent == "weekend"  # a Saturday
    office = choose(routing, call(), at("2026-03-04 10:00", ny))
    assert office.reason == "rule #2 'hours=09:00-17:00 America/New_York'"


def test_hours_may_end_at_midnight() -> None:
    routing = parse_routing({"rules": [{"hours": "18:00-24:00", "agent": "evening"}]})
    assert choose(routing, call(), at("2026-03-04 23:59")).agent == "evening"
    assert choose(routing, call(), at("2026-03-04 00:00")).agent == "default"


@pytest.mark.parametrize(
    ("document", "key", "words"),
    [
        ({"rules": [{"agent": "x", "hours": "9-17"}]}, "rules[0].hours", "HH:MM-HH:MM"),
        ({"rules": [{"agent": "x", "hours": "09:00-09:00"}]}, "rules[0].hours", "empty window"),
        ({"rules": [{"agent": "x", "days": ["mon"], "timezone": "Mars/Olympus"}]}, "rules[0].timezone", "IANA"),
        ({"rules": [{"agent": "x", "days": ["funday"]}]}, "rules[0].days[0]", "Invalid enum value"),
        ({"rules": [{"agent": "x", "to": "+1 555"}]}, "rules[0].to", "not a number or pattern"),
        ({"rules": [{"agent": "x"}]}, "rules[0]", "at least one of"),
        ({"rules": [{"agent": "Sales!", "to": "+1555"}]}, "rules[0].agent", "not an agent name"),
        ({"rules": [{"agent": "x", "to": "+1555", "colour": "red"}]}, "rules[0].colour", "unknown key"),
        ({"default_agent": ""}, "default_agent", "not an agent name"),
        (
            {"assistant_request": {"url": "http://ops.example/route", "secret_env": "S"}},
            "assistant_request.url",
            "https",
        ),
        (
            {"assistant_request": {"url": "https://ops.example/r", "secret_env": "S", "timeout_s": 3}},
            "assistant_request.timeout_s",
            "1.5",
        ),
        (
            {"assistant_request": {"url": "https://ops.example/r", "secret_env": "s3cr3t"}},
            "assistant_request.secret_env",
            "environment variable",
        ),
    ],
)
def test_a_bad_document_is_refused_naming_the_key(document: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(RoutingError) as refused:
        parse_routing(document)
    assert refused.value.key == key and words in str(refused.value)  # the agent file's words: rules[0]: hours: …


def test_plain_http_is_allowed_to_this_machine_only() -> None:
    local = parse_routing({"assistant_request": {"url": "http://127.0.0.1:9000/route", "secret_env": "ROUTE_SECRET"}})
    assert local.assistant_request is not None and local.assistant_request.timeout_s == 1.5
