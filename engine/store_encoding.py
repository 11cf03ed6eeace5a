"""An event in its plain stored form, made when it is recorded and sealed when its batch is written.

Why apart from ``engine/store.py``: encoding is the writer's first step and happens in the caller's
thread (``EventWriter.record``, in the trio loop), sealing and inserting later in the writer's thread.
Encoding early keeps one bad event from failing a whole batch of good ones. An audio chunk's payload is
kept out of its JSON and sealed around it (``Sealer.seal_apart``): the stored bytes are those of sealing
the whole event, without msgspec writing 4 KB of base64 into JSON only for sealing to read it back.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from callbridge.engine.crypto import Sealer, sealed_payload_field
from callbridge.engine.events import Event, encode_event


class EncodedEvent(NamedTuple):
    """An event already in its plain stored form (see :func:`encode_for_store`), sealed as it is written."""

    call_id: str
    topic: str
    state: bytes
    """Its JSON; with ``payload``, the JSON with ``""`` in place of that field."""
    payload: bytes | None = None
    """An audio chunk's sealed ``bytes`` kept apart (``crypto.sealed_payload_field``), or None."""

    @property
    def size(self) -> int:
        """About the bytes it stands for, once written (its payload as base64)."""
        return len(self.state) + (len(self.payload) * 4 // 3 if self.payload is not None else 0)

    def sealed(self, sealer: Sealer) -> bytes:
        """Its stored form: sealed by ``sealer``."""
        if self.payload is None:
            return sealer.seal(self.topic, self.state)
        return sealer.seal_apart(self.topic, self.call_id, self.state, self.payload)


class EventEncodingError(ValueError):
    """An event cannot be stored (not an ``Event``, empty ``call_id``, unencodable field)."""


def encode_for_store(event: Event) -> EncodedEvent:
    """Encode one event, or raise :class:`EventEncodingError` saying why it cannot be stored.

    Encoding early (when the event is recorded, not when its batch is written) keeps one bad event
    from failing a whole batch of good ones. An audio chunk's payload is kept apart, not written into
    the JSON as base64 that sealing would read back (``Sealer.seal_apart``).
    """
    if not isinstance(event, Event):
        raise EventEncodingError(f"only engine.events.Event can be stored, got {type(event).__name__}")
    kind = type(event).__name__
    if not event.call_id:
        raise EventEncodingError(f"{kind} has an empty call_id")
    try:
        field = sealed_payload_field(kind)
        if field is not None and (payload := getattr(event, field)):
            topic, state = encode_event(msgspec.structs.replace(event, **{field: b""}))
            return EncodedEvent(event.call_id, topic, state, bytes(payload))
        topic, state = encode_event(event)
    except (TypeError, ValueError, msgspec.MsgspecError) as exc:
        raise EventEncodingError(f"cannot encode {kind} of call {event.call_id!r}: {exc}") from exc
    return EncodedEvent(event.call_id, topic, state)
