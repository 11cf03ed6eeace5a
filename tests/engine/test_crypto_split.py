"""How a sealed state is taken apart (``engine.crypto._split``): its ciphertext's base64 is read by
pybase64 when it can be, and by msgspec otherwise, and either way the event opens the same.

pybase64 may stand in for msgspec only because it accepts exactly the strings msgspec's ``bytes``
decoding accepts, and reads them the same: held here over arbitrary text, not just valid base64.
"""

from __future__ import annotations

import binascii

import msgspec
import pybase64
from hypothesis import given
from hypothesis import strategies as st

from callbridge.engine.crypto import ENVELOPE_PREFIX, Reading, Sealer
from callbridge.engine.events import CallerAudioReceived, ModelEventReceived, encode_event
from callbridge.engine.keys import KeyRing, SQLiteKeys

_bytes_from_json = msgspec.json.Decoder(bytes)
BASE64ISH = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n.", max_size=24)


def by_msgspec(text: str) -> bytes | None:
    try:
        return _bytes_from_json.decode(msgspec.json.encode(text))
    except msgspec.ValidationError:
        return None


def by_pybase64(text: str) -> bytes | None:
    try:
        return pybase64.b64decode(text.encode(), validate=True)
    except binascii.Error:
        return None


@given(BASE64ISH)
def test_pybase64_accepts_and_reads_exactly_what_msgspec_does(text: str) -> None:
    assert by_pybase64(text) == by_msgspec(text)


@given(st.binary(max_size=64))
def test_every_base64_msgspec_writes_reads_back_the_same_by_both(data: bytes) -> None:
    text = msgspec.json.decode(msgspec.json.encode(data))
    assert by_pybase64(text) == by_msgspec(text) == data


def a_sealer() -> Sealer:
    return Sealer(KeyRing(SQLiteKeys(None)))


AUDIO = CallerAudioReceived(
    call_id="CA1", at=1.5, first_chunk=1, timestamps=[0, 20], frame_sizes=[160, 160], payload=bytes(range(256)) * 2
)


def sealed(sealer: Sealer, event: CallerAudioReceived | ModelEventReceived) -> tuple[str, bytes]:
    topic, state = encode_event(event)
    stored = sealer.seal(topic, state)
    assert stored.startswith(ENVELOPE_PREFIX) and b'"c":"' in stored
    return topic, stored


def test_a_ciphertext_written_with_json_escapes_is_read_by_msgspec_the_same() -> None:
    sealer = a_sealer()
    topic, stored = sealed(sealer, AUDIO)
    start = stored.index(b'"c":"') + 5  # a hand-edited log may escape a character: pybase64 refuses it
    escaped = stored[:start] + b"\\u%04x" % stored[start] + stored[start + 1 :]
    assert sealer.open(topic, escaped) == sealer.open(topic, stored)
    assert sealer.open(topic, escaped).event == AUDIO


def test_an_envelope_with_more_after_its_ciphertext_opens_the_same() -> None:
    sealer = a_sealer()
    said = ModelEventReceived(call_id="CA1", at=2.0, type="response.done", raw='{"text":"my card is 4111"}', facts=1)
    topic, stored = sealed(sealer, said)
    close = stored.index(b"},", stored.index(b'"c":"'))
    versioned = stored[:close] + b',"v":1' + stored[close:]  # "c" no longer last in the envelope
    assert sealer.open(topic, versioned) == sealer.open(topic, stored)
    assert sealer.open(topic, versioned).event == said


def test_open_parts_gives_the_sealed_values_apart_and_open_puts_them_in() -> None:
    sealer = a_sealer()
    topic, stored = sealed(sealer, AUDIO)
    clear, values, erased = sealer.open_parts(topic, stored)
    assert clear.payload == b"" and values.payload == AUDIO.payload and not erased  # type: ignore[attr-defined]
    assert msgspec.structs.replace(clear, **msgspec.structs.asdict(values)) == AUDIO
    plain_topic, plain = encode_event(AUDIO)
    assert sealer.open_parts(plain_topic, plain) == (AUDIO, None, False)


def test_one_reading_opens_envelopes_of_several_keys_each_with_its_own() -> None:
    """A read takes an envelope that starts as the one before it did (the same key id) without
    msgspec: envelopes of other keys, in between, are each opened with their own."""
    sealer = a_sealer()
    events = [msgspec.structs.replace(AUDIO, call_id=call_id, at=n) for n, call_id in enumerate(["CA1", "CA2"] * 3)]
    stored = [sealed(sealer, event) for event in events]
    reading = Reading()
    assert [sealer.open(topic, state, reading=reading).event for topic, state in stored] == events
    assert reading.key_id == "call:CA2"


def test_an_envelope_like_the_one_before_but_with_an_escaped_nonce_opens_the_same() -> None:
    sealer = a_sealer()
    reading = Reading()
    topic, first = sealed(sealer, AUDIO)
    assert sealer.open(topic, first, reading=reading).event == AUDIO
    _, stored = sealed(sealer, AUDIO)
    start = stored.index(b'"n":"') + 5  # the same start as the first; pybase64 refuses an escape
    escaped = stored[:start] + b"\\u%04x" % stored[start] + stored[start + 1 :]
    assert sealer.open(topic, escaped, reading=reading) == sealer.open(topic, stored) == (AUDIO, False)
