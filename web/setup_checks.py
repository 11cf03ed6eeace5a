"""The console's setup checklist: can a real phone call reach this server and be answered?

Five checks, each ``{id, label, ok, detail}`` where ``detail`` says in a sentence what was found
and what to do: Twilio credentials present (and accepted), the account's phone numbers listed
(Twilio REST, ``TWILIO_API_BASE_URL`` when set), the public URL reachable (``GET
PUBLIC_URL/healthz`` answers 200), a number's voice webhook pointing at ``PUBLIC_URL/twiml``, and
the realtime model answering a real handshake with the key calls use (HTTP status or error
otherwise: a wrong key is found here, not by a caller hearing silence).

Why it never fails as a whole: a checklist exists to explain what is wrong, so every failure
(bad credentials, Twilio unreachable, a public URL that does not answer) becomes a failed check
with its reason. The slow parts — the Twilio listing, the public URL probe and the model handshake —
run concurrently with short timeouts. Details say whether secrets are set, never what they are.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any
from urllib.parse import urlsplit

import httpx2
import trio

from callbridge.adapters.http import new_async_client
from callbridge.adapters.openai.client import open_realtime, redact_url
from callbridge.adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from callbridge.adapters.twilio.rest import IncomingPhoneNumbers, PhoneNumber
from callbridge.adapters.twilio.rest_errors import RestErrorKind, TwilioRestError
from callbridge.adapters.twilio.signature import webhook_url
from callbridge.web.settings import Settings

PUBLIC_URL_TIMEOUT_S = 3.0
MODEL_TIMEOUT_S = 5.0
TWILIO_TIMEOUT_S = 5.0
MAX_NUMBERS = 1000
"""Numbers listed at most (all pages up to this)."""


def twiml_url(public_url: str) -> str:
    """Where a number's voice webhook must point: ``PUBLIC_URL/twiml``."""
    return webhook_url(public_url, "/twiml")


def status_callback_url(public_url: str) -> str:
    return webhook_url(public_url, "/twilio/status")


def check(check_id: str, label: str, ok: bool, detail: str) -> dict[str, Any]:
    return {"id": check_id, "label": label, "ok": ok, "detail": detail}


def webhook_points_here(number: PhoneNumber, public_url: str) -> bool:
    """The number's calls reach us: its voice URL is ours, and no TwiML App or SIP trunk
    overrides it (Twilio ignores ``voice_url`` then)."""
    return number.voice_url == twiml_url(public_url) and not number.voice_application_sid and not number.trunk_sid


def number_view(number: PhoneNumber, public_url: str) -> dict[str, Any]:
    """A number as the console shows it."""
    return {
        "sid": number.sid,
        "phone_number": number.phone_number,
        "friendly_name": number.friendly_name,
        "voice_url": number.voice_url,
        "webhook_ok": webhook_points_here(number, public_url),
    }


def phone_numbers_client(settings: Settings) -> IncomingPhoneNumbers | None:
    """The Twilio REST client for the account's numbers, or None without credentials."""
    if not settings.twilio_account_sid or not settings.twilio_auth_token:
        return None
    return IncomingPhoneNumbers(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        base_url=settings.twilio_api_base_url,
        timeout_s=TWILIO_TIMEOUT_S,
    )


def unreachable_reason(public_url: str) -> str | None:
    """Why Twilio could not call a webhook under ``public_url`` (None when it looks reachable):
    plain http (the media stream needs wss://), or a local or private address."""
    parts = urlsplit(public_url)
    host = parts.hostname or ""
    if is_local_host(host):
        return f"{host} is a local or private address, not reachable from the internet"
    if parts.scheme != "https":
        return "it is plain http; Twilio needs https (and wss:// for the media stream)"
    return None


def is_local_host(host: str) -> bool:
    """A host Twilio cannot reach from the internet (loopback, private, link-local)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


# --- the checks --------------------------------------------------------------------------------


def credentials_check(settings: Settings, listing_error: TwilioRestError | None) -> dict[str, Any]:
    label = "Twilio credentials"
    missing = [
        name
        for name, value in (
            ("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
        )
        if not value
    ]
    if missing:
        return check("twilio_credentials", label, False, f"set {' and '.join(missing)} (from the Twilio console)")
    if listing_error is not None and listing_error.kind is RestErrorKind.AUTH:
        return check("twilio_credentials", label, False, f"set, but {listing_error}")
    sid = settings.twilio_account_sid or ""
    where = f" (Twilio API at {settings.twilio_api_base_url})" if settings.twilio_api_base_url else ""
    return check("twilio_credentials", label, True, f"account {sid[:4]}…{sid[-4:]}; auth token set{where}")


def numbers_check(numbers: list[PhoneNumber] | None, listing_error: TwilioRestError | None) -> dict[str, Any]:
    label = "Phone numbers"
    if listing_error is not None:
        return check("phone_numbers", label, False, str(listing_error))
    if numbers is None:
        return check("phone_numbers", label, False, "needs the Twilio credentials to list the account's numbers")
    if not numbers:
        return check("phone_numbers", label, False, "the account has no phone numbers: buy one in the Twilio console")
    shown = ", ".join(number.phone_number for number in numbers[:5]) + (", …" if len(numbers) > 5 else "")
    plural = "s" if len(numbers) != 1 else ""
    return check("phone_numbers", label, True, f"{len(numbers)} number{plural} on the account: {shown}")


def webhook_check(numbers: list[PhoneNumber] | None, public_url: str) -> dict[str, Any]:
    label = "Voice webhook"
    target = twiml_url(public_url)
    if not numbers:
        return check("webhook", label, False, f"needs a phone number whose voice webhook can point at {target}")
    ours = [number for number in numbers if webhook_points_here(number, public_url)]
    if ours:
        names = ", ".join(number.phone_number for number in ours)
        return check("webhook", label, True, f"calls to {names} reach {target}")
    overridden = [n.phone_number for n in numbers if n.voice_url == target and (n.voice_application_sid or n.trunk_sid)]
    if overridden:
        detail = f"{', '.join(overridden)} point at {target} but a TwiML App or SIP trunk on the number overrides it"
        return check("webhook", label, False, detail)
    return check("webhook", label, False, f"no number's voice webhook is {target}: set it on the number to use")


async def public_url_check(public_url: str, timeout_s: float = PUBLIC_URL_TIMEOUT_S) -> dict[str, Any]:
    label = "Public URL reachable"
    url = webhook_url(public_url, "/healthz")
    try:
        async with new_async_client(timeout=timeout_s, follow_redirects=False) as client:
            response = await client.get(url)
    except httpx2.TimeoutException:
        return check("public_url", label, False, f"{url} did not answer within {timeout_s:g} s")
    except (httpx2.HTTPError, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        return check(
            "public_url", label, False, f"cannot reach {url} ({reason}); is PUBLIC_URL right and the tunnel up?"
        )
    if response.status_code != 200:
        detail = f"{url} answered HTTP {response.status_code}; PUBLIC_URL must lead to this server"
        return check("public_url", label, False, detail)
    detail = f"{url} answered 200"
    host = urlsplit(public_url).hostname or ""
    if is_local_host(host):
        detail += "; it is a local address Twilio cannot reach: use a tunnel (e.g. ngrok) and set PUBLIC_URL to it"
    return check("public_url", label, True, detail)


async def model_check(settings: Settings, model_url: str | None, timeout_s: float = MODEL_TIMEOUT_S) -> dict[str, Any]:
    """A real realtime handshake: open the model's WebSocket with the key calls use (the
    simulated model's own URL in ``sim`` mode), wait for its ``session.created``, close. A
    rejected key, an unreachable endpoint or a silent one fails the check with the HTTP status or
    the error, never the key."""
    label = "Realtime model"
    simulated = settings.model == "sim"
    url = model_url if simulated else settings.openai_realtime_url
    if simulated and url is None:
        return check("openai", label, False, "the simulated model is not running yet; check again in a moment")
    assert url is not None
    if not simulated and not settings.openai_api_key:
        return check("openai", label, False, "OPENAI_API_KEY is not set: set it, or run with --model sim")
    where = redact_url(url).split("?")[0]
    try:
        with trio.fail_after(timeout_s):
            async with open_realtime(
                url, "sim" if simulated else settings.openai_api_key, connect_timeout=timeout_s
            ) as conn:
                first = await conn.receive_raw()
    except RealtimeConnectError as error:
        return check("openai", label, False, _redacted(str(error), settings))
    except RealtimeConnectionClosed as closed:
        return check("openai", label, False, f"{where} accepted the key, then closed the socket: {closed}")
    except trio.TooSlowError:
        return check(
            "openai", label, False, f"{where} did not answer within {timeout_s:g} s; check OPENAI_REALTIME_URL"
        )
    kind = _event_type(first)
    if kind != "session.created":
        return check("openai", label, False, f"{where} answered the handshake with {kind!r}, not 'session.created'")
    if simulated:
        detail = (
            "the built-in simulated model answered a realtime handshake (no OPENAI_API_KEY); "
            "set OPENAI_API_KEY for real conversations"
        )
    else:
        detail = f"OpenAI Realtime at {where} accepted OPENAI_API_KEY and opened a session"
    return check("openai", label, True, detail)


def _event_type(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return "not JSON"
    return str(value.get("type")) if isinstance(value, dict) else "not an object"


def _redacted(text: str, settings: Settings) -> str:
    key = settings.openai_api_key
    return text.replace(key, "<OPENAI_API_KEY>") if key else text


# --- the report --------------------------------------------------------------------------------


async def list_numbers(settings: Settings) -> tuple[list[PhoneNumber] | None, TwilioRestError | None]:
    """The account's numbers (None without credentials), or the error that prevented listing."""
    client = phone_numbers_client(settings)
    if client is None:
        return None, None
    try:
        return await client.alist_numbers(limit=MAX_NUMBERS), None
    except TwilioRestError as error:
        return None, error


async def setup_report(settings: Settings, model_url: str | None = None) -> dict[str, Any]:
    """``GET /api/setup``'s answer: the checks, the numbers, and the URLs they are checked against.
    ``model_url``: where the simulated model listens (``sim`` mode)."""
    listing: tuple[list[PhoneNumber] | None, TwilioRestError | None] = (None, None)
    reachable: dict[str, Any] = {}
    model: dict[str, Any] = {}

    async def run_model_check() -> None:
        model.update(await model_check(settings, model_url))

    async def run_listing() -> None:
        nonlocal listing
        listing = await list_numbers(settings)

    async def run_probe() -> None:
        reachable.update(await public_url_check(settings.public_url))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_listing)
        nursery.start_soon(run_probe)
        nursery.start_soon(run_model_check)
    numbers, error = listing
    return {
        "checks": [
            credentials_check(settings, error),
            numbers_check(numbers, error),
            reachable,
            webhook_check(numbers, settings.public_url),
            model,
        ],
        "numbers": [number_view(number, settings.public_url) for number in numbers or []],
        "public_url": settings.public_url,
        "twiml_url": twiml_url(settings.public_url),
        "public_url_problem": unreachable_reason(settings.public_url),
        "model": settings.model,
    }
