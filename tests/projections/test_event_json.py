"""``record_json`` writes exactly the JSON of ``event_record`` (projections/event_json.py), without the dict.

``replay --json`` prints an hour's call through it and the API pages through ``event_record``: the
two must never tell an event differently. Compared byte for byte over golden calls (audio, tool
calls, a barge-in, a reconnect), an erased call, a webhook's hidden secret, redacted events, and
every time a float can hold.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st
from test_projections_support import T0, golden_calls

from callbridge.engine.events import ModelEventReceived, WebhookRegistered
from callbridge.engine.redaction import Redaction
from callbridge.engine.store import EventStore, RecordedEvent
from callbridge.projections.erasure import erase_call
from callbridge.projections.event_json import event_record, iso_micro, record_json, render_json, write_json

_encode = msgspec.json.Encoder()


def same_both_ways(recorded: list[RecordedEvent]) -> None:
    assert recorded
    for one in recorded:
        assert record_json(one) == _encode.encode(event_record(one)), type(one.event).__name__
    written = io.BytesIO()
    write_json(recorded, written)
    assert written.getvalue().decode() == render_json(recorded)
    assert json.loads(render_json(recorded)) == [event_record(one) for one in recorded]


def test_every_golden_event_is_the_same_json_both_ways(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        calls = golden_calls()
        for log in calls:
            log.write(store)
            same_both_ways(store.read_call(log.call_id))
        erase_call(store, calls[0].call_id, by="cli")
        erased = store.read_call(calls[0].call_id)
        assert any(one.erased for one in erased)
        same_both_ways(erased)
    finally:
        store.close()


def test_a_hidden_secret_and_a_redacted_event_are_the_same_json_both_ways(tmp_path: Path) -> None:
    secret = WebhookRegistered(call_id="webhooks", at=T0, webhook_id="wh_1", url="https://x", events=[], secret="s")
    said = ModelEventReceived(call_id="CA1", at=T0 + 0.5, type="x", raw='{"card":"4111 1111 1111 1111"}', facts=1)
    store = EventStore(str(tmp_path / "events.db"), redaction=Redaction(("cards",)))
    try:
        store.append([secret, said])
        recorded = [*store.read_call("webhooks"), *store.read_call("CA1")]
    finally:
        store.close()
    assert json.loads(record_json(recorded[0]))["data"]["secret"] == "[hidden]"
    assert "4111" not in record_json(recorded[1]).decode()
    same_both_ways(recorded)


def test_no_events_are_an_empty_array() -> None:
    written = io.BytesIO()
    write_json([], written)
    assert written.getvalue() == render_json([]).encode() == b"[]\n"


@given(st.floats(min_value=-1e10, max_value=2.5e11, allow_nan=False))
def test_iso_micro_is_datetimes_own_text(at: float) -> None:
    expected = datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    assert iso_micro(at) == expected


def test_iso_micro_rounds_as_datetime_does_at_the_edges() -> None:
    for at in (T0, T0 + 0.0000005, T0 + 0.0000015, T0 + 0.9999996, T0 - 0.5, 0.0, -0.0000005, 1e-7):
        assert iso_micro(at) == datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds").replace(
            "+00:00", "Z"
        )
