"""The voice webhook's TwiML: a bidirectional ``<Connect><Stream>`` whose parameters survive any
characters, and the parser the simulated caller reads it back with."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callbridge.adapters.twilio.twiml import TwimlError, connect_stream_twiml, parse_connect_stream

URL = "wss://abc.ngrok-free.app/call"
PARAMS = {"From": "+15550001111", "To": "+15550002222", "CallSid": "CA" + "0" * 32}


def test_shape_is_response_connect_stream_with_parameters() -> None:
    twiml = connect_stream_twiml(URL, PARAMS)
    assert twiml.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    assert [child.tag for child in root] == ["Connect"]
    stream = root.find("Connect/Stream")
    assert stream is not None and stream.attrib == {"url": URL}
    assert [(p.get("name"), p.get("value")) for p in stream.findall("Parameter")] == list(PARAMS.items())


def test_status_callback_attribute() -> None:
    twiml = connect_stream_twiml(URL, {}, status_callback="https://x.io/twilio/status?a=1&b=2")
    stream = ET.fromstring(twiml).find("Connect/Stream")
    assert stream is not None
    assert stream.get("statusCallback") == "https://x.io/twilio/status?a=1&b=2"
    assert "a=1&amp;b=2" in twiml


def test_round_trip() -> None:
    assert parse_connect_stream(connect_stream_twiml(URL, PARAMS)) == (URL, PARAMS)
    assert parse_connect_stream(connect_stream_twiml(URL, {}).encode()) == (URL, {})


def test_values_are_xml_escaped() -> None:
    nasty = {"From": '"><Hangup/><x a="', "Name": "O'Brien & <Sons>\n\ttab", "é": "ünï"}
    twiml = connect_stream_twiml(URL, nasty)
    assert "<Hangup" not in twiml
    assert parse_connect_stream(twiml) == (URL, nasty)


def test_characters_xml_cannot_carry_are_replaced_not_fatal() -> None:
    _, params = parse_connect_stream(connect_stream_twiml(URL, {"From": "a\x00b\x1fc\ud800d"}))
    assert params == {"From": "a\ufffdb\ufffdc\ufffdd"}


xml_text = st.text(
    st.characters(min_codepoint=0x20, exclude_categories=["Cs"]).filter(lambda c: c not in "\ufffe\uffff")
)


@given(st.dictionaries(xml_text, xml_text, max_size=6))
def test_any_parameters_round_trip(parameters: dict[str, str]) -> None:
    assert parse_connect_stream(connect_stream_twiml(URL, parameters)) == (URL, parameters)


@pytest.mark.parametrize(
    ("twiml", "complaint"),
    [
        ("not xml", "well-formed"),
        ("<Response><Say>hi</Say></Response>", "no <Connect><Stream>"),
        ("<Response><Start><Stream url='wss://x/call'/></Start></Response>", "no <Connect><Stream>"),
        ("<Response><Connect><Stream/></Connect></Response>", "no url"),
        ("<Other/>", "<Other>"),
        ("<Response><Connect><Stream url='wss://x'><Parameter value='v'/></Stream></Connect></Response>", "no name"),
    ],
)
def test_unusable_twiml_is_refused_clearly(twiml: str, complaint: str) -> None:
    with pytest.raises(TwimlError, match=complaint):
        parse_connect_stream(twiml)
