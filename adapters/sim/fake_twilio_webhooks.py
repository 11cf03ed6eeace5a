"""The fake Twilio's requests to our server: signed like Twilio's, with a call's parameters.

Split from :mod:`adapters.sim.fake_twilio_calls` (which decides *when* a call reports what):
every webhook is a form POST carrying ``X-Twilio-Signature`` over the exact URL (query string
included) and the form, under the account's auth token — the server checks it the way it checks
Twilio's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx2
import trio

from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature

if TYPE_CHECKING:
    from callbridge.adapters.sim.fake_twilio_calls import FakeCall

API_VERSION = "2010-04-01"
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")
STATUS_EVENT = {
    "in-progress": "answered",
    "busy": "completed",
    "no-answer": "completed",
    "failed": "completed",
    "canceled": "completed",
}
"""The ``StatusCallbackEvent`` each call status is reported under (others: their own name)."""
HUMAN_AMD_AFTER_S = 0.3


def call_params(account_sid: str, call: FakeCall) -> dict[str, str]:
    """The parameters every request about ``call`` carries."""
    return {
        "AccountSid": account_sid,
        "ApiVersion": API_VERSION,
        "CallSid": call.sid,
        "CallStatus": call.status,
        "Called": call.to,
        "Caller": call.from_,
        "Direction": call.direction,
        "From": call.from_,
        "To": call.to,
    }


Route = Callable[[str], str]
"""Where a URL really goes (a load balancer in front of several engines); signatures stay over the
URL as given, as Twilio signs the public URL it was told."""


def direct(url: str) -> str:
    return url


async def signed_post(
    http: httpx2.AsyncClient,
    auth_token: str,
    url: str,
    form: dict[str, str],
    *,
    expect_xml: bool = False,
    route: Route = direct,
) -> str:
    """POST ``form`` to ``url`` (reached through ``route``) signed with ``auth_token``; the answer's
    text. ValueError when the answer is not 2xx (or not TwiML when ``expect_xml``)."""
    headers = {SIGNATURE_HEADER: compute_signature(auth_token, url, form)}
    response = await http.post(route(url), data=form, headers=headers)
    if not 200 <= response.status_code < 300:
        raise ValueError(f"{url} answered HTTP {response.status_code}: {response.text[:200]!r}")
    if expect_xml and "xml" not in response.headers.get("content-type", ""):
        raise ValueError(f"{url} answered {response.headers.get('content-type')!r}, not TwiML")
    return response.text


async def post_amd(
    http: httpx2.AsyncClient,
    auth_token: str,
    account_sid: str,
    call: FakeCall,
    answered_by: str,
    beeped: trio.Event | None,
    route: Route = direct,
) -> None:
    """The asynchronous answering-machine result: once the machine's beep ended, or shortly after a
    person answered."""
    started = time.monotonic()
    if beeped is not None:
        await beeped.wait()
    else:
        await trio.sleep(HUMAN_AMD_AFTER_S)
    form = {
        "AccountSid": account_sid,
        "CallSid": call.sid,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": str(round((time.monotonic() - started) * 1000)),
    }
    call.amd_posted = answered_by
    try:
        await signed_post(http, auth_token, call.amd_callback, form, route=route)
    except (ValueError, httpx2.HTTPError, OSError) as error:
        call.errors.append(f"AMD callback: {error}")


async def post_status(
    http: httpx2.AsyncClient, auth_token: str, account_sid: str, call: FakeCall, status: str, route: Route = direct
) -> None:
    """The call is now ``status``; a status callback when the call asked for this event."""
    call.status = status
    if not call.status_callback or STATUS_EVENT.get(status, status) not in call.status_events:
        return
    form = {**call_params(account_sid, call), "CallbackSource": "call-progress-events"}
    form["SequenceNumber"] = str(len(call.statuses_posted))
    if status in TERMINAL and call.answered_at is not None:
        form["CallDuration"] = str(round(time.monotonic() - call.answered_at))
    call.statuses_posted.append(status)
    call.status_forms.append(form)
    try:
        await signed_post(http, auth_token, call.status_callback, form, route=route)
    except (ValueError, httpx2.HTTPError, OSError) as error:
        call.errors.append(f"status callback {status}: {error}")


async def fetch_twiml(
    http: httpx2.AsyncClient, auth_token: str, account_sid: str, call: FakeCall, url: str, *, route: Route = direct
) -> str:
    """A ``<Redirect>``: the TwiML ``url`` answers (a signed request with the call's parameters)."""
    return await signed_post(http, auth_token, url, call_params(account_sid, call), expect_xml=True, route=route)
