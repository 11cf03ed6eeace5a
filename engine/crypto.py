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

import logging
import os
from typing import Any, NamedTuple

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from callbridge.engine.events import Event, decode_event, upcast
from callbridge.engine.keys import KeyRing, KeyState
from callbridge.engine.privacy import field_placeholder, key_id_for, sensitive_fields
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


def is_sealed(state: bytes) -> bool:
    return state.startswith(ENVELOPE_PREFIX)


class _Kind(NamedTuple):
    """What opening an event of one stored topic needs, worked out once per topic."""

    name: str
    decoder: msgspec.json.Decoder[Any] | None
    """Today's version's decoder; None for an older version (upcast on the way)."""
    fields: tuple[str, ...]
    """Its sensitive fields."""


_kinds: dict[str, _Kind] = {}


def _kind(topic: str) -> _Kind:
    """Raises ``KeyError`` for an unknown event name, as ``decode_event`` does."""
    name, _, version_text = topic.partition("@")
    cls = Event.registry[name]
    current = int(version_text or 1) == cls.schema_version
    kind = _kinds[topic] = _Kind(name, msgspec.json.Decoder(cls) if current else None, sensitive_fields(name))
    return kind


_CIPHERTEXT_KEY = b'"c":"'
_envelope_only = msgspec.json.Decoder(Envelope)


def _split(state: bytes) -> tuple[Envelope, bytes] | None:
    """A sealed state as :meth:`Sealer.seal` writes it — ``{"_sealed":{…,"c":"…"},<clear fields>}`` —
    cut in two: its envelope, and its clear fields as their own JSON object; so the ciphertext's
    base64 (most of an audio chunk) is read once, not skipped over again by the event's decoder.
    None for any other layout (read by ``Sealer._open_sealed``). ``"c":"`` cannot occur in the key
    id before it (a quote inside a JSON string is escaped), nor a quote inside the base64."""
    start = state.find(_CIPHERTEXT_KEY, len(ENVELOPE_PREFIX))
    if start < 0:
        return None
    end = state.find(b'"', start + len(_CIPHERTEXT_KEY))
    close = state.find(b"},", end) if end >= 0 else -1
    if close < 0:
        return None
    try:
        envelope = _envelope_only.decode(state[len(ENVELOPE_PREFIX) : close + 1])
    except msgspec.DecodeError:
        return None
    return envelope, b"{" + state[close + 2 :]


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

    # --- out of the store --------------------------------------------------------------------------

    def open(self, topic: str, state: bytes, *, shown: bool = True) -> Opened:
        """The event as recorded — redacted when rules are in force, unless ``shown`` is false — or with
        placeholders when its key is gone. Raises like ``decode_event`` for what cannot be decoded."""
        kind = _kinds.get(topic) or _kind(topic)
        if not state.startswith(ENVELOPE_PREFIX):
            event = kind.decoder.decode(state) if kind.decoder is not None else decode_event(topic, state)
            return Opened(self._shown(event) if shown else event, False)
        split = _split(state) if kind.decoder is not None else None
        if split is None:
            return self._open_sealed(topic, state, shown=shown)
        envelope, clear = split
        if envelope.c is None or envelope.n is None:
            return Opened(kind.decoder.decode(clear), True)  # type: ignore[union-attr]
        key = self.keys.for_reading(envelope.k)
        if key.key is None:
            return self._open_sealed(topic, state, shown=shown)  # warns, reads as erased
        try:
            secret = _cipher(key).decrypt(envelope.n, envelope.c, _aad(topic, envelope.k))
        except InvalidTag:
            return self._open_sealed(topic, state, shown=shown)  # warns, reads as erased
        values = _secret_decoder(kind.name).decode(secret)
        event = kind.decoder.decode(clear)  # type: ignore[union-attr]
        opened = msgspec.structs.replace(event, **{field: getattr(values, field) for field in kind.fields})
        return Opened(self._shown(opened) if shown else opened, False)

    def _open_sealed(self, topic: str, state: bytes, *, shown: bool) -> Opened:
        """:meth:`open` for any sealed layout and version, by decoding the whole state twice."""
        envelope = _envelope_decoder.decode(state).sealed
        name, _, version_text = topic.partition("@")
        cls = Event.registry[name]
        if envelope is None or envelope.c is None or envelope.n is None:
            return Opened(decode_event(topic, state), True)
        key = self.keys.for_reading(envelope.k)
        if key.key is None:
            if not key.erased:
                self._warn(envelope.k, "its key is missing from the key store " + self.keys.description)
            return Opened(decode_event(topic, state), True)
        try:
            secret = _cipher(key).decrypt(envelope.n, envelope.c, _aad(topic, envelope.k))
        except InvalidTag:
            self._warn(envelope.k, "its ciphertext does not match its key (tampered with, or another store's key)")
            return Opened(decode_event(topic, state), True)
        if int(version_text or 1) == cls.schema_version:
            values = _secret_decoder(name).decode(secret)
            event = decode_event(topic, state)
            opened = msgspec.structs.replace(
                event, **{field: getattr(values, field) for field in sensitive_fields(name)}
            )
        else:  # an older version: merge, then upcast as a whole
            payload = msgspec.json.decode(state)
            payload.pop("_sealed", None)
            payload.update(msgspec.msgpack.decode(secret))
            opened = msgspec.convert(upcast(name, int(version_text or 1), payload), cls)
        return Opened(self._shown(opened) if shown else opened, False)

    def clear(self, topic: str, state: bytes) -> Event:
        """The event with its sealed fields left sealed (their placeholders), redacted when rules are in
        force: for a reader that never reads them (a view that folds audio chunks by their times), no
        key is looked up and nothing is decrypted. Raises like ``decode_event``."""
        return self._shown(decode_event(topic, state))

    def _shown(self, event: Event) -> Event:
        return self.redaction.event(event) if self._masks else event

    def _warn(self, key_id: str, why: str) -> None:
        if key_id not in self._warned and len(self._warned) < _MAX_WARNED:
            self._warned.add(key_id)
            log.warning("events sealed with %s read as erased: %s", key_id, why)
