"""Sealing an event's sensitive fields with its call's key, at the store boundary (AES-256-GCM).

The stored form of an event with something personal in it (``engine.privacy.SENSITIVE``) is its JSON
with each sensitive field at its placeholder, led by an envelope::

    {"_sealed": {"v": 1, "k": "call:CA…", "n": <nonce>, "c": <ciphertext>}, "call_id": "CA…", "at": …,
     "text": "[erased]", …}

``c`` is AES-256-GCM (``cryptography``'s ``AESGCM``, a random 96-bit nonce per event) over the
sensitive fields' real values as MessagePack (audio stays binary: no second base64), with the topic
and the key id as associated data, so a ciphertext cannot be moved to another event type or call.
An envelope without ``c`` is an event recorded after its call was erased: its values were never stored.

Why this shape: everything that is not personal stays plain JSON, so the log keeps its topics,
positions and versions, old unencrypted logs read as before (no envelope: decoded as they are), and an
event whose key is gone still decodes — to the same event type with placeholders (``erased``). The
topic filter of the views' reads keeps working unchanged.
"""

from __future__ import annotations

import binascii
import functools
import logging
import os
from typing import Any, NamedTuple

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pybase64 import b64decode, b64encode

from callbridge.engine.events import Event, decode_event, upcast
from callbridge.engine.keys import KeyRing, KeyState
from callbridge.engine.privacy import call_key_id, field_placeholder, key_id_for, sensitive_fields
from callbridge.engine.redaction import NO_REDACTION, Redaction

log = logging.getLogger(__name__)

ENVELOPE_PREFIX = b'{"_sealed":'
NONCE_BYTES = 12
_MAX_WARNED = 1000


class Envelope(msgspec.Struct, frozen=True, omit_defaults=True):
    k: str
    """The key id (``call:<call_id>``, ``webhook:<id>``)."""
    n: bytes | None = None
    c: bytes | None = None
    v: int = 1


class _Stored(msgspec.Struct, frozen=True):
    sealed: Envelope | None = msgspec.field(default=None, name="_sealed")


class Opened(NamedTuple):
    event: Event
    erased: bool
    """Its sensitive fields are placeholders: the key is gone (erased, or lost)."""


_envelope_decoder = msgspec.json.Decoder(_Stored)
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()
_secret_decoders: dict[str, msgspec.msgpack.Decoder[Any]] = {}


def _secret_decoder(name: str) -> msgspec.msgpack.Decoder[Any]:
    """A decoder of one event class's sensitive fields, typed like the class's own fields."""
    decoder = _secret_decoders.get(name)
    if decoder is None:
        cls = Event.registry[name]
        wanted = set(sensitive_fields(name))
        fields = [(f.name, f.type) for f in msgspec.structs.fields(cls) if f.name in wanted]
        secret = msgspec.defstruct(f"{name}Sealed", fields, kw_only=True)
        decoder = _secret_decoders[name] = msgspec.msgpack.Decoder(secret)
    return decoder


def _aad(topic: str, key_id: str) -> bytes:
    return b"callbridge sealed v1\x00" + topic.encode() + b"\x00" + key_id.encode()


def _cipher(key: KeyState) -> AESGCM:
    assert key.key is not None
    return key.cipher if key.cipher is not None else AESGCM(key.key)


@functools.cache
def sealed_payload_field(name: str) -> str | None:
    """The name of the class ``name``'s one sealed field when it is a ``bytes`` field written last (an
    audio chunk's ``payload``), else None: such a field can be kept apart from the event's JSON and
    written around it (:meth:`Sealer.seal_apart`, ``projections.call_json``), since msgspec writes
    ``bytes`` as the standard padded base64 that pybase64 writes too, several times faster."""
    cls = Event.registry.get(name)
    if cls is None or cls.__struct_config__.omit_defaults:
        return None
    last = msgspec.structs.fields(cls)[-1]
    return last.name if sensitive_fields(name) == (last.name,) and last.type is bytes else None


def is_sealed(state: bytes) -> bool:
    return state.startswith(ENVELOPE_PREFIX)


class _Kind(NamedTuple):
    """What opening an event of one stored topic needs, worked out once per topic."""

    name: str
    decoder: msgspec.json.Decoder[Any] | None
    """Today's version's decoder; None for an older version (upcast on the way)."""
    secret: msgspec.msgpack.Decoder[Any]
    """The decoder of its sealed fields' values."""


_kinds: dict[str, _Kind] = {}


def _kind(topic: str) -> _Kind:
    """Raises ``KeyError`` for an unknown event name, as ``decode_event`` does."""
    name, _, version_text = topic.partition("@")
    cls = Event.registry[name]
    current = int(version_text or 1) == cls.schema_version
    kind = _kinds[topic] = _Kind(name, msgspec.json.Decoder(cls) if current else None, _secret_decoder(name))
    return kind


_CIPHERTEXT_KEY = b'"c":"'
_ENVELOPE_START = len(ENVELOPE_PREFIX)
_CIPHERTEXT_LAST = b'"c":null}'
_envelope_only = msgspec.json.Decoder(Envelope)


def _split(state: bytes, reading: Reading | None = None) -> tuple[str, bytes | None, bytes | None, bytes] | None:
    """A sealed state as :meth:`Sealer.seal` writes it — ``{"_sealed":{…,"c":"…"},<clear fields>}`` —
    cut in four: its key id, its nonce, its ciphertext, and its clear fields as their own JSON object;
    so the ciphertext's base64 (most of an audio chunk) is read once, not skipped over again by the
    event's decoder. None for any other layout (read by ``Sealer._open_sealed``). ``"c":"`` cannot occur
    in the key id before it (a quote inside a JSON string is escaped), nor a quote inside the base64.

    With ``c`` last in the envelope, as ``seal`` writes it, the base64 is decoded by pybase64 (SIMD,
    5 to 10 times msgspec's speed): it accepts exactly the strings msgspec's ``bytes`` decoding
    accepts and reads them the same (``tests/engine/test_crypto_split.py``), and any it refuses — a
    JSON escape, which only msgspec reads — are left to msgspec. (Its arguments are positional: by
    keyword, pybase64 takes a third of a microsecond more to read them.)

    ``reading``: an envelope that starts as the one before it did (``{"k":<the same key id>,"n":"``,
    :attr:`Reading.head`) is read without msgspec: its nonce is the base64 between that and ``","c":"``
    (anything else there, pybase64 refuses, and msgspec reads the envelope)."""
    start = state.find(_CIPHERTEXT_KEY, _ENVELOPE_START)
    if start < 0:
        return None
    end = state.find(b'"', start + len(_CIPHERTEXT_KEY))
    if end < 0:
        return None
    if state.startswith(b"},", end + 1):
        try:
            ciphertext = b64decode(state[start + len(_CIPHERTEXT_KEY) : end], None, True)
            nonce: bytes | None
            if (
                reading is not None
                and state.startswith(reading.head, _ENVELOPE_START)
                and state[start - 2 : start] == b'",'
            ):
                key_id, nonce = (
                    reading.key_id,
                    b64decode(state[_ENVELOPE_START + len(reading.head) : start - 2], None, True),
                )
            else:
                envelope = _envelope_only.decode(state[_ENVELOPE_START:start] + _CIPHERTEXT_LAST)
                key_id, nonce = envelope.k, envelope.n
                if reading is not None:
                    reading.head, reading.key_id = b'{"k":' + _json.encode(key_id) + b',"n":"', key_id
        except (msgspec.DecodeError, binascii.Error):
            pass
        else:
            return key_id, nonce, ciphertext, b"{" + state[end + 3 :]
    close = state.find(b"},", end)
    if close < 0:
        return None
    try:
        envelope = _envelope_only.decode(state[_ENVELOPE_START : close + 1])
    except msgspec.DecodeError:
        return None
    return envelope.k, envelope.n, envelope.c, b"{" + state[close + 2 :]


class Reading:
    """What one read of many stored events (a call's) works out once rather than per event: each key
    id's key, looked up in the key ring once for the whole read (so a key erased while a read is under
    way is used to its end, as the key ring's own cache would for :data:`engine.keys.READ_TTL_S`), and
    each topic's associated data under it. Not thread-safe: one per read."""

    __slots__ = ("head", "key_id", "keys")

    def __init__(self) -> None:
        self.keys: dict[str, tuple[KeyState, dict[str, bytes]]] = {}
        """Key id → its key, and its associated data by topic."""
        self.head = b"\0"
        """How the last envelope read starts, up to its nonce: ``{"k":<key id>,"n":"`` (``_split``); at
        first, what no envelope starts with."""
        self.key_id = ""
        """That envelope's key id."""


def plain_decoder(topic: str) -> msgspec.json.Decoder[Any] | None:
    """The decoder of an unsealed stored state of ``topic`` (not :func:`is_sealed`): the event's JSON, as
    :meth:`Sealer.open` reads it before any redaction; None for an older version (``decode_event``
    upcasts it). Raises ``KeyError`` for an unknown event name."""
    return (_kinds.get(topic) or _kind(topic)).decoder


class Sealer:
    """Seals on the way into the store and opens on the way out. Thread-safe."""

    def __init__(self, keys: KeyRing, redaction: Redaction = NO_REDACTION) -> None:
        self.keys = keys
        self.redaction = redaction
        self._masks = redaction.active
        self._masks_on_write = redaction.in_log and redaction.active
        self._warned: set[str] = set()

    # --- into the store ----------------------------------------------------------------------------

    def seal(self, topic: str, state: bytes) -> bytes:
        """The stored form of an event given in its plain form (``engine.events.encode_event``)."""
        name = topic.partition("@")[0]
        fields = sensitive_fields(name)
        masks = self._masks_on_write
        if not fields and not masks:
            return state
        event = decode_event(topic, state)
        if masks:
            event = self.redaction.event(event)
        values: dict[str, Any] = {}
        placeholders: dict[str, Any] = {}
        hidden = False
        for field in fields:
            value = values[field] = getattr(event, field)
            shown = placeholders[field] = field_placeholder(name, field, value)
            hidden = hidden or shown != value  # an empty value is its own placeholder
        if not hidden:
            return state if not masks else _json.encode(event)  # nothing personal to hide here
        clear = msgspec.structs.replace(event, **placeholders)
        key_id = key_id_for(event)
        key = self.keys.for_writing(key_id)
        if key.key is None:  # the call was erased: its values are never stored
            envelope = Envelope(k=key_id)
        else:
            nonce = os.urandom(NONCE_BYTES)
            sealed = _cipher(key).encrypt(nonce, _msgpack.encode(values), _aad(topic, key_id))
            envelope = Envelope(k=key_id, n=nonce, c=sealed)
        return ENVELOPE_PREFIX + _json.encode(envelope) + b"," + _json.encode(clear)[1:]

    def seal_apart(self, topic: str, call_id: str, clear: bytes, payload: bytes) -> bytes:
        """:meth:`seal` of an event whose :func:`sealed_payload_field` was left out of its plain form:
        ``clear`` is the event's JSON with ``""`` for it, ``payload`` its value (not empty). The same
        bytes as :meth:`seal` of the whole event (``tests/engine/test_crypto_seal_apart.py``), without
        msgspec writing the payload's base64 into JSON and reading it back: for a 4 KB audio chunk that
        was most of what storing it cost the engine (issue 12)."""
        name = topic.partition("@")[0]
        field = sealed_payload_field(name)
        if self._masks_on_write or field is None:
            return self.seal(topic, clear[:-2] + b64encode(payload) + b'"}')
        key_id = call_key_id(call_id)
        key = self.keys.for_writing(key_id)
        if key.key is None:  # the call was erased: its values are never stored
            envelope = _json.encode(Envelope(k=key_id))
        else:
            nonce = os.urandom(NONCE_BYTES)
            sealed = _cipher(key).encrypt(nonce, _msgpack.encode({field: payload}), _aad(topic, key_id))
            envelope = b"".join(
                (b'{"k":', _json.encode(key_id), b',"n":"', b64encode(nonce), b'","c":"', b64encode(sealed), b'"}')
            )
        return ENVELOPE_PREFIX + envelope + b"," + clear[1:]

    # --- out of the store --------------------------------------------------------------------------

    def open(self, topic: str, state: bytes, *, shown: bool = True, reading: Reading | None = None) -> Opened:
        """The event as recorded — redacted when rules are in force, unless ``shown`` is false — or with
        placeholders when its key is gone. Raises like ``decode_event`` for what cannot be decoded.
        ``reading``: the read this event is one of (its keys looked up once for all of them)."""
        event, values, erased = self.open_parts(topic, state, reading)
        if values is not None:
            event = msgspec.structs.replace(event, **msgspec.structs.asdict(values))
        return Opened(self._shown(event) if shown and not erased else event, erased)  # placeholders stay as they are

    def open_parts(self, topic: str, state: bytes, reading: Reading | None = None) -> tuple[Event, Any, bool]:
        """:meth:`open` in parts, never redacted: ``(event, values, erased)``, where ``values`` (when not
        None) are its sealed fields' values, a struct with those fields, still to be put in ``event``
        (``msgspec.structs.replace(event, **msgspec.structs.asdict(values))``), whose sealed fields
        hold their placeholders until then. For a reader that writes the values on their own (the
        audio of ``replay --json``, ``projections.call_json``)."""
        kind = _kinds.get(topic) or _kind(topic)
        decoder = kind.decoder
        if not state.startswith(ENVELOPE_PREFIX):
            return (decoder.decode(state) if decoder is not None else decode_event(topic, state)), None, False
        split = _split(state, reading) if decoder is not None else None
        if split is None or decoder is None:
            event, erased = self._open_sealed(topic, state)
            return event, None, erased
        key_id, nonce, ciphertext, clear = split
        if ciphertext is None or nonce is None:  # recorded after its call was erased
            return decoder.decode(clear), None, True
        if reading is None:
            key = self.keys.for_reading(key_id)
            aad = _aad(topic, key_id)
        else:
            key, aads = reading.keys.get(key_id) or reading.keys.setdefault(key_id, (self.keys.for_reading(key_id), {}))
            aad = aads.get(topic) or aads.setdefault(topic, _aad(topic, key_id))
        if key.key is None:
            self._key_gone(key_id, key)
            return decoder.decode(clear), None, True
        try:
            secret = _cipher(key).decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            self._tampered(key_id)
            return decoder.decode(clear), None, True
        return decoder.decode(clear), kind.secret.decode(secret), False

    def _open_sealed(self, topic: str, state: bytes) -> tuple[Event, bool]:
        """:meth:`open_parts` for any sealed layout and version, by decoding the whole state twice:
        ``(event, erased)``, never redacted."""
        envelope = _envelope_decoder.decode(state).sealed
        name, _, version_text = topic.partition("@")
        cls = Event.registry[name]
        if envelope is None or envelope.c is None or envelope.n is None:
            return decode_event(topic, state), True
        key = self.keys.for_reading(envelope.k)
        if key.key is None:
            self._key_gone(envelope.k, key)
            return decode_event(topic, state), True
        try:
            secret = _cipher(key).decrypt(envelope.n, envelope.c, _aad(topic, envelope.k))
        except InvalidTag:
            self._tampered(envelope.k)
            return decode_event(topic, state), True
        if int(version_text or 1) == cls.schema_version:
            values = _secret_decoder(name).decode(secret)
            event = decode_event(topic, state)
            return msgspec.structs.replace(event, **msgspec.structs.asdict(values)), False
        # an older version: merge, then upcast as a whole
        payload = msgspec.json.decode(state)
        payload.pop("_sealed", None)
        payload.update(msgspec.msgpack.decode(secret))
        return msgspec.convert(upcast(name, int(version_text or 1), payload), cls), False

    def clear(self, topic: str, state: bytes) -> Event:
        """The event with its sealed fields left sealed (their placeholders), redacted when rules are in
        force: for a reader that never reads them (a view that folds audio chunks by their times), no
        key is looked up and nothing is decrypted. Raises like ``decode_event``."""
        return self._shown(decode_event(topic, state))

    def _shown(self, event: Event) -> Event:
        return self.redaction.event(event) if self._masks else event

    def shows_as_stored(self, name: str) -> bool:
        """Whether events of the class ``name`` are shown exactly as stored (no redaction rule in force
        touches them), so a reader may skip :meth:`open`'s redaction step for them."""
        return not self._masks or not self.redaction.touches(name)

    def _key_gone(self, key_id: str, key: KeyState) -> None:
        if not key.erased:
            self._warn(key_id, "its key is missing from the key store " + self.keys.description)

    def _tampered(self, key_id: str) -> None:
        self._warn(key_id, "its ciphertext does not match its key (tampered with, or another store's key)")

    def _warn(self, key_id: str, why: str) -> None:
        if key_id not in self._warned and len(self._warned) < _MAX_WARNED:
            self._warned.add(key_id)
            log.warning("events sealed with %s read as erased: %s", key_id, why)
