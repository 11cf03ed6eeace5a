"""Stored events as the API shows them: ``{position, type, at, data}``, as dicts and as JSON bytes.

``GET /api/calls/{call_id}/events``, the MCP tool and ``callbridge replay --json`` all show an event
this way (:func:`event_record`). ``replay --json`` prints a whole call — an hour is ~50,000 events
and 40 MB of audio — so :func:`record_json` writes the same JSON without the dict: msgspec encodes
the event itself (bytes as base64, as ``to_builtins`` gives them), and ``at`` is cut out of it and
put in front as ISO text. Each second's ISO text is formatted once (:func:`iso_micro`).
``tests/projections/test_event_json.py`` holds the two forms byte for byte equal.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec
from pybase64 import b64encode

from callbridge.engine.events import Event
from callbridge.engine.privacy import HIDDEN, SECRET_FIELDS
from callbridge.engine.store import RecordedEvent

_encoder = msgspec.json.Encoder()


def iso_micro(at: float) -> str:
    """Unix seconds as ISO 8601 UTC with microseconds, ``2026-01-01T00:00:00.040000Z``: exactly
    ``datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")`` with ``Z`` (the
    microseconds rounded half to even, as ``datetime`` does)."""
    fraction, whole = math.modf(at)
    micros = round(fraction * 1e6)
    seconds = int(whole)
    if micros >= 1_000_000:
        seconds, micros = seconds + 1, micros - 1_000_000
    elif micros < 0:
        seconds, micros = seconds - 1, micros + 1_000_000
    return f"{_second(seconds)}.{micros:06d}Z"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").removesuffix("+00:00")


def event_record(recorded: RecordedEvent) -> dict[str, Any]:
    """One stored event as the API shows it: ``{position, type, at, data}``. ``type`` is the event
    class name, ``at`` ISO 8601 UTC (microseconds), ``data`` every other field (bytes as base64).
    An event of an erased call has ``"erased": true`` (its personal fields read ``[erased]`` or empty)."""
    data: dict[str, Any] = msgspec.to_builtins(recorded.event)
    at = data.pop("at")
    for name in SECRET_FIELDS.get(type(recorded.event).__name__, ()):
        data[name] = HIDDEN  # a webhook's secret is shown once, when it is made
    record = {"position": recorded.position, "type": type(recorded.event).__name__, "at": iso_micro(at), "data": data}
    if recorded.erased:
        record["erased"] = True
    return record


_ERASED_END = b',"erased":true}'
"""How the JSON of an erased event's record ends (an event's own ends with ``}``)."""


def _type_head(name: str) -> bytes:
    """What comes between a record's ``position`` and its ISO time: ``,"type":"<name>","at":"``."""
    return b',"type":"' + name.encode() + b'","at":"'


class RecordWriter:
    """:func:`record_json`'s work, with what repeats from event to event worked out once: the
    ``"type"`` and ``"at"`` keys of each event class, the length of each call id's JSON, each
    second's ISO text. ``projections.call_json`` writes with :meth:`record_into` too."""

    def __init__(self) -> None:
        self._heads: dict[type, bytes] = {}
        self._at_starts: dict[str, int] = {}
        self._seconds: dict[float, bytes] = {}

    def record(self, recorded: RecordedEvent) -> bytes:
        if type(recorded.event).__name__ in SECRET_FIELDS:
            return _encoder.encode(event_record(recorded))
        out = bytearray()
        self.record_into(out, recorded.position, recorded.event, recorded.erased)
        return bytes(out)

    def record_into(
        self, out: bytearray, position: int, event: Event, erased: bool, payload: bytes | None = None
    ) -> None:
        """Append the record of ``event`` (of a class without secret fields) to ``out``. ``payload``:
        the value of its last field, ``bytes`` that the event holds as ``b""`` (an audio chunk opened
        apart, ``Sealer.open_parts``), written as its base64 (pybase64: the same bytes as msgspec's)."""
        kind = type(event)
        head = self._heads.get(kind) or self._heads.setdefault(kind, _type_head(kind.__name__))
        out += b'{"position":%d%s%s","data":' % (position, head, self.iso(event.at))
        start = len(out) + self._at_start(event.call_id)
        _encoder.encode_into(event, out, -1)  # {"call_id":…,"at":…,…}: Event's own fields come first
        end = out.find(b",", start + 6)  # the end of the number after ',"at":'
        del out[start : end if end >= 0 else -1]
        if payload is not None:  # the event ends with '…:""}'
            del out[-2:]
            out += b64encode(payload)
            out += b'"}'
        out += _ERASED_END if erased else b"}"

    def _at_start(self, call_id: str) -> int:
        """Where ``,"at":`` starts in the JSON of an event of ``call_id``: after ``{"call_id":`` and the id."""
        start = self._at_starts.get(call_id)
        if start is None:
            start = self._at_starts[call_id] = len(_encoder.encode(call_id)) + 11
        return start

    def iso(self, at: float) -> bytes:
        """:func:`iso_micro` as bytes, each second's text formatted once."""
        fraction, whole = math.modf(at)
        micros = round(fraction * 1e6)
        if 0 <= micros < 1_000_000:
            second = self._seconds.get(whole)
            if second is None:
                second = self._seconds[whole] = _second(int(whole)).encode()
            return b"%s.%06dZ" % (second, micros)
        return iso_micro(at).encode()


def record_json(recorded: RecordedEvent) -> bytes:
    """``event_record(recorded)`` as JSON, written without building it."""
    return RecordWriter().record(recorded)


def write_json(recorded: Iterable[RecordedEvent], out: BinaryIO) -> None:
    """The events as a JSON array, one event per line, written to ``out`` as they come."""
    record = RecordWriter().record
    first = True
    for one in recorded:
        out.write(b"[\n" if first else b",\n")
        out.write(record(one))
        first = False
    out.write(b"[]\n" if first else b"\n]\n")


def render_json(recorded: Sequence[RecordedEvent]) -> str:
    """The call's events as a JSON array, one event per line (same shape as
    ``GET /api/calls/{call_id}/events``)."""
    if not recorded:
        return "[]\n"
    record = RecordWriter().record
    return (b"[\n" + b",\n".join(record(r) for r in recorded) + b"\n]\n").decode()
