"""Every event the engine records survives the store, and old versions are brought up to date.

The log outlives the code: an event stored today must read back the same tomorrow, and an event
stored by an older engine (``Name@1`` when the class is now at 2) goes through its upcaster before it
is decoded. Each registered event class is checked, not a sample; the upcaster is checked on the
v1 fixture store, which was written before it existed.
"""

from __future__ import annotations

import sqlite3
import typing
from pathlib import Path
from typing import Any

import msgspec
import pytest

from callbridge.engine import events
from callbridge.engine.events import UPCASTERS, Event, ModelEventReceived, decode_event, encode_event

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "v1" / "callbridge.db"


def sample(info: msgspec.inspect.Type) -> Any:
    """A value of a msgspec type: the simplest one that is not empty."""
    if isinstance(info, msgspec.inspect.UnionType):
        return sample(next(t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)))
    simple: dict[type, Any] = {
        msgspec.inspect.StrType: "x",
        msgspec.inspect.IntType: 7,
        msgspec.inspect.FloatType: 1.5,
        msgspec.inspect.BoolType: True,
        msgspec.inspect.BytesType: b"\x00\xff",
        msgspec.inspect.AnyType: {"k": "v"},
    }
    for kind, value in simple.items():
        if isinstance(info, kind):
            return value
    if isinstance(info, msgspec.inspect.DictType):
        return {"key": sample(info.value_type)}
    if isinstance(info, msgspec.inspect.ListType):
        return [sample(info.item_type)]
    if isinstance(info, msgspec.inspect.LiteralType):
        return info.values[0]
    raise AssertionError(f"no sample for {info}")


def build(cls: type[Event]) -> Event:
    struct = msgspec.inspect.type_info(cls)
    assert isinstance(struct, msgspec.inspect.StructType)
    return cls(**{field.name: sample(field.type) for field in struct.fields})


@pytest.mark.parametrize("name", sorted(Event.registry))
def test_every_event_type_round_trips_through_its_stored_form(name: str) -> None:
    event = build(Event.registry[name])
    topic, state = encode_event(event)
    assert topic == f"{name}@{type(event).schema_version}"
    assert decode_event(topic, state) == event


def test_every_event_class_is_registered_once_under_its_own_name() -> None:
    classes = [
        obj for obj in vars(events).values() if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event
    ]
    assert {cls.__name__ for cls in classes} == set(Event.registry)
    assert all(typing.get_type_hints(cls) for cls in classes)


def test_an_older_version_goes_through_its_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    def spy(payload: dict[str, Any]) -> dict[str, Any]:
        seen.append(payload)
        return {**payload, "type": payload["type"] + "!"}  # proves the upcaster's output is what is decoded

    monkeypatch.setitem(UPCASTERS, ("ModelEventReceived", 1), spy)
    state = msgspec.json.encode({"call_id": "CA1", "at": 1.0, "type": "session.created", "raw": "{}"})
    decoded = decode_event("ModelEventReceived@1", state)
    # then through version 2's own upcaster (which says which facts a version 2 log has)
    assert seen and decoded == ModelEventReceived(call_id="CA1", at=1.0, type="session.created!", raw="{}", facts=1)
    assert decode_event("ModelEventReceived@3", state) == ModelEventReceived(
        call_id="CA1", at=1.0, type="session.created", raw="{}"
    )  # the current version: as is


def test_the_v1_fixture_store_is_read_through_the_upcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    original = UPCASTERS[("ModelEventReceived", 1)]

    def counting(payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return original(payload)

    monkeypatch.setitem(UPCASTERS, ("ModelEventReceived", 1), counting)
    with sqlite3.connect(f"file:{FIXTURE}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT topic, state FROM stored_events").fetchall()
    stored = [(topic, bytes(state)) for topic, state in rows]
    decoded = [decode_event(topic, state) for topic, state in stored]
    v1 = sum(topic == "ModelEventReceived@1" for topic, _ in stored)
    assert v1 > 100 and calls == v1
    assert all(isinstance(e, Event) for e in decoded)
