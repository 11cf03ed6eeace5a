"""The Twilio Media Streams codec: what Twilio sends decodes, what we send encodes, and nothing a
peer can put on the socket makes the decoders raise anything but ``TwilioFrameError``."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

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
    OutboundMediaPayload,
    Start,
    StartInfo,
    Stop,
    StopInfo,
    TwilioFrameError,
    UnknownTwilioEvent,
    decode_inbound,
    decode_outbound,
    decode_payload,
    encode_clear,
    encode_inbound,
    encode_mark,
    encode_media,
    parse_int,
)

STREAM = "MZ" + "0123456789abcdef" * 2
CALL = "CA" + "fedcba9876543210" * 2
ACCOUNT = "AC" + "00112233445566778899aabbccddeeff"
PAYLOAD = base64.b64encode(bytes(range(160))).decode()

# Shapes of the real 2020 trace (twilio/media-streams node/connect-basic/output.txt): `connected`
# has neither sequenceNumber nor streamSid, and the streamSid was a UUID, not MZ + 32 hex.
TRACE_SID = "9e7ee906-377b-408f-a852-eebfb834422a"
TRACE: list[dict[str, Any]] = [
    {"event": "connected", "protocol": "Call", "version": "1.0.0"},
    {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": "AC18fbd524d33614fba208030751dffdca",
            "streamSid": TRACE_SID,
            "callSid": "CA3c95a2a6bba5fde93a5dea01e388e8fb",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"aCutomParameter": "aCustomValue that was set in TwiML"},
        },
        "streamSid": TRACE_SID,
    },
    {
        "event": "media",
        "sequenceNumber": "2",
        "media": {"track": "inbound", "chunk": "1", "timestamp": "52", "payload": PAYLOAD},
        "streamSid": TRACE_SID,
    },
    {"event": "mark", "sequenceNumber": "103", "streamSid": TRACE_SID, "mark": {"name": "Repeat message 0"}},
]


def sample_inbound() -> list[Any]:
    return [
        Connected(),
        Start(
            sequence_number="1",
            stream_sid=STREAM,
            start=StartInfo(
                stream_sid=STREAM,
                account_sid=ACCOUNT,
                call_sid=CALL,
                tracks=["inbound"],
                custom_parameters={"From": "+15550001111", "To": "+15550002222", "CallSid": CALL},
                media_format=MediaFormat(),
            ),
        ),
        Media(
            sequence_number="2",
            stream_sid=STREAM,
            media=MediaChunk(chunk="1", timestamp="0", payload=PAYLOAD),
        ),
        Mark(sequence_number="3", stream_sid=STREAM, mark=MarkInfo(name="m-1")),
        Dtmf(sequence_number="4", stream_sid=STREAM, dtmf=DtmfInfo(digit="7")),
        Stop(sequence_number="5", stream_sid=STREAM, stop=StopInfo(account_sid=ACCOUNT, call_sid=CALL)),
    ]


# --- decoding what Twilio sends ----------------------------------------------------------------


@pytest.mark.parametrize("message", sample_inbound(), ids=lambda m: type(m).__name__)
def test_every_inbound_message_round_trips(message: Any) -> None:
    text = encode_inbound(message)
    assert json.loads(text)["event"] == type(message).__struct_config__.tag
    assert decode_inbound(text) == message
    assert decode_inbound(text.encode()) == message


def test_wire_names_are_camel_case_and_counters_are_strings() -> None:
    start, media = sample_inbound()[1:3]
    start_json = json.loads(encode_inbound(start))
    assert start_json["sequenceNumber"] == "1"
    assert start_json["start"]["customParameters"]["From"] == "+15550001111"
    assert start_json["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    media_json = json.loads(encode_inbound(media))
    assert media_json["media"] == {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": PAYLOAD}


def test_connected_frame_has_no_sequence_number() -> None:
    assert json.loads(encode_inbound(Connected())) == {
        "event": "connected",
        "protocol": "Call",
        "version": "1.0.0",
    }


def test_real_trace_shapes_decode() -> None:
    connected, start, media, mark = (decode_inbound(json.dumps(frame)) for frame in TRACE)
    assert connected == Connected(protocol="Call", version="1.0.0")
    assert isinstance(start, Start)
    assert start.stream_sid == TRACE_SID  # a UUID: SIDs are not validated
    assert start.start.call_sid == "CA3c95a2a6bba5fde93a5dea01e388e8fb"
    assert start.start.custom_parameters == {"aCutomParameter": "aCustomValue that was set in TwiML"}
    assert start.start.media_format == MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1)
    assert isinstance(media, Media)
    assert (media.sequence_number, media.media.chunk, media.media.timestamp) == ("2", "1", "52")
    assert len(decode_payload(media.media.payload)) == 160
    assert isinstance(mark, Mark) and mark.mark.name == "Repeat message 0"


def test_start_tolerates_absent_optional_parts() -> None:
    frame = {"event": "start", "sequenceNumber": "1", "streamSid": "s", "start": {"streamSid": "s"}}
    start = decode_inbound(json.dumps(frame))
    assert isinstance(start, Start)
    assert start.start.custom_parameters == {}
    assert start.start.tracks == []
    assert start.start.media_format is None


def test_unknown_fields_are_ignored() -> None:
    frame: dict[str, Any] = {**TRACE[2], "extra": {"new": 1}}
    frame["media"] = {**frame["media"], "futureField": True}
    assert isinstance(decode_inbound(json.dumps(frame)), Media)


def test_unknown_event_is_returned_not_raised() -> None:
    raw = '{"event":"transcription","sequenceNumber":"9","streamSid":"s","text":"hi"}'
    assert decode_inbound(raw) == UnknownTwilioEvent(event="transcription", raw=raw)
    assert decode_inbound(raw.encode()) == UnknownTwilioEvent(event="transcription", raw=raw)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (
            '{"event":"media","sequenceNumber":"2","streamSid":"s","media":{"chunk":"1","timestamp":"0"}}',
            "media frame missing field `media.payload`",
        ),
        ('{"event":"start","sequenceNumber":"1","streamSid":"s"}', "start frame missing field `start`"),
        (
            '{"event":"media","sequenceNumber":2,"streamSid":"s","media":{}}',
            "media frame: expected `str`, got `int` at `sequenceNumber`",
        ),
        (
            '{"event":"media","sequenceNumber":"2","streamSid":"s","media":[]}',
            "media frame: expected `object`, got `array` at `media`",
        ),
        (
            '{"event":"start","sequenceNumber":"1","streamSid":"s",'
            '"start":{"streamSid":"s","mediaFormat":{"sampleRate":"8000"}}}',
            "start frame: expected `int`, got `str` at `start.mediaFormat.sampleRate`",
        ),
        ('{"event":"mark","sequenceNumber":"3","streamSid":"s","mark":{}}', "mark frame missing field `mark.name`"),
        ('{"sequenceNumber":"3"}', "inbound frame has no `event` field"),
        ('{"event":5}', "inbound frame: `event` must be a string"),
        ('["media"]', "inbound frame is not a JSON object: expected `object`, got `array`"),
        ('"media"', "inbound frame is not a JSON object: expected `object`, got `str`"),
        ('{"event":"media",', "inbound frame is not valid JSON"),
        (b"\xff\xfe{}", "inbound frame is not valid JSON"),
        ("", "inbound frame is not valid JSON"),
        ('{"event":"media","event":"stop","sequenceNumber":"1"}', "stop frame has more than one `event` value"),
    ],
)
def test_broken_frames_say_what_is_wrong(frame: str | bytes, message: str) -> None:
    with pytest.raises(TwilioFrameError) as caught:
        decode_inbound(frame)
    assert str(caught.value).startswith(message)


def test_a_media_payload_longer_than_twilio_sends_is_an_error_naming_the_limit() -> None:
    def media(payload: str) -> str:
        chunk = {"chunk": "1", "timestamp": "0", "payload": payload}
        return json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": "s", "media": chunk})

    assert MAX_MEDIA_PAYLOAD_CHARS == 432  # two 20 ms Twilio frames (216 base64 characters each)
    assert isinstance(decode_inbound(media("/" * MAX_MEDIA_PAYLOAD_CHARS)), Media)
    with pytest.raises(TwilioFrameError) as caught:
        decode_inbound(media("/" * (MAX_MEDIA_PAYLOAD_CHARS + 1)))
    assert (
        str(caught.value)
        == "media frame: `media.payload` is longer than 432 characters (Twilio sends 216: 20 ms of audio)"
    )
    # what the server sends is not limited: the model's audio goes out in bigger chunks
    assert decode_outbound(encode_media("s", "/" * 10_000)) == OutboundMedia(
        stream_sid="s", media=OutboundMediaPayload(payload="/" * 10_000)
    )


def test_deeply_nested_frame_is_a_frame_error() -> None:
    deep = '{"event":"media","junk":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(TwilioFrameError, match="nested too deeply"):
        decode_inbound(deep)
    with pytest.raises(TwilioFrameError, match="nested too deeply"):
        decode_outbound(deep)


def test_text_with_lone_surrogate_is_a_frame_error() -> None:
    with pytest.raises(TwilioFrameError, match="not valid UTF-8"):
        decode_inbound('{"event":"\ud800"}')
    with pytest.raises(TwilioFrameError, match="not valid UTF-8"):
        decode_outbound('{"event":"\ud800"}')


# --- what the server sends to Twilio -----------------------------------------------------------


def test_outbound_encoders_produce_twilio_shapes() -> None:
    assert json.loads(encode_media(STREAM, PAYLOAD)) == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": PAYLOAD},
    }
    assert json.loads(encode_mark(STREAM, "item_1:3")) == {
        "event": "mark",
        "streamSid": STREAM,
        "mark": {"name": "item_1:3"},
    }
    assert json.loads(encode_clear(STREAM)) == {"event": "clear", "streamSid": STREAM}


def test_outbound_encoders_escape_whatever_they_are_given() -> None:
    odd = 'a"b\\c\n\u00e9'
    assert json.loads(encode_mark(odd, odd))["mark"]["name"] == odd
    assert json.loads(encode_media(odd, odd))["streamSid"] == odd


def test_outbound_round_trips() -> None:
    assert decode_outbound(encode_media(STREAM, PAYLOAD)) == OutboundMedia(
        stream_sid=STREAM, media=OutboundMediaPayload(payload=PAYLOAD)
    )
    assert decode_outbound(encode_mark(STREAM, "m")) == OutboundMark(stream_sid=STREAM, mark=MarkInfo(name="m"))
    assert decode_outbound(encode_clear(STREAM).encode()) == OutboundClear(stream_sid=STREAM)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ('{"event":"start","streamSid":"s"}', "outbound frame has unknown event 'start'"),
        ('{"event":"media","streamSid":"s","media":{}}', "media frame missing field `media.payload`"),
        ('{"event":"clear"}', "clear frame missing field `streamSid`"),
        ('{"streamSid":"s"}', "outbound frame has no `event` field"),
        ("not json", "outbound frame is not valid JSON"),
    ],
)
def test_broken_outbound_frames_say_what_is_wrong(frame: str, message: str) -> None:
    with pytest.raises(TwilioFrameError) as caught:
        decode_outbound(frame)
    assert str(caught.value).startswith(message)


# --- wire-string helpers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("0", 0),
        ("103", 103),
        ("-5", -5),
        ("", -1),
        ("1.5", -1),
        (" 1", -1),
        ("1_000", -1),
        ("\u0661", -1),
        ("9" * 19, -1),
        ("abc", -1),
    ],
)
def test_parse_int_never_raises(text: str, expected: int) -> None:
    assert parse_int(text, -1) == expected


def test_decode_payload() -> None:
    assert decode_payload(PAYLOAD) == bytes(range(160))
    for bad in ("@@@@", "abc", "é"):
        with pytest.raises(TwilioFrameError, match="base64"):
            decode_payload(bad)
