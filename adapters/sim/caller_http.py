"""The simulated caller's HTTP side: Twilio's voice webhook request and status callback.

Twilio answers an inbound call by POSTing a form to the number's voice URL and reading TwiML back;
when the call ends it may POST a status callback. Both are signed with ``X-Twilio-Signature`` over
the URL Twilio was configured with, which is built from the *public* URL: the simulator may reach
the server at ``http://127.0.0.1:8081`` while signing ``https://x.ngrok-free.app/twiml``.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import httpx2

from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature, public_origin, webhook_url
from callbridge.adapters.twilio.twiml import parse_connect_stream

API_VERSION = "2010-04-01"
USER_AGENT = "TwilioProxy/1.1 (callbridge simulator)"


class WebhookError(Exception):
    """The server's answer to a webhook was not what Twilio needs (status, content type)."""


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 hex digits (``CA…`` calls, ``MZ…`` streams)."""
    return prefix + secrets.token_hex(16)


def voice_webhook_params(*, call_sid: str, account_sid: str, from_number: str, to_number: str) -> dict[str, str]:
    """The form Twilio POSTs to the voice URL for a ringing inbound call (docs/protocols.md C),
    including the legacy ``Caller``/``Called`` duplicates real requests carry."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call_sid,
        "CallStatus": "ringing",
        "Called": to_number,
        "Caller": from_number,
        "Direction": "inbound",
        "From": from_number,
        "To": to_number,
    }


def _headers(auth_token: str | None, url: str, params: Mapping[str, str]) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    if auth_token:
        headers[SIGNATURE_HEADER] = compute_signature(auth_token, url, params)
    return headers


async def request_twiml(
    client: httpx2.AsyncClient,
    base_url: str,
    params: Mapping[str, str],
    *,
    auth_token: str | None,
    public_url: str | None = None,
) -> tuple[str, dict[str, str]]:
    """POST the voice webhook to ``base_url/twiml`` (signed over ``public_url/twiml``) and return
    the stream URL and parameters of the ``<Connect><Stream>`` it answers.

    Raises ``WebhookError``, ``TwimlError``, ``ValueError`` (bad URLs) or ``httpx2.HTTPError``.
    """
    signed_url = webhook_url(public_url or base_url, "/twiml")
    response = await client.post(
        webhook_url(base_url, "/twiml"), data=dict(params), headers=_headers(auth_token, signed_url, params)
    )
    if response.status_code != 200:
        raise WebhookError(f"voice webhook answered HTTP {response.status_code}: {response.text[:200]!r}")
    content_type = response.headers.get("content-type", "")
    if "xml" not in content_type:
        raise WebhookError(f"voice webhook answered content type {content_type!r}, not XML")
    return parse_connect_stream(response.content)


async def post_status_callback(
    client: httpx2.AsyncClient,
    base_url: str,
    params: Mapping[str, str],
    *,
    duration_s: float,
    auth_token: str | None,
    public_url: str | None = None,
    path: str = "/twilio/status",
) -> None:
    """POST the end-of-call status callback (``CallStatus=completed`` with ``CallDuration``).
    Raises ``WebhookError`` unless the server answers 2xx."""
    form = {**params, "CallStatus": "completed", "CallDuration": str(round(duration_s))}
    signed_url = webhook_url(public_url or base_url, path)
    response = await client.post(webhook_url(base_url, path), data=form, headers=_headers(auth_token, signed_url, form))
    if not 200 <= response.status_code < 300:
        raise WebhookError(f"status callback answered HTTP {response.status_code}")


def connect_url(twiml_stream_url: str, base_url: str, public_url: str | None) -> str:
    """Where to open the WebSocket. The TwiML names the public stream URL; when the simulator
    reaches the server by another address (``base_url`` ≠ ``public_url``), connect to the same path
    on ``base_url``'s host instead — the signature still covers the TwiML URL, as Twilio's does."""
    if not public_url:
        return twiml_stream_url
    public = public_origin(public_url)
    base = public_origin(base_url)
    stream = urlsplit(twiml_stream_url)
    if stream.netloc.lower() != public.netloc.lower():
        return twiml_stream_url
    scheme = "wss" if base.scheme == "https" else "ws"
    return urlunsplit((scheme, base.netloc, stream.path or "/", stream.query, ""))
