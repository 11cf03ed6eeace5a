"""Twilio Media Streams wire format, sans-IO: JSON text frames in, typed messages out (and back).

Every frame on the ``/call`` WebSocket is a JSON object keyed by ``event`` (docs/protocols.md A2-A4).
This module turns frames into msgspec structs and structs into frames; it never touches a socket,
so the bridge, the simulated caller and the tests share one definition of the protocol.

Rules the bridge relies on:

- ``decode_inbound`` raises only ``TwilioFrameError``: a malformed frame is the caller's problem to
  record, never a crash. A well-formed frame with an event name we do not know comes back as
  ``UnknownTwilioEvent`` (Twilio adds events; the call must go on).
- ``sequenceNumber``, ``chunk``, ``timestamp`` and ``digit`` are strings on the wire and stay strings
  here; ``parse_int`` converts them without ever raising.
- Unknown fields are ignored (providers add fields); missing required ones are errors.
- An inbound ``media.payload`` longer than :data:`MAX_MEDIA_PAYLOAD_CHARS` is an error naming the
  limit: Twilio sends 20 ms frames (160 μ-law bytes, 216 base64 characters), so anything much
  bigger is not Twilio, and every byte of it would be stored and sent to the model.

The media path is hot (50 frames/s per call), so decoders and encoders are built once at import.
"""

from __future__ import annotations

import binascii
import re
from typing import Annotated, Final

import msgspec
from msgspec import Struct

# --- Twilio -> server --------------------------------------------------------------------------

TWILIO_PAYLOAD_CHARS: Final = 216
"""A Twilio ``media.payload``: 20 ms of 8 kHz μ-law, 160 bytes, in base64."""
MAX_MEDIA_PAYLOAD_CHARS: Final = 2 * TWILIO_PAYLOAD_CHARS
"""The longest inbound ``media.payload`` accepted: two Twilio frames' worth, for slack."""


class MediaFormat(Struct, rename="camel", kw_only=True):
    encoding: str = "audio/x-mulaw"
    sample_rate: int = 8000
    channels: int = 1


class StartInfo(Struct, rename="camel", kw_only=True):
    stream_sid: str
    account_sid: str = ""
    call_sid: str = ""
    tracks: list[str] = []
    custom_parameters: dict[str, str] = {}
    media_format: MediaFormat | None = None


class _Inbound(Struct, tag_field="event", rename="camel", kw_only=True):
    """Base of every frame Twilio sends; the ``event`` field selects the class."""


class Connected(_Inbound, tag="connected", kw_only=True):
    """First frame; the only one without ``sequenceNumber`` and ``streamSid``."""

    protocol: str = "Call"
    version: str = "1.0.0"


class Start(_Inbound, tag="start", kw_only=True):
    sequence_number: str
    stream_sid: str
    start: StartInfo


class MediaChunk(Struct, rename="camel", kw_only=True):
    track: str = "inbound"
    chunk: str
    timestamp: str
    payload: Annotated[str, msgspec.Meta(max_length=MAX_MEDIA_PAYLOAD_CHARS)]


class Media(_Inbound, tag="media", kw_only=True):
    sequence_number: str
    stream_sid: str
    media: MediaChunk


class MarkInfo(Struct, kw_only=True):
    name: str


class Mark(_Inbound, tag="mark", kw_only=True):
    sequence_number: str
    stream_sid: str
    mark: MarkInfo


class DtmfInfo(Struct, kw_only=True):
    track: str = "inbound_track"
    digit: str


class Dtmf(_Inbound, tag="dtmf", kw_only=True):
    sequence_number: str
    stream_sid: str
    dtmf: DtmfInfo


class StopInfo(Struct, rename="camel", kw_only=True):
    account_sid: str = ""
    call_sid: str = ""


class Stop(_Inbound, tag="stop", kw_only=True):
    sequence_number: str
    stream_sid: str
    stop: StopInfo


TwilioInbound = Connected | Start | Media | Mark | Dtmf | Stop


class UnknownTwilioEvent(Struct, frozen=True):
    """A well-formed frame whose ``event`` this code does not know; ``raw`` is the frame's text."""

    event: str
    raw: str


class TwilioFrameError(ValueError):
    """A frame that cannot be understood: bad JSON, no ``event``, or a known event with a broken body."""


# --- server -> Twilio --------------------------------------------------------------------------


class _Outbound(Struct, tag_field="event", rename="camel", kw_only=True):
    """Base of every frame the server sends to Twilio."""


class OutboundMediaPayload(Struct, kw_only=True):
    payload: str


class OutboundMedia(_Outbound, tag="media", kw_only=True):
    stream_sid: str
    media: OutboundMediaPayload


class OutboundMark(_Outbound, tag="mark", kw_only=True):
    stream_sid: str
    mark: MarkInfo


class OutboundClear(_Outbound, tag="clear", kw_only=True):
    stream_sid: str


TwilioOutbound = OutboundMedia | OutboundMark | OutboundClear


# --- decoding ----------------------------------------------------------------------------------


class _Envelope(Struct):
    """Just enough of a frame to learn its tag when the full decode failed."""

    event: str


_INBOUND_DECODER: Final = msgspec.json.Decoder(TwilioInbound)
_OUTBOUND_DECODER: Final = msgspec.json.Decoder(TwilioOutbound)
_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_INBOUND_EVENTS: Final = frozenset({"connected", "start", "media", "mark", "dtmf", "stop"})
_OUTBOUND_EVENTS: Final = frozenset({"media", "mark", "clear"})

_MISSING = re.compile(r"Object missing required field `(?P<field>[^`]*)`(?: - at `\$(?P<path>[^`]*)`)?")
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


def _describe(event: str, error: msgspec.ValidationError) -> str:
    """Turn msgspec's message into one that names the frame and the field (``media.payload``)."""
    text = str(error)
    missing = _MISSING.match(text)
    if missing:
        path = (missing["path"] or "").lstrip(".")
        field = f"{path}.{missing['field']}" if path else missing["field"]
        return f"{event} frame missing field `{field}`"
    if text.startswith(f"Expected `str` of length <= {MAX_MEDIA_PAYLOAD_CHARS}") and text.endswith("`$.media.payload`"):
        return (
            f"{event} frame: `media.payload` is longer than {MAX_MEDIA_PAYLOAD_CHARS} characters "
            f"(Twilio sends {TWILIO_PAYLOAD_CHARS}: 20 ms of audio)"
        )
    found = _AT.match(text)
    assert found is not None  # the pattern matches any text
    what = found["what"][:1].lower() + found["what"][1:]
    path = (found["path"] or "").lstrip(".")
    if path == "event":  # only reachable with duplicate `event` keys that disagree
        return f"{event} frame has more than one `event` value"
    return f"{event} frame: {what} at `{path}`" if path else f"{event} frame: {what}"


def _diagnose(
    data: str | bytes, error: msgspec.ValidationError, known: frozenset[str], direction: str
) -> TwilioFrameError | UnknownTwilioEvent:
    """Explain a frame that failed the typed decode: either it is broken (an error naming what is
    wrong) or it is well-formed with an event name outside ``known``."""
    try:
        envelope = _ENVELOPE_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if "missing required field `event`" in text:
            return TwilioFrameError(f"{direction} frame has no `event` field")
        if "at `$.event`" in text:
            return TwilioFrameError(f"{direction} frame: `event` must be a string")
        return TwilioFrameError(f"{direction} frame is not a JSON object: {text[:1].lower()}{text[1:]}")
    except msgspec.DecodeError as exc:  # not reached in practice: the typed decode saw valid JSON
        return TwilioFrameError(f"{direction} frame is not valid JSON: {exc}")
    except RecursionError:
        return TwilioFrameError(f"{direction} frame is nested too deeply")
    if envelope.event in known:
        return TwilioFrameError(_describe(envelope.event, error))
    return UnknownTwilioEvent(event=envelope.event, raw=_text(data))


def _undecodable(exc: Exception, direction: str) -> TwilioFrameError:
    """The error for a frame that is not even JSON (or too deep to parse)."""
    if isinstance(exc, RecursionError):
        return TwilioFrameError(f"{direction} frame is nested too deeply")
    if isinstance(exc, UnicodeError):
        return TwilioFrameError(f"{direction} frame is not valid UTF-8 text: {exc}")
    return TwilioFrameError(f"{direction} frame is not valid JSON: {exc}")


def decode_inbound(data: str | bytes) -> TwilioInbound | UnknownTwilioEvent:
    """Decode one frame from Twilio. Raises only ``TwilioFrameError``."""
    try:
        message: TwilioInbound = _INBOUND_DECODER.decode(data)
        return message
    except msgspec.ValidationError as exc:
        result = _diagnose(data, exc, _INBOUND_EVENTS, "inbound")
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise _undecodable(exc, "inbound") from None
    if isinstance(result, TwilioFrameError):
        raise result
    return result


def decode_outbound(data: str | bytes) -> TwilioOutbound:
    """Decode one frame the server sent to Twilio (the simulated caller's side). Raises only
    ``TwilioFrameError``; an unknown event is an error here, as real Twilio would not act on it."""
    try:
        message: TwilioOutbound = _OUTBOUND_DECODER.decode(data)
        return message
    except msgspec.ValidationError as exc:
        result = _diagnose(data, exc, _OUTBOUND_EVENTS, "outbound")
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        raise _undecodable(exc, "outbound") from None
    if isinstance(result, UnknownTwilioEvent):
        raise TwilioFrameError(f"outbound frame has unknown event {result.event!r}")
    raise result


def _text(data: str | bytes) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


# --- encoding ----------------------------------------------------------------------------------

_ENCODER: Final = msgspec.json.Encoder()


def encode_inbound(message: TwilioInbound) -> str:
    """The JSON text Twilio would send for ``message`` (used by the simulated caller)."""
    return _ENCODER.encode(message).decode()


def encode_outbound(message: TwilioOutbound) -> str:
    return _ENCODER.encode(message).decode()


def encode_media(stream_sid: str, payload_b64: str) -> str:
    """A ``media`` frame carrying base64 μ-law audio to the caller.

    Built by the msgspec encoder (~0.3 µs). A string template measured ~0.07 µs but would need
    both arguments checked for JSON-unsafe characters first (~0.3 µs more), and either cost is
    noise next to the ~100 µs a WebSocket send takes, so correctness won."""
    return _ENCODER.encode(
        OutboundMedia(stream_sid=stream_sid, media=OutboundMediaPayload(payload=payload_b64))
    ).decode()


def encode_mark(stream_sid: str, name: str) -> str:
    """A ``mark`` frame: Twilio echoes it once the audio queued before it has played."""
    return _ENCODER.encode(OutboundMark(stream_sid=stream_sid, mark=MarkInfo(name=name))).decode()


def encode_clear(stream_sid: str) -> str:
    """A ``clear`` frame: Twilio drops buffered audio and echoes every pending mark."""
    return _ENCODER.encode(OutboundClear(stream_sid=stream_sid)).decode()


# --- wire-string helpers -----------------------------------------------------------------------


def parse_int(text: str, default: int = 0) -> int:
    """``int(text)`` for Twilio's numeric strings (``sequenceNumber``, ``chunk``, ``timestamp``):
    an optional ``-`` and 1 to 18 ASCII digits; ``default`` for anything else, so a bad value never
    crashes a call. String methods, not a regular expression: two calls per caller frame."""
    digits = text[1:] if text[:1] == "-" else text
    if 0 < len(digits) <= 18 and digits.isascii() and digits.isdigit():
        return int(text)
    return default


def decode_payload(payload_b64: str) -> bytes:
    """The μ-law bytes of a ``media.payload``. Raises ``TwilioFrameError`` for invalid base64."""
    try:
        return binascii.a2b_base64(payload_b64, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise TwilioFrameError(f"media payload is not valid base64: {exc}") from None
