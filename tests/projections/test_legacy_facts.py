"""A log recorded before the typed conversation facts reads like one recorded with them.

The views, the timeline and the console fold the engine's typed facts (``CallerSaid``,
``AssistantSaid``, ``ResponseStarted``, …) and never the model's JSON. An old log has none of them
(its model events are stored as ``ModelEventReceived@1``) or the first four only (``@2``), and
``projections/legacy_facts.py`` derives the missing ones when the log is read. Here each call is
stored three ways — as today's engine records it, and as the two older engines did — and every
answer must be the same.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from bridge_harness import running_bridge
from privacy_calls import order_registry
from test_projections_support import (
    T0,
    barge_in_call,
    crashed_call,
    normal_call,
    reconnect_call,
    tool_call,
    views_after,
)

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import BargeIn, HangUp, Silence, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import (
    BargeInDecided,
    Event,
    ModelEventReceived,
    ToolCallCompleted,
    TranscriptDelta,
    decode_event,
)
from callbridge.engine.store import EncodedEvent, EventStore, encode_for_store
from callbridge.engine.synthetic import CallLog
from callbridge.projections.conversations import get_conversation
from callbridge.projections.legacy_facts import DERIVED, RECORDED_IN_VERSION_2, expand_events, facts_of
from callbridge.projections.metrics import get_call_metrics
from callbridge.projections.source import LogSource
from callbridge.projections.timeline import build_timeline
from callbridge.projections.views_db import dump_views


def golden() -> list[list[Event]]:
    calls = [build(start_at=T0 + n * 60).events for n, build in enumerate((normal_call, tool_call, barge_in_call))]
    calls.append(reconnect_call(start_at=T0 + 200).events)
    calls.append(crashed_call(start_at=T0 + 300)[1])
    return calls


OLD_ENGINES = (1, 2)
"""The versions of ``ModelEventReceived`` older engines stored."""


def recorded_by_an_old_engine(event: Event, version: int) -> bool:
    """Whether the engine storing model events at ``version`` recorded ``event``."""
    return type(event).__name__ not in DERIVED or (version == 2 and isinstance(event, RECORDED_IN_VERSION_2))


def as_an_old_engine_recorded(events: list[Event], version: int) -> list[EncodedEvent]:
    """The call without the facts that engine did not record, its model events at its version."""
    old = []
    for event in events:
        if not recorded_by_an_old_engine(event, version):
            continue
        encoded = encode_for_store(event)
        if isinstance(event, ModelEventReceived):
            encoded = encoded._replace(topic=f"ModelEventReceived@{version}")
        old.append(encoded)
    return old


def as_read_from_an_old_engine(events: list[Event], version: int) -> list[Event]:
    """The same as the events its upcasters give (``facts`` 0 or 1)."""
    return [
        msgspec.structs.replace(e, facts=version - 1) if isinstance(e, ModelEventReceived) else e
        for e in events
        if recorded_by_an_old_engine(e, version)
    ]


@pytest.mark.parametrize("version", OLD_ENGINES)
def test_an_old_log_folds_to_the_same_views_and_timelines(tmp_path: Path, version: int) -> None:
    today, old = EventStore(str(tmp_path / "today.db")), EventStore(str(tmp_path / "old.db"))
    try:
        for events in golden():
            today.append(events)
            old.append_encoded(as_an_old_engine_recorded(events, version))
        assert old.head() < today.head()  # fewer facts stored in the old log
        views = [views_after(store, tmp_path / f"views-{n}.db") for n, store in enumerate((today, old))]
        dumps = [dump_views(db) for db in views]
        for db in views:
            db.close()
        for dump in dumps:  # positions in the log and its path differ
            del dump["projection_positions"], dump["views_source"]
            dump["open_calls"] = [(call_id, engine, at) for call_id, engine, _position, at in dump["open_calls"]]
        assert dumps[0]["conversation_items"] and dumps[0]["turn_metrics"]
        assert dumps[1] == dumps[0]
        for events in golden():
            call_id = events[0].call_id
            timelines = [build_timeline([r.event for r in store.read_call(call_id)]) for store in (today, old)]
            assert timelines[1] == timelines[0], call_id
    finally:
        today.close()
        old.close()


def in_windows(facts: list[Event]) -> list[Event]:
    """``facts`` with each run of transcript deltas of one item joined into one, as today's engine
    records the pieces of one writer window (the synthetic logs' pieces all come in one window)."""
    out: list[Event] = []
    for fact in facts:
        last = out[-1] if out else None
        if (
            isinstance(fact, TranscriptDelta)
            and isinstance(last, TranscriptDelta)
            and (last.item_id, last.role, last.response_id) == (fact.item_id, fact.role, fact.response_id)
        ):
            out[-1] = msgspec.structs.replace(last, delta=last.delta + fact.delta)
        else:
            out.append(fact)
    return out


@pytest.mark.parametrize("version", OLD_ENGINES)
def test_the_facts_derived_from_model_events_are_the_ones_the_engine_records(version: int) -> None:
    """The synthetic logs record the facts beside the model's events as the engine does; deriving
    the missing ones from the model's events (the engine's own function) gives the same facts, in
    order — one transcript delta per model delta, which today's engine records one per window."""
    for events in golden():
        recorded = [e for e in events if type(e).__name__ in DERIVED]
        old = as_read_from_an_old_engine(events, version)
        derived = [e for e in expand_events(old) if type(e).__name__ in DERIVED]
        assert len(recorded) >= 10 and len(old) < len(events)
        assert in_windows(derived) == recorded


def test_todays_model_events_are_never_parsed_for_facts(sqlite_event_store: EventStore) -> None:
    log = CallLog("CAtoday").start().caller_says("Hello there").assistant_says("Hi!").end()
    [received, *_] = [e for e in log.events if isinstance(e, ModelEventReceived) and e.type.endswith("completed")]
    assert received.facts == 2 and facts_of(received) == []
    assert facts_of(msgspec.structs.replace(received, facts=0))  # the same JSON in an old log
    assert facts_of(msgspec.structs.replace(received, facts=1)) == []  # an engine that recorded CallerSaid
    sqlite_event_store.append(log.events)
    source = LogSource(sqlite_event_store, {"CallerSaid"})
    page = source.page(0, sqlite_event_store.head(), 1000)
    assert [type(r.event).__name__ for r in page.events] == ["CallerSaid"]  # no model event fetched
    assert page.reached == sqlite_event_store.head()


def test_the_upcasters_say_which_facts_an_old_model_event_has_beside_it() -> None:
    state = msgspec.json.encode({"call_id": "CA1", "at": 1.0, "type": "session.created", "raw": "{}"})
    decoded = [decode_event(f"ModelEventReceived@{version}", state) for version in (1, 2, 3)]
    assert [e.facts for e in decoded if isinstance(e, ModelEventReceived)] == [0, 1, 2]
    assert b"facts" not in encode_for_store(decoded[2]).state  # the default is never stored


SCRIPT = Script(
    turns=[
        Turn(
            transcript="Where is my order?",
            function_call=FunctionCall(name="lookup_order", arguments={"order": "A-1"}),
            after_tool="Your order is {status}.",
        ),
        Turn(
            transcript="Tell me a story",
            reply="Once upon a time, a small wooden boat sailed across a calm blue ocean, while the sailors sang.",
        ),
        Turn(transcript="Thanks", reply="You are welcome."),
    ]
)
CALLER = [
    Speak(900),
    WaitForAssistant(timeout_s=15),
    Silence(400),
    Speak(900),
    BargeIn(after_ms=1500, speak_ms=900),
    WaitForAssistant(timeout_s=15),
    Silence(300),
    HangUp(),
]


async def test_a_call_recorded_by_the_engine_reads_the_same_stored_as_the_old_engines_did(tmp_path: Path) -> None:
    """The real engine and the simulated peers (not a synthetic log): the facts the engine recorded
    and those derived from its model events give the same conversation, metrics and timeline."""
    async with running_bridge(tmp_path / "served", script=SCRIPT, registry=order_registry()) as bridge:
        report = await place_call(bridge.base_url, script=CALLER)
        assert report.ok, report.errors
        await bridge.wait_call_ended(report.call_sid)
        await bridge.server.writer.flush()
    served = EventStore(str(tmp_path / "served" / "callbridge.db"))
    try:
        events = [r.event for r in served.read_call(report.call_sid)]
    finally:
        served.close()
    assert any(isinstance(e, BargeInDecided) and e.action == "truncated" for e in events)
    assert any(isinstance(e, ToolCallCompleted) for e in events)
    answers = []
    for version in (3, *OLD_ENGINES):
        store = EventStore(str(tmp_path / f"v{version}.db"))
        try:
            if version == 3:
                store.append(events)
            else:
                store.append_encoded(as_an_old_engine_recorded(events, version))
            db = views_after(store, tmp_path / f"views-{version}.db")
            try:
                conversation, metrics = get_conversation(db, report.call_sid), get_call_metrics(db, report.call_sid)
            finally:
                db.close()
            timeline = build_timeline([r.event for r in store.read_call(report.call_sid)])
            answers.append((conversation, metrics, timeline))
        finally:
            store.close()
    conversation = answers[0][0]
    assert conversation is not None
    statuses = [(item["type"], item["status"]) for item in conversation["items"]]
    assert ("message", "truncated") in statuses and ("function_call", "completed") in statuses
    assert answers[1] == answers[0] and answers[2] == answers[0]
