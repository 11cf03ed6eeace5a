"""Rebuilding gives exactly the incrementally built views, whatever the interleaving of calls, the
batch sizes of their appends and the page size of the catch-ups (hypothesis)."""

from __future__ import annotations

import random
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_projections_support import fold

from callbridge.engine.events import Event
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.views_db import dump_views, open_views

T0 = 1_767_225_600.0


def _plain(log: CallLog) -> CallLog:
    return log.caller_says("Hello, is this the bakery?").assistant_says("Yes it is, how can I help?")


def _tool(log: CallLog) -> CallLog:
    return (
        log.caller_says("Weather in Oslo?")
        .tool_call("get_weather", {"city": "Oslo"}, {"temp_c": -3}, duration_ms=200)
        .assistant_says("Minus three in Oslo.")
    )


def _failed_tool(log: CallLog) -> CallLog:
    return (
        log.caller_says("Where is my order?")
        .tool_call("lookup_order", {"id": 7}, "timed out", failed=True, duration_ms=900)
        .assistant_says("Sorry, I cannot reach the order system.")
    )


def _barge_in(log: CallLog) -> CallLog:
    return (
        log.caller_says("Tell me everything")
        .assistant_says("There is a great deal to tell about everything here.", interrupted_at_ms=300)
        .caller_says("Just the price")
        .assistant_says("Ten dollars.")
    )


def _reconnect(log: CallLog) -> CallLog:
    return log.caller_says("Book it").model_drops(downtime_ms=300).assistant_says("Booked.")


SHAPES: dict[str, Callable[[CallLog], CallLog]] = {
    "plain": _plain,
    "tool": _tool,
    "failed_tool": _failed_tool,
    "barge_in": _barge_in,
    "reconnect": _reconnect,
}


def _call(index: int, shape: str, ends: bool, offset_s: float) -> list[Event]:
    log = SHAPES[shape](CallLog(f"CA{index:04d}{shape}", start_at=T0 + offset_s).start())
    return (log.end() if ends else log).events


def _interleave(calls: list[list[Event]], rng: random.Random) -> list[Event]:
    """A random merge that keeps each call's own order."""
    queues = [list(reversed(events)) for events in calls]
    merged: list[Event] = []
    while any(queues):
        queue = rng.choice([q for q in queues if q])
        merged.append(queue.pop())
    return merged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(sorted(SHAPES)), st.booleans(), st.floats(0, 30)), min_size=2, max_size=4
    ),
    rng=st.randoms(use_true_random=False),
    page_size=st.integers(1, 60),
)
def test_incremental_views_equal_a_rebuild(
    shapes: list[tuple[str, bool, float]], rng: random.Random, page_size: int
) -> None:
    calls = [_call(i, shape, ends, offset) for i, (shape, ends, offset) in enumerate(shapes)]
    events = _interleave(calls, rng)
    store = EventStore("sqlite:///:memory:")
    incremental = open_views(":memory:")
    rebuilt = open_views(":memory:")
    try:
        runner = ProjectionRunner(store, incremental, page_size=page_size)
        runner.setup()
        written = 0
        while written < len(events):
            size = rng.randint(1, 80)
            store.append(events[written : written + size])
            written += size
            runner.catch_up()
        head = store.head()
        assert runner.positions() == {"conversations": head, "metrics": head, "ownership": head, "webhooks": head}
        fold(store, rebuilt)
        picture = dump_views(incremental)
        assert picture == dump_views(rebuilt)
        # the picture is of something: every call is there, with its items
        assert len(picture["conversations"]) == len(calls)
        assert len(picture["call_metrics"]) == len(calls)
        assert len(picture["conversation_items"]) >= 2 * len(calls)
    finally:
        incremental.close()
        rebuilt.close()
        store.close()
