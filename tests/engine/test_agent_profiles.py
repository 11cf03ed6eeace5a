"""Agent profiles (``engine/agent_profiles.py``): the fold of the ``agents`` stream, the keys an error
names, and what a diff between two versions says."""

from __future__ import annotations

import pytest

from callbridge.engine.agent_profiles import (
    AgentBook,
    ProfileError,
    ProfileVersion,
    agent_dict,
    diff_versions,
    parse_profile,
)
from callbridge.engine.events import AGENTS_STREAM, AgentDeleted, AgentSaved, Event, RoutingRulesSaved


def fold(*events: Event) -> AgentBook:
    book = AgentBook()
    for position, event in enumerate(events, 1):
        book.apply(event, position=position, version=position)
    return book


def saved(name: str, version: int, **keys: object) -> AgentSaved:
    agent = agent_dict(parse_profile(keys, name=name))
    return AgentSaved(call_id=AGENTS_STREAM, at=float(version), name=name, version=version, agent=agent)


def test_the_fold_keeps_every_version_and_a_deleted_profile_numbers_on() -> None:
    book = fold(
        saved("default", 1),
        saved("sales", 1, instructions="Sell."),
        saved("sales", 2, instructions="Sell politely."),
        AgentDeleted(call_id=AGENTS_STREAM, at=4.0, name="sales", version=2),
    )
    assert book.names() == ["default"] and book.current("sales") is None
    old = book.version_of("sales", 1)
    assert old is not None and old.agent["instructions"] == "Sell."  # still readable after the delete
    assert book.last_version("sales") == 2 and book.stream_version == 4 and book.position == 4
    book.apply(saved("sales", 3, instructions="Back."), position=9, version=5)
    current = book.current("sales")
    assert current is not None and current.version == 3 and book.names() == ["default", "sales"]


def test_routing_names_its_agents_for_the_delete_check() -> None:
    rules = [{"to": "+15551230001", "agent": "sales"}, {"from": "+44*", "agent": "uk"}]
    book = fold(RoutingRulesSaved(call_id=AGENTS_STREAM, at=1.0, version=1, rules=rules, default_agent="sales"))
    assert book.rules_naming("sales") == ["rule #1", "default_agent"]
    assert book.rules_naming("uk") == ["rule #2"] and book.rules_naming("other") == []
    assert book.routing_version() == 1 and book.current_routing().default_agent == "sales"


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ({"greeting": "  "}, "greeting", "greeting: empty (leave it out for the caller to speak first)"),
        ({"voice": 3}, "voice", "voice: Expected `str | null`, got `int`"),
        ({"bogus": 1}, "bogus", "unknown key 'bogus'"),
        (
            {"transfer_targets": [{"label": "sales", "to": "555"}]},
            "transfer_targets[0].to",
            "transfer_targets[0]: to: '555' is neither an E.164 number (+15551234567) nor a sip: URI",
        ),
        ({"max_duration_s": 5}, "max_duration_s", "max_duration_s: must be more than 10 and at most 14400"),
        ({"tools": [{"name": "a b"}]}, "tools[0].name", None),
    ],
)
def test_a_bad_profile_names_the_key_with_the_agents_own_message(
    body: dict[str, object], key: str, message: str | None
) -> None:
    with pytest.raises(ProfileError) as refused:
        parse_profile(body, name="sales")
    assert refused.value.key == key and refused.value.status == 400
    if message is not None:
        assert str(refused.value) == message


def test_what_an_answer_adds_can_be_saved_back() -> None:
    agent = parse_profile({"name": "sales", "version": 3, "saved_at": "…", "greeting": "Hi"}, name="sales")
    assert agent.greeting == "Hi"


def test_a_diff_shows_the_changed_keys_and_the_changed_lines_of_a_prompt() -> None:
    before = ProfileVersion("sales", 1, agent_dict(parse_profile({"instructions": "One.\nTwo."}, name="s")), 1.0, "api")
    after = ProfileVersion(
        "sales", 2, agent_dict(parse_profile({"instructions": "One.\nThree.", "voice": "cedar"}, name="s")), 2.0, "api"
    )
    changes = {change["key"]: change for change in diff_versions(before, after)}
    assert set(changes) == {"instructions", "voice"}
    assert changes["voice"]["before"] is None and changes["voice"]["after"] == "cedar"
    assert "-Two." in changes["instructions"]["diff"] and "+Three." in changes["instructions"]["diff"]
    assert " One." in changes["instructions"]["diff"]  # context
