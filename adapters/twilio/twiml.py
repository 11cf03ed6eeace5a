"""TwiML for the voice webhook: ``<Connect><Stream>`` with per-call ``<Parameter>``s, and its inverse.

``<Connect><Stream>`` makes the stream bidirectional (we may send media, marks and clears back).
The stream URL carries no query string (Twilio drops it), so per-call data travels as
``<Parameter>``s and comes back in the ``start`` frame's ``customParameters`` (docs/protocols.md A1).

Building goes through ``twilio.twiml.voice_response`` so escaping and attribute naming are
Twilio's own; parsing (for the simulated caller) uses the standard library.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from twilio.twiml.voice_response import VoiceResponse

# Characters XML 1.0 cannot carry at all, not even escaped.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class TwimlError(ValueError):
    """A TwiML document that is not a ``<Response><Connect><Stream>`` we can use."""


def _xml_safe(text: str) -> str:
    """Replace characters XML cannot represent (control characters, lone surrogates) with U+FFFD,
    so a strange caller-ID string can never make the whole TwiML unparseable."""
    return _NOT_XML_CHAR.sub("\ufffd", text)


def connect_stream_twiml(
    stream_url: str,
    parameters: Mapping[str, str],
    *,
    status_callback: str | None = None,
    action: str | None = None,
) -> str:
    """``<Response><Connect action?><Stream url=…><Parameter name value/>…</Stream></Connect></Response>``.

    ``parameters`` keep their order; ``status_callback`` (optional) receives the stream's
    ``stream-started``/``stream-stopped``/``stream-error`` callbacks; ``action`` (optional) is
    requested when our side ends the stream, and its TwiML says what happens to the call next.
    """
    response = VoiceResponse()
    connect = response.connect(action=_xml_safe(action) if action is not None else None)
    stream = connect.stream(
        url=_xml_safe(stream_url),
        status_callback=_xml_safe(status_callback) if status_callback is not None else None,
    )
    for name, value in parameters.items():
        stream.parameter(name=_xml_safe(name), value=_xml_safe(value))
    return str(response)


def parse_connect_stream(twiml: str | bytes) -> tuple[str, dict[str, str]]:
    """The stream URL and the ``<Parameter>``s of a ``<Connect><Stream>`` TwiML document.

    Raises ``TwimlError`` when the text is not XML or has no ``<Response><Connect><Stream url>``.
    """
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    if root.tag != "Response":
        raise TwimlError(f"TwiML root element is <{root.tag}>, expected <Response>")
    stream = root.find("Connect/Stream")
    if stream is None:
        raise TwimlError("TwiML has no <Connect><Stream> (a <Start><Stream> would be one-way)")
    url = stream.get("url")
    if not url:
        raise TwimlError("TwiML <Stream> has no url attribute")
    parameters: dict[str, str] = {}
    for parameter in stream.findall("Parameter"):
        name = parameter.get("name")
        if name is None:
            raise TwimlError("TwiML <Parameter> has no name attribute")
        parameters[name] = parameter.get("value", "")
    return url, parameters


def parse_connect_action(twiml: str | bytes) -> str | None:
    """The ``action`` URL of a ``<Connect>`` TwiML document (None without one)."""
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError as exc:
        raise TwimlError(f"TwiML is not well-formed XML: {exc}") from None
    connect = root.find("Connect")
    return None if connect is None else connect.get("action")


def hangup_twiml() -> str:
    """``<Response><Hangup/></Response>``."""
    response = VoiceResponse()
    response.hangup()
    return str(response)


def dial_twiml(to: str, *, caller_id: str | None = None, timeout_s: int = 30) -> str:
    """``<Response><Dial callerId timeout><Number>…</Number></Dial></Response>`` (a ``<Sip>`` for a
    ``sip:`` URI): a cold transfer."""
    response = VoiceResponse()
    dial = response.dial(caller_id=caller_id, timeout=timeout_s)
    if to.startswith(("sip:", "sips:")):
        dial.sip(_xml_safe(to))
    else:
        dial.number(_xml_safe(to))
    return str(response)


def conference_twiml(room: str, *, start_on_enter: bool, end_on_exit: bool = True, say: str = "") -> str:
    """``<Response>[<Say>say</Say>]<Dial><Conference …>room</Conference></Dial></Response>``: a
    caller held there (``start_on_enter`` False: they hear Twilio's hold music until someone who
    starts it joins), or the person taking a warm transfer, who hears ``say`` (the summary) first."""
    response = VoiceResponse()
    if say:
        response.say(_xml_safe(say))
    dial = response.dial()
    dial.conference(
        _xml_safe(room),
        start_conference_on_enter=start_on_enter,
        end_conference_on_exit=end_on_exit,
        beep=False,
    )
    return str(response)


def briefing_twiml(say: str, then_url: str) -> str:
    """``<Response><Say>say</Say><Redirect method="POST">then_url</Redirect></Response>``: what the
    person taking a warm transfer hears first. Twilio runs the verbs in order, so ``then_url`` is
    requested only when the whole summary was spoken and the person is still on the line: a person
    who hangs up during it never asks to join the caller."""
    response = VoiceResponse()
    response.say(_xml_safe(say))
    response.redirect(then_url, method="POST")
    return str(response)


def say_and_hang_up_twiml(say: str) -> str:
    """``<Response><Say>say</Say><Hangup/></Response>``."""
    response = VoiceResponse()
    response.say(_xml_safe(say))
    response.hangup()
    return str(response)
