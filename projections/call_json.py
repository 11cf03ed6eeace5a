"""One stored call as JSON (``callbridge replay --json``), written as its rows are read.

The output is ``event_json.write_json(store.read_call(call_id), out)`` byte for byte
(``tests/projections/test_call_json.py``), made without a ``RecordedEvent`` per event or the whole
call in memory. An hour's call is 49,000 events holding 44 MB of audio, in 80 MB of rows; through
``read_call`` and ``write_json`` it took ~0.8 s and ~200 MB. Here:

- rows are read a page at a time (``EventStore.call_pages``), so memory is a page's, reused page
  after page (on a VM a fresh page of memory costs a fault, which costs more than copying it);
- an unsealed event is decoded with its topic's decoder, a sealed one opened by
  ``Sealer.open_parts`` under one ``Reading`` (the call's key looked up once, not per event, and an
  envelope like the one before read without msgspec);
- an audio chunk's sealed payload is written around, not through, msgspec: the event is encoded with
  the payload's placeholder (``""``, its last field) and the payload's base64 (pybase64, SIMD) put
  between those quotes. msgspec writes ``bytes`` as standard padded base64 too, so the bytes are the
  same; its own base64 of 4 KB cost more than everything else done for the event;
- each record is written by ``event_json.RecordWriter.record_into`` (the API's own record, ``at``
  cut out of the event's JSON) straight into one buffer that goes to ``out`` a megabyte at a time:
  at ~7 µs an event, a buffer per record copied into a ``BufferedWriter`` measured 10% slower (the
  record written here in line instead of by ``record_into`` measured the same, within the noise).

Not done: writing an unsealed state's own bytes (cut and spliced) instead of decoding and encoding
it. They are the record's only when msgspec would write them so today, which is not so for a state an
older engine wrote (another field order, a field added since with its default, ``omit_defaults``) —
and checking that (``encode(decode(state)) == state``) costs what decoding and encoding do.

An event of a class that the record shows otherwise than as stored — a hidden field (a webhook's
secret), or redaction rules in force that may change it — and one that cannot be opened are written
the general way, through ``EventStore.decode_row`` and ``RecordWriter.record``: the same warnings, the
same skipping.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, BinaryIO, NamedTuple

import msgspec

from callbridge.engine.crypto import ENVELOPE_PREFIX, Reading, Sealer, plain_decoder, sealed_payload_field
from callbridge.engine.events import Event
from callbridge.engine.privacy import SECRET_FIELDS
from callbridge.engine.store import EventStore
from callbridge.projections.event_json import RecordWriter

PAGE_SIZE = 1000
"""Rows read at a time (~1.5 MB of them for a page of audio)."""
BUFFER_SIZE = 1 << 20
"""The JSON is written to ``out`` this much at a time."""
ARRAY_START = b"[\n"
SEPARATOR = b",\n"
"""Between two records."""
ARRAY_END = b"\n]\n"


class _Kind(NamedTuple):
    """How the events of one stored topic are written, worked out once per topic."""

    direct: bool
    """Written from its row here; False: the general way (the store's ``decode_row``)."""
    decode: Callable[[bytes], Any] | None
    """Its unsealed states' decoder (``engine.crypto.plain_decoder``); None for an older version."""
    payload: Callable[[Any], bytes] | None
    """The getter of its one sealed field when that is ``bytes`` and its last: written around."""


_GENERAL = _Kind(False, None, None)


def _kind(topic: str, sealer: Sealer) -> _Kind:
    name = topic.partition("@")[0]
    cls = Event.registry.get(name)
    if cls is None or name in SECRET_FIELDS or not sealer.shows_as_stored(name):
        return _GENERAL
    try:
        decoder = plain_decoder(topic)
    except ValueError:  # not a version number: the store says so and skips its events
        return _GENERAL
    around = sealed_payload_field(name)
    return _Kind(
        True,
        decoder.decode if decoder is not None else None,
        attrgetter(around) if around is not None else None,
    )


def write_call_json(store: EventStore, call_id: str, out: BinaryIO, *, page_size: int = PAGE_SIZE) -> int:
    """Write the call's events to ``out`` as a JSON array, one event per line (``event_json.write_json``'s
    bytes), and return how many were written: none (0) writes nothing."""
    written = write_records(store, call_id, out, page_size=page_size)
    if written:
        out.write(ARRAY_END)
    return written


def write_records(
    store: EventStore,
    call_id: str,
    out: BinaryIO,
    *,
    page_size: int = PAGE_SIZE,
    first: bytes = ARRAY_START,
    after_version: int = -1,
    through_version: int | None = None,
) -> int:
    """The records of the call's events with versions in (``after_version``, ``through_version``], each
    after a separator — ``first`` before the first, :data:`SEPARATOR` before each other — without the
    array's end; returns how many were written (a part of :func:`write_call_json`'s bytes)."""
    general = RecordWriter()
    record_into = general.record_into
    reading = Reading()
    sealer = store.sealer
    open_parts = sealer.open_parts
    replace, asdict = msgspec.structs.replace, msgspec.structs.asdict
    kinds: dict[str, _Kind] = {}
    buffer = bytearray()
    separator = first
    written = 0
    for page in store.call_pages(call_id, page_size, after_version=after_version, through_version=through_version):
        for position, version, topic, state in page:
            kind = kinds.get(topic) or kinds.setdefault(topic, _kind(topic, sealer))
            payload = None
            erased = False
            try:
                if not kind.direct:
                    event = None
                elif kind.decode is not None and not state.startswith(ENVELOPE_PREFIX):
                    event = kind.decode(state)
                else:
                    event, values, erased = open_parts(topic, state, reading)
                    if values is not None:
                        around = kind.payload
                        if around is not None and around(event) == b"":
                            payload = around(values)
                        else:
                            event = replace(event, **asdict(values))
            except Exception:  # undecodable: the store says so (once) and skips it
                event = None
            if event is None or event.call_id != call_id:
                recorded = store.decode_row(position, version, topic, state, reading=reading)
                if recorded is not None:
                    buffer += separator
                    buffer += general.record(recorded)
                    separator = SEPARATOR
                    written += 1
                continue
            buffer += separator
            separator = SEPARATOR
            record_into(buffer, position, event, erased, payload)
            written += 1
            if len(buffer) >= BUFFER_SIZE:
                out.write(buffer)
                buffer = bytearray()
    if buffer:
        out.write(buffer)
    return written
