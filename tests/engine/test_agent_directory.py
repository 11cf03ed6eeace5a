"""The agent directory's saves against a real store: a save that loses the race to another engine's is
checked again against what that engine saved and numbered after it (optimistic concurrency)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callbridge.engine.agent import DEFAULT_AGENT, Agent
from callbridge.engine.agent_directory import BUILT_IN, AgentDirectory
from callbridge.engine.agent_profiles import AgentBook, ProfileError, agent_dict
from callbridge.engine.default_tools import default_registry
from callbridge.engine.events import AGENTS_STREAM, AgentSaved, Event
from callbridge.engine.store import EventStore


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[tuple[AgentDirectory, AgentDirectory]]:
    """Two engines' directories over one store file (each its own connection)."""
    url = str(tmp_path / "callbridge.db")
    stores = [EventStore(url), EventStore(url)]
    directories = [
        AgentDirectory(store, configured=DEFAULT_AGENT, source=BUILT_IN, base_registry=default_registry(), environ={})
        for store in stores
    ]
    directories[0].load()
    yield directories[0], directories[1]
    for store in stores:
        store.close()


def test_a_save_that_loses_the_race_is_numbered_after_the_winner(
    engines: tuple[AgentDirectory, AgentDirectory],
) -> None:
    one, other = engines
    one.save_profile("sales", {"instructions": "First."}, by="api", create=True)
    raced: list[int] = []
    real_refresh = one._refresh

    def refresh_then_lose_the_race() -> None:
        real_refresh()
        if not raced:  # between this engine's fold and its append, the other engine saves
            raced.append(other.save_profile("sales", {"instructions": "Other's."}, by="api").version.version)

    one._refresh = refresh_then_lose_the_race  # type: ignore[method-assign]
    mine = one.save_profile("sales", {"instructions": "Mine."}, by="api")
    stored = [e for e in one.store.read_call(AGENTS_STREAM) if isinstance(e.event, AgentSaved)]

    assert raced == [2] and mine.version.version == 3 and not mine.unchanged
    assert [(r.event.name, r.event.version) for r in stored] == [
        ("default", 1),
        ("sales", 1),
        ("sales", 2),
        ("sales", 3),
    ]


def test_a_save_for_the_version_another_engine_just_replaced_is_refused(
    engines: tuple[AgentDirectory, AgentDirectory],
) -> None:
    one, other = engines
    one.save_profile("sales", {"instructions": "First."}, by="api", create=True)
    other.save_profile("sales", {"instructions": "Other's."}, by="console", expected_version=1)
    with pytest.raises(ProfileError) as refused:
        one.save_profile("sales", {"instructions": "Mine."}, by="api", expected_version=1)
    assert refused.value.status == 409 and "is at version 2 (saved by console meanwhile)" in str(refused.value)


def test_an_event_this_engine_cannot_read_does_not_wedge_the_stream(
    engines: tuple[AgentDirectory, AgentDirectory], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer engine may append an event type this one does not know: its saves still go through."""
    one, _ = engines
    one.save_profile("sales", {}, by="api", create=True)
    original = AgentBook.apply

    def unreadable(self: AgentBook, event: Event, *, position: int, version: int) -> None:
        if isinstance(event, AgentSaved) and event.name == "sales":
            return  # as if skipped by the reader: the fold's stream version lags the store's
        original(self, event, position=position, version=version)

    fresh = AgentDirectory(one.store, configured=DEFAULT_AGENT, source=BUILT_IN, base_registry=default_registry())
    monkeypatch.setattr(AgentBook, "apply", unreadable)
    saved = fresh.save_profile("support", {}, by="api", create=True)
    assert saved.version.version == 1 and fresh.book.stream_version >= 3


OLDER_KEYS = ("model", "turn_detection", "max_output_tokens", "noise_reduction", "speed", "server_tools")
"""Keys a profile saved by an engine before model options existed does not have."""


def test_a_version_saved_before_the_model_options_existed_is_the_same_agent_and_not_saved_again(
    tmp_path: Path,
) -> None:
    url = str(tmp_path / "callbridge.db")
    store = EventStore(url)
    agent = Agent(instructions="From the file.", greeting="Hello!")
    older = {key: value for key, value in agent_dict(agent).items() if key not in OLDER_KEYS}
    store.append(
        [
            AgentSaved(call_id=AGENTS_STREAM, at=1.0, name="default", version=1, agent=older, source="file:a.toml"),
            AgentSaved(call_id=AGENTS_STREAM, at=2.0, name="sales", version=1, agent=older, by="api"),
        ]
    )
    directory = AgentDirectory(
        store, configured=agent, source="file:a.toml", base_registry=default_registry(), environ={}
    )
    directory.load()  # the same file, read by this engine: not a new version
    same = directory.save_profile("sales", agent_dict(agent), by="api")
    stored = [(r.event.name, r.event.version) for r in store.read_call(AGENTS_STREAM)]
    store.close()

    assert stored == [("default", 1), ("sales", 1)]
    assert same.unchanged and same.version.version == 1
