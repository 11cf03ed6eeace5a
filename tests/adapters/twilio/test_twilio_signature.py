"""``X-Twilio-Signature``: the URLs Twilio signs are built from PUBLIC_URL, and a signature is valid
exactly when it was made with the token over that URL and those parameters."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from callbridge.adapters.twilio.signature import (
    compute_signature,
    is_valid_signature,
    public_origin,
    stream_url,
    webhook_url,
)

# The twilio package's own test vector (docs/protocols.md A7).
TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
EXPECTED = "RSOYDt4T1cUTdK1PDd93/VVr8B8="


def test_known_vector() -> None:
    assert compute_signature(TOKEN, URL, PARAMS) == EXPECTED
    assert is_valid_signature(TOKEN, URL, PARAMS, EXPECTED)


def test_multidict_params_sign_like_a_dict() -> None:
    assert compute_signature(TOKEN, URL, MultiDict(PARAMS)) == EXPECTED
    assert is_valid_signature(TOKEN, URL, MultiDict(PARAMS), EXPECTED)


def test_repeated_form_values_are_all_signed() -> None:
    twice = MultiDict([("Digits", "1"), ("Digits", "2")])
    once = MultiDict([("Digits", "1")])
    assert compute_signature(TOKEN, URL, twice) != compute_signature(TOKEN, URL, once)
    assert is_valid_signature(TOKEN, URL, twice, compute_signature(TOKEN, URL, twice))


@pytest.mark.parametrize(
    "tampered",
    [
        {**PARAMS, "Digits": "1235"},
        {**PARAMS, "Extra": "x"},
        {k: v for k, v in PARAMS.items() if k != "To"},
        {},
    ],
)
def test_tampered_params_are_rejected(tampered: dict[str, str]) -> None:
    assert not is_valid_signature(TOKEN, URL, tampered, EXPECTED)


@pytest.mark.parametrize(
    "url",
    [
        "https://mycompany.com/myapp.php?foo=1&bar=3",
        "https://mycompany.com/other.php?foo=1&bar=2",
        "http://mycompany.com/myapp.php?foo=1&bar=2",
        "https://evil.com/myapp.php?foo=1&bar=2",
    ],
)
def test_other_url_is_rejected(url: str) -> None:
    assert not is_valid_signature(TOKEN, url, PARAMS, EXPECTED)


def test_wrong_token_is_rejected() -> None:
    assert not is_valid_signature("54321", URL, PARAMS, EXPECTED)


@pytest.mark.parametrize("signature", [None, "", "   ", "garbage", "RSOYDt4T1cUTdK1PDd93/VVr8B8", "é" * 28])
def test_missing_or_junk_signature_is_rejected(signature: str | None) -> None:
    assert not is_valid_signature(TOKEN, URL, PARAMS, signature)


def test_empty_token_never_validates() -> None:
    assert not is_valid_signature("", URL, PARAMS, compute_signature("", URL, PARAMS))


def test_websocket_upgrade_is_signed_over_the_wss_url_with_no_params() -> None:
    ws_url = stream_url("https://abc.ngrok-free.app")
    assert ws_url == "wss://abc.ngrok-free.app/call"
    signature = compute_signature("tok", ws_url, {})
    assert is_valid_signature("tok", ws_url, {}, signature)
    assert is_valid_signature("tok", ws_url, None, signature)
    # The https form of the same URL is a different signature (scheme `wss`, not `https`).
    assert not is_valid_signature("tok", "https://abc.ngrok-free.app/call", {}, signature)
    assert not is_valid_signature("tok", ws_url, {"From": "+1"}, signature)


@pytest.mark.parametrize(
    ("signed_url", "checked_url"),
    [
        ("https://example.com:443/twiml", "https://example.com/twiml"),
        ("https://example.com/twiml", "https://example.com:443/twiml"),
        ("wss://example.com:443/call", "wss://example.com/call"),
        ("wss://example.com/call", "wss://example.com:443/call"),
        ("ws://127.0.0.1/call", "ws://127.0.0.1:80/call"),
        ("http://127.0.0.1:8081/twiml", "http://127.0.0.1:8081/twiml"),
        ("http://127.0.0.1/twiml", "http://127.0.0.1:8081/twiml"),  # the validator strips any port
    ],
)
def test_port_variants_twilio_is_inconsistent_about(signed_url: str, checked_url: str) -> None:
    signature = compute_signature(TOKEN, signed_url, PARAMS)
    assert is_valid_signature(TOKEN, checked_url, PARAMS, signature)


def test_a_different_port_is_a_different_address() -> None:
    signature = compute_signature(TOKEN, "http://127.0.0.1:9000/twiml", PARAMS)
    assert not is_valid_signature(TOKEN, "http://127.0.0.1:8081/twiml", PARAMS, signature)


def test_odd_urls_do_not_raise() -> None:
    for url in ("", "not a url", "https://h:99999999/x", "https://[::1/x"):
        assert not is_valid_signature(TOKEN, url, PARAMS, EXPECTED)


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://abc.ngrok-free.app", "wss://abc.ngrok-free.app/call"),
        ("https://abc.ngrok-free.app/", "wss://abc.ngrok-free.app/call"),
        ("http://127.0.0.1:8081", "ws://127.0.0.1:8081/call"),
        ("https://calls.example.com:8443", "wss://calls.example.com:8443/call"),
        ("http://[::1]:8081", "ws://[::1]:8081/call"),
        ("  https://x.io  ", "wss://x.io/call"),
    ],
)
def test_stream_url(public: str, expected: str) -> None:
    assert stream_url(public) == expected


def test_webhook_url() -> None:
    assert webhook_url("https://abc.ngrok-free.app", "/twiml") == "https://abc.ngrok-free.app/twiml"
    assert webhook_url("http://127.0.0.1:8081/", "twilio/status") == "http://127.0.0.1:8081/twilio/status"
    assert webhook_url("https://x.io", "/twiml", "a=1&b=2") == "https://x.io/twiml?a=1&b=2"


@pytest.mark.parametrize(
    ("public", "complaint"),
    [
        ("abc.ngrok-free.app", "http:// or https://"),
        ("ftp://x.io", "http:// or https://"),
        ("wss://x.io", "http:// or https://"),
        ("https://", "no host"),
        ("https://x.io:http", "invalid port"),
        ("https://x.io/prefix", "origin"),
        ("https://x.io/?a=1", "origin"),
    ],
)
def test_public_url_must_be_an_origin(public: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        public_origin(public)
    with pytest.raises(ValueError, match=complaint):
        stream_url(public)
