"""Personal data is sealed at the store boundary and erased by deleting one key (``engine.crypto``,
``engine.keys``, ``engine.privacy``): what the store file holds, what reads back, before and after."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import msgspec
import psycopg
import pytest

from callbridge.engine.events import (
    CallCommandIssued,
    CallErased,
    CallStarted,
    DtmfForwarded,
    Event,
    ModelEventReceived,
    TransferRequested,
    WebhookRegistered,
)
from callbridge.engine.keys import sqlite_keys_path
from callbridge.engine.privacy import CLEAR, ERASED, SENSITIVE, call_key_id, skeleton
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog

SAID = "my secret is swordfish"


def a_call(call_id: str = "CAone") -> CallLog:
    return (
        CallLog(call_id, from_number="+15550001234")
        .start()
        .caller_says(SAID)
        .tool_call("lookup", {"account": "ACCT-991"}, {"balance": "1234.56"})
        .assistant_says("Your balance is twelve thirty four")
        .dtmf("7")
        .end()
    )


def test_every_event_class_is_classified_as_sensitive_or_clear() -> None:
    names = set(Event.registry)
    assert set(SENSITIVE) | CLEAR == names, "classify new events in engine/privacy.py"
    assert not set(SENSITIVE) & CLEAR
    for name, fields in SENSITIVE.items():
        declared = {f.name for f in msgspec.structs.fields(Event.registry[name])}
        assert set(fields) <= declared, name


def test_personal_fields_are_stored_sealed_and_read_back_whole(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    log = a_call()
    log.write(store)
    try:
        assert [r.event for r in store.read_call("CAone")] == log.events
        assert not any(r.erased for r in store.read_call("CAone"))
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "callbridge.db") as db:
        states = [row[0] for row in db.execute("SELECT state FROM stored_events")]
    stored = b"\n".join(states)
    for secret in (SAID, "ACCT-991", "1234.56", "+15550001234", "twelve thirty four"):
        assert secret.encode() not in stored, secret
    assert sum(state.startswith(b'{"_sealed":') for state in states) >= 10
    assert (tmp_path / "callbridge-keys.db").stat().st_mode & 0o777 == 0o600


def test_erasing_the_key_leaves_placeholders_and_everything_else(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    try:
        a_call("CAone").write(store)
        a_call("CAtwo").write(store)
        store.keys.erase(call_key_id("CAone"))
        erased = store.read_call("CAone")
        kept = [r.event for r in store.read_call("CAtwo")]
    finally:
        store.close()
    assert len(erased) == len(kept)
    started = erased[1].event  # after /twiml's routing decision
    assert isinstance(started, CallStarted) and erased[1].erased
    assert (started.from_number, started.custom_parameters, started.stream_sid) == (ERASED, {}, "MZone")
    text = str([r.event for r in erased])
    for secret in (SAID, "ACCT-991", "1234.56", "+15550001234"):
        assert secret not in text
    # timing, types, ids, statuses and token counts stay
    assert [type(r.event) for r in erased] == [type(e) for e in kept]
    assert [r.event.at for r in erased] == [e.at for e in kept]
    done = [r.event for r in erased if isinstance(r.event, ModelEventReceived) and r.event.type == "response.done"]
    assert done and json.loads(done[0].raw)["response"]["usage"]["total_tokens"] > 0
    assert SAID in str(kept)


def test_a_skeleton_keeps_the_shape_and_drops_the_words() -> None:
    raw = json.dumps(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "item_1",
            "transcript": "call me at 555",
            "empty": "",
            "logprobs": [{"token": "call", "logprob": -0.1}],
            "usage": {"total_tokens": 7},
        }
    )
    assert json.loads(skeleton(raw)) == {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": "item_1",
        "transcript": ERASED,
        "empty": "",
        "logprobs": [{"token": ERASED, "logprob": -0.1}],
        "usage": {"total_tokens": 7},
    }
    assert skeleton("not json") == ERASED and skeleton("") == ""


def test_events_after_an_erasure_are_stored_without_their_values(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    try:
        a_call().write(store)
        store.keys.erase(call_key_id("CAone"))
        store.append(
            [
                DtmfForwarded(call_id="CAone", at=2e9, digits="4111111111111111", mode="collect"),
                TransferRequested(call_id="CAone", at=2e9, label="x", to="+1", mode="cold", reason="caller Ada"),
            ]
        )
        last = store.read_call("CAone")[-2:]
    finally:
        store.close()
    assert [r.erased for r in last] == [True, True]
    assert [r.event.digits for r in last[:1]] == [ERASED]  # type: ignore[attr-defined]
    assert not any(b"4111111111111111" in path.read_bytes() for path in tmp_path.iterdir())


def test_a_logged_tampered_or_keyless_event_reads_as_erased(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    a_call().write(store)
    store.close()
    sqlite_keys_path(tmp_path / "callbridge.db").unlink()  # the key file was not copied with the store
    with caplog.at_level(logging.WARNING):
        store = EventStore(str(tmp_path / "callbridge.db"))
        try:
            recorded = store.read_call("CAone")
        finally:
            store.close()
    assert recorded and any(r.erased for r in recorded)
    assert "its key is missing from the key store" in caplog.text


def test_old_unencrypted_events_read_as_they_were(tmp_path: Path) -> None:
    from eventsourcing.persistence import StoredEvent

    from callbridge.engine.events import encode_event
    from callbridge.engine.store import call_originator_id

    store = EventStore(str(tmp_path / "callbridge.db"))
    try:
        started = CallStarted(call_id="CAold", at=1.0, stream_sid="MZ", from_number="+15550009999")
        topic, state = encode_event(started)
        store.recorder.insert_events([StoredEvent(call_originator_id("CAold"), 1, topic, state)])  # as v1 did
        (recorded,) = store.read_call("CAold")
    finally:
        store.close()
    assert recorded.event == started and not recorded.erased


def test_a_webhook_secret_is_sealed_with_the_webhooks_own_key(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    try:
        registered = WebhookRegistered(
            call_id="webhooks", at=1.0, webhook_id="wh_1", url="https://x.example/h", events=["call.ended"], secret="s3"
        )
        store.append([registered])
        assert store.read_call("webhooks")[0].event == registered
        store.keys.erase("webhook:wh_1")
        assert store.read_call("webhooks")[0].event.secret == ERASED  # type: ignore[attr-defined]
    finally:
        store.close()


def test_an_operators_command_in_the_engines_stream_is_erased_with_the_call_it_was_for(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "callbridge.db"))
    try:
        typed = {"type": "conversation.item.create", "item": {"content": [{"text": SAID}]}}
        command = CallCommandIssued(
            call_id="engine:e1", at=1.0, target_call_id="CAone", command_id="c1", kind="client_event", payload=typed
        )
        store.append([command])
        stored = b"".join(path.read_bytes() for path in tmp_path.glob("callbridge.db*"))
        assert b"conversation.item.create" in stored or b"_sealed" in stored  # the files were read
        assert SAID.encode() not in stored
        assert store.read_call("engine:e1")[0].event == command
        store.keys.erase(call_key_id("CAone"))
        assert store.read_call("engine:e1")[0].event.payload == {}  # type: ignore[attr-defined]
    finally:
        store.close()


@pytest.mark.postgres
def test_on_postgresql_the_keys_live_in_a_schema_of_their_own(postgres_store_url: str) -> None:
    store = EventStore(postgres_store_url)
    try:
        a_call().write(store)
        assert SAID in str([r.event for r in store.read_call("CAone")])
        schema = postgres_store_url.rsplit("schema=", 1)[1]
        with psycopg.connect(postgres_store_url.split("?")[0]) as db:
            keys = db.execute(f'SELECT key_id FROM "{schema}_keys".keys').fetchall()
            events = b"".join(bytes(r[0]) for r in db.execute(f'SELECT state FROM "{schema}".callbridge_events'))
        assert keys == [("call:CAone",)] and SAID.encode() not in events
        store.keys.erase(call_key_id("CAone"))
        store.append([CallErased(call_id="CAone", at=3e9)])
        assert SAID not in str([r.event for r in store.read_call("CAone")])
    finally:
        store.close()
    reopened = EventStore(postgres_store_url)  # another process: no cached key
    try:
        assert all(r.erased for r in reopened.read_call("CAone") if r.event.__class__.__name__ == "CallerSaid")
    finally:
        reopened.close()
