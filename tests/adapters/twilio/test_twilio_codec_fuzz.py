"""Fuzzing the Twilio codec: nothing a peer can put on the socket makes a decoder raise anything
but ``TwilioFrameError``, and every message we can build survives a round trip."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.adapters.twilio.codec import (
    MAX_MEDIA_PAYLOAD_CHARS,
    Connected,
    Dtmf,
    DtmfInfo,
    Mark,
    MarkInfo,
    Media,
    MediaChunk,
    MediaFormat,
    OutboundClear,
    OutboundMark,
    OutboundMedia,
    Start,
    StartInfo,
    Stop,
    StopInfo,
    TwilioFrameError,
    UnknownTwilioEvent,
    decode_inbound,
    decode_outbound,
    encode_clear,
    encode_inbound,
    encode_mark,
    encode_media,
    parse_int,
)

STREAM = "MZ" + "0123456789abcdef" * 2
PAYLOAD = base64.b64encode(bytes(range(160))).decode()
REAL_MESSAGES: list[Any] = [
    Connected(),
    Start(
        sequence_number="1",
        stream_sid=STREAM,
        start=StartInfo(
            stream_sid=STREAM,
            account_sid="AC" + "0" * 32,
            call_sid="CA" + "1" * 32,
            tracks=["inbound"],
            custom_parameters={"From": "+15550001111", "To": "+15550002222"},
            media_format=MediaFormat(),
        ),
    ),
    Media(sequence_number="2", stream_sid=STREAM, media=MediaChunk(chunk="1", timestamp="0", payload=PAYLOAD)),
    Mark(sequence_number="3", stream_sid=STREAM, mark=MarkInfo(name="m-1")),
    Dtmf(sequence_number="4", stream_sid=STREAM, dtmf=DtmfInfo(digit="7")),
    Stop(sequence_number="5", stream_sid=STREAM, stop=StopInfo(account_sid="AC", call_sid="CA")),
]


EVENT_NAMES = ["connected", "start", "media", "mark", "dtmf", "stop", "clear", "transcription", ""]
FIELD_NAMES = [
    "event", "sequenceNumber", "streamSid", "start", "media", "mark", "dtmf", "stop", "protocol",
    "version", "accountSid", "callSid", "tracks", "customParameters", "mediaFormat", "encoding",
    "sampleRate", "channels", "track", "chunk", "timestamp", "payload", "name", "digit",
]  # fmt: skip

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(EVENT_NAMES)
)
json_keys = st.sampled_from(FIELD_NAMES) | st.text(max_size=6)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=5),
    max_leaves=25,
)
plausible_frames = st.builds(
    lambda event, body: {**body, "event": event},
    st.sampled_from(EVENT_NAMES) | st.text(max_size=8) | st.integers(),
    st.dictionaries(json_keys, json_values, max_size=7),
)


def _valid_frames() -> list[dict[str, Any]]:
    frames = [json.loads(encode_inbound(message)) for message in REAL_MESSAGES]
    frames += [json.loads(encode_media(STREAM, PAYLOAD)), json.loads(encode_mark(STREAM, "m"))]
    frames += [json.loads(encode_clear(STREAM))]
    return frames


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += _paths(child, (*prefix, index))
    return found


@st.composite
def mutated_frames(draw: st.DrawFn) -> Any:
    """A real frame with one value replaced (by any JSON) or one key deleted."""
    frame = draw(st.sampled_from(_valid_frames()))
    path = draw(st.sampled_from(_paths(frame)))
    parent = frame
    for step in path[:-1]:
        parent = parent[step]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(json_values)
    return frame


def _check_inbound(data: str | bytes) -> None:
    try:
        result = decode_inbound(data)
    except TwilioFrameError as exc:
        assert str(exc)
        return
    assert isinstance(result, Connected | Start | Media | Mark | Dtmf | Stop | UnknownTwilioEvent)


def _check_outbound(data: str | bytes) -> None:
    try:
        result = decode_outbound(data)
    except TwilioFrameError as exc:
        assert str(exc)
        return
    assert isinstance(result, OutboundMedia | OutboundMark | OutboundClear)


@given(st.text())
def test_fuzz_decoders_with_text(text: str) -> None:
    _check_inbound(text)
    _check_outbound(text)


@given(st.binary())
def test_fuzz_decoders_with_bytes(data: bytes) -> None:
    _check_inbound(data)
    _check_outbound(data)


@settings(max_examples=300)
@given(json_values)
def test_fuzz_decoders_with_any_json(value: Any) -> None:
    _check_inbound(json.dumps(value))
    _check_outbound(json.dumps(value).encode())


@settings(max_examples=500)
@given(plausible_frames)
def test_fuzz_decoders_with_plausible_frames(frame: dict[str, Any]) -> None:
    _check_inbound(json.dumps(frame))
    _check_outbound(json.dumps(frame))


@settings(max_examples=500)
@given(mutated_frames())
def test_fuzz_decoders_with_mutated_real_frames(frame: Any) -> None:
    text = json.dumps(frame)
    _check_inbound(text)
    _check_outbound(text)


@given(
    st.builds(
        Media,
        sequence_number=st.text(),
        stream_sid=st.text(),
        media=st.builds(
            MediaChunk,
            track=st.text(),
            chunk=st.text(),
            timestamp=st.text(),
            payload=st.text(max_size=MAX_MEDIA_PAYLOAD_CHARS),
        ),
    )
    | st.builds(
        Start,
        sequence_number=st.text(),
        stream_sid=st.text(),
        start=st.builds(
            StartInfo,
            stream_sid=st.text(),
            custom_parameters=st.dictionaries(st.text(), st.text(), max_size=4),
            tracks=st.lists(st.text(), max_size=3),
            media_format=st.none() | st.builds(MediaFormat, sample_rate=st.integers(0, 48000)),
        ),
    )
    | st.builds(Dtmf, sequence_number=st.text(), stream_sid=st.text(), dtmf=st.builds(DtmfInfo, digit=st.text()))
)
def test_any_inbound_message_round_trips(message: Any) -> None:
    assert decode_inbound(encode_inbound(message)) == message


@settings(max_examples=500)
@given(st.one_of(st.text(max_size=22), st.from_regex(r"-?[0-9]{1,20}", fullmatch=True)))
def test_parse_int_takes_exactly_an_optional_minus_and_1_to_18_ascii_digits(text: str) -> None:
    plain = re.fullmatch(r"-?[0-9]{1,18}", text) is not None
    assert parse_int(text, -7) == (int(text) if plain else -7)
