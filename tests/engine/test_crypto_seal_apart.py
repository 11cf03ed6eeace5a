"""An audio chunk is sealed with its payload kept apart (``Sealer.seal_apart``, ``store.encode_for_store``):
the bytes stored are those of sealing the whole event, so every reader, old or new, reads them alike.

With the nonce fixed, the two ways must give the same bytes: a live call's key, an erased call's (no
ciphertext), and redaction rules applied as events are written (then the whole event is sealed the
general way). An empty payload is not kept apart (it is its own placeholder: nothing is sealed).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from callbridge.engine import crypto
from callbridge.engine.crypto import Sealer, sealed_payload_field
from callbridge.engine.events import AssistantAudioSent, CallerAudioReceived, Event, encode_event
from callbridge.engine.keys import KeyRing, SQLiteKeys
from callbridge.engine.privacy import call_key_id
from callbridge.engine.redaction import Redaction
from callbridge.engine.store import EventStore, encode_for_store

CALLER = CallerAudioReceived(
    call_id="CA1",
    at=1.5,
    first_chunk=26,
    timestamps=[500, 520],
    frame_sizes=[160, 157],
    payload=bytes(range(256)) + b"\xff" * 61,
)
ASSISTANT = AssistantAudioSent(
    call_id="CA1", at=2.0, response_id="resp_1", item_id="item_1", offset_bytes=4000, payload=b"\x7f" * 4000
)


@pytest.fixture
def fixed_nonce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(crypto.os, "urandom", lambda n: bytes(range(n)))


def both_ways(sealer: Sealer, event: Event) -> tuple[bytes, bytes]:
    apart = encode_for_store(event)
    assert apart.payload == event.payload  # kept apart, not in the JSON
    assert b"payload" in apart.state and len(apart.state) < len(apart.payload)
    return apart.sealed(sealer), sealer.seal(*encode_event(event))


def test_the_classes_whose_payload_is_kept_apart() -> None:
    apart = {name for name in Event.registry if sealed_payload_field(name) is not None}
    assert apart == {"CallerAudioReceived", "AssistantAudioSent"}
    assert sealed_payload_field("ModelEventReceived") is None  # sealed, but a text field


@pytest.mark.parametrize("event", [CALLER, ASSISTANT], ids=["caller", "assistant"])
def test_sealed_apart_are_the_bytes_of_sealing_the_whole_event(fixed_nonce: None, event: Event) -> None:
    sealer = Sealer(KeyRing(SQLiteKeys(None)))
    stored, whole = both_ways(sealer, event)
    assert stored == whole
    assert stored.startswith(crypto.ENVELOPE_PREFIX) and bytes(event.payload[:64]) not in stored  # type: ignore[attr-defined]
    assert sealer.open(encode_event(event)[0], stored).event == event


def test_an_erased_calls_audio_is_stored_without_its_payload_either_way(fixed_nonce: None) -> None:
    keys = KeyRing(SQLiteKeys(None))
    keys.for_writing(call_key_id("CA1"))
    keys.erase(call_key_id("CA1"))
    sealer = Sealer(keys)
    stored, whole = both_ways(sealer, CALLER)
    assert stored == whole
    opened = sealer.open(encode_event(CALLER)[0], stored)
    assert opened.erased and opened.event.payload == b""  # type: ignore[attr-defined]


def test_with_redaction_in_the_log_the_whole_event_is_sealed_the_general_way(fixed_nonce: None) -> None:
    sealer = Sealer(KeyRing(SQLiteKeys(None)), Redaction(("cards",), in_log=True))
    stored, whole = both_ways(sealer, ASSISTANT)
    assert stored == whole


def test_an_empty_payload_is_encoded_whole_and_stored_plain() -> None:
    silent = AssistantAudioSent(call_id="CA1", at=2.0, response_id="r", item_id="i", offset_bytes=0, payload=b"")
    encoded = encode_for_store(silent)
    assert encoded.payload is None and encoded.state == encode_event(silent)[1]


def test_audio_kept_apart_reads_back_from_a_real_store(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "calls.db"))
    try:
        store.append([CALLER, ASSISTANT])
        assert [r.event for r in store.read_call("CA1")] == [CALLER, ASSISTANT]
    finally:
        store.close()
