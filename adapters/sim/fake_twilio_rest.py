"""A local fake of the Twilio REST API: IncomingPhoneNumbers (docs/protocols.md A9) and Calls (A10).

Why: the console's setup checklist lists the account's numbers and points one's voice webhook at
us, and Twilio is unreachable from here. This peer answers exactly what the twilio package sends
(``client.api.base_url`` pointed at it, i.e. ``TWILIO_API_BASE_URL``):

- ``GET  /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers.json`` — a list page (``PageSize``,
  ``Page``, ``PhoneNumber`` and ``FriendlyName`` filters), ``next_page_uri`` for the next one;
- ``GET  /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json`` — one number;
- ``POST /2010-04-01/Accounts/{AC}/IncomingPhoneNumbers/{PN}.json`` — update from form fields
  (``VoiceUrl``, ``VoiceMethod``, ``StatusCallback``, …), answering the updated number.

HTTP Basic auth (account SID : auth token) is checked on every request: wrong or missing → 401
with Twilio's error 20003. Unknown numbers, other accounts and other paths → 404, error 20404.
Error bodies have Twilio's legacy shape ``{code, message, more_info, status}``.

``…/Calls.json`` and ``…/Calls/{CA}.json`` go to :class:`adapters.sim.fake_twilio_calls.FakeCalls`
(``fake.calls``): placing outbound calls, hanging up and redirecting live ones.

:class:`FakeTwilioRest` is the sans-IO part (state and ``handle``: request in, status and JSON
out), usable without sockets; :func:`serve_fake_twilio_rest` serves it over HTTP with hypercorn
(``nursery.start`` returns the handle, with ``.url`` set). Standalone, for demos:
``python -m callbridge.adapters.sim.fake_twilio_rest --port P``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Mapping
from functools import partial
from typing import Any
from urllib.parse import urlencode

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio

from callbridge.adapters.sim.fake_twilio_calls import FakeCalls

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "0fa4e" * 6 + "01"
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_CALLS_PATH = re.compile(rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/Calls(?:/(?P<sid>[^/]+))?\.json$")
_NUMBERS_PATH = re.compile(
    rf"^/{API_VERSION}/Accounts/(?P<account>[^/]+)/IncomingPhoneNumbers(?:/(?P<sid>[^/]+))?\.json$"
)

UPDATABLE_FIELDS = {
    "AccountSid": "account_sid",
    "AddressSid": "address_sid",
    "ApiVersion": "api_version",
    "BundleSid": "bundle_sid",
    "EmergencyAddressSid": "emergency_address_sid",
    "EmergencyStatus": "emergency_status",
    "FriendlyName": "friendly_name",
    "IdentitySid": "identity_sid",
    "SmsApplicationSid": "sms_application_sid",
    "SmsFallbackMethod": "sms_fallback_method",
    "SmsFallbackUrl": "sms_fallback_url",
    "SmsMethod": "sms_method",
    "SmsUrl": "sms_url",
    "StatusCallback": "status_callback",
    "StatusCallbackMethod": "status_callback_method",
    "TrunkSid": "trunk_sid",
    "VoiceApplicationSid": "voice_application_sid",
    "VoiceCallerIdLookup": "voice_caller_id_lookup",
    "VoiceFallbackMethod": "voice_fallback_method",
    "VoiceFallbackUrl": "voice_fallback_url",
    "VoiceMethod": "voice_method",
    "VoiceReceiveMode": "voice_receive_mode",
    "VoiceUrl": "voice_url",
}
"""Form field → resource attribute for ``update`` (Twilio's names; anything else is ignored)."""

_METHOD_FIELDS = ("SmsFallbackMethod", "SmsMethod", "StatusCallbackMethod", "VoiceFallbackMethod", "VoiceMethod")


def rfc2822(at: float) -> str:
    """Twilio's date format: ``Mon, 16 Aug 2010 23:00:23 +0000``."""
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(at))


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict[str, Any]]:
    """A Twilio legacy error answer (``TwilioRestException(status, …, code)`` in the client)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return status, body


class FakeTwilioRest:
    """The fake account: its numbers and every update received. Seed with :meth:`add_number`;
    inspect ``numbers`` (sid → resource JSON, in creation order), ``updates`` (sid, form) and
    ``requests``."""

    def __init__(self, account_sid: str = DEFAULT_ACCOUNT_SID, auth_token: str = DEFAULT_AUTH_TOKEN) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.numbers: dict[str, dict[str, Any]] = {}
        self.updates: list[tuple[str, dict[str, str]]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """Every request: (method, path, query)."""
        self.refused_auth = 0
        """Requests answered 401."""
        self.url = ""
        """``http://host:port`` once served (what ``TWILIO_API_BASE_URL`` should be)."""
        self.calls = FakeCalls(account_sid, auth_token)
        """The Calls resource and the phone calls it carries (:mod:`adapters.sim.fake_twilio_calls`)."""

    # --- the account -----------------------------------------------------------------------

    def number_uri(self, sid: str) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/IncomingPhoneNumbers/{sid}.json"

    def add_number(
        self,
        phone_number: str,
        *,
        friendly_name: str | None = None,
        voice_url: str = "",
        voice_method: str = "POST",
        status_callback: str = "",
        sid: str | None = None,
    ) -> dict[str, Any]:
        """Put a number on the account (as if bought); returns its resource JSON."""
        sid = sid or "PN" + secrets.token_hex(16)
        now = rfc2822(time.time())
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "address_requirements": "none",
            "address_sid": None,
            "api_version": API_VERSION,
            "beta": False,
            "bundle_sid": None,
            "capabilities": {"fax": False, "mms": True, "sms": True, "voice": True},
            "date_created": now,
            "date_updated": now,
            "emergency_address_sid": None,
            "emergency_address_status": "unregistered",
            "emergency_status": "Inactive",
            "friendly_name": friendly_name if friendly_name is not None else phone_number,
            "identity_sid": None,
            "origin": "twilio",
            "phone_number": phone_number,
            "sid": sid,
            "sms_application_sid": "",
            "sms_fallback_method": "POST",
            "sms_fallback_url": "",
            "sms_method": "POST",
            "sms_url": "",
            "status": "in-use",
            "status_callback": status_callback,
            "status_callback_method": "POST",
            "subresource_uris": {"assigned_add_ons": self.number_uri(sid).replace(".json", "/AssignedAddOns.json")},
            "trunk_sid": None,
            "uri": self.number_uri(sid),
            "voice_application_sid": "",
            "voice_caller_id_lookup": False,
            "voice_fallback_method": "POST",
            "voice_fallback_url": "",
            "voice_method": voice_method,
            "voice_receive_mode": "voice",
            "voice_url": voice_url,
        }
        self.numbers[sid] = resource
        return resource

    # --- requests (sans-IO) ----------------------------------------------------------------

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header is Basic with this account's SID and token."""
        scheme, _, encoded = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return hmac.compare_digest(user.encode(), self.account_sid.encode()) and hmac.compare_digest(
            password.encode(), self.auth_token.encode()
        )

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        form: Mapping[str, Any],
        authorization: str | None,
    ) -> tuple[int, dict[str, Any]]:
        """One request → (HTTP status, JSON body). ``form`` values are strings, or lists for
        repeated fields (``StatusCallbackEvent``)."""
        self.requests.append((method, path, dict(query)))
        if not self.authorized(authorization):
            self.refused_auth += 1
            return twilio_error(401, 20003, "Authenticate")
        calls = _CALLS_PATH.match(path)
        if calls is not None:  # another account's calls: not found
            found = calls["account"] == self.account_sid
            return self.calls.route(method, calls["sid"], form) if found else self._not_found(path)
        form = {key: value[-1] if isinstance(value, list) else value for key, value in form.items()}
        match = _NUMBERS_PATH.match(path)
        if match is None or match["account"] != self.account_sid:  # another account's resources: not found
            return self._not_found(path)
        sid = match["sid"]
        if sid is None:
            if method == "GET":
                return self._list(path, query)
            return twilio_error(405, 20004, "Method not allowed")  # buying numbers is not faked
        if sid not in self.numbers:
            return self._not_found(path)
        if method == "GET":
            return 200, self.numbers[sid]
        if method == "POST":
            return self._update(sid, form)
        return twilio_error(405, 20004, "Method not allowed")

    @staticmethod
    def _not_found(path: str) -> tuple[int, dict[str, Any]]:
        return twilio_error(404, 20404, f"The requested resource {path} was not found")

    def _list(self, path: str, query: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        try:
            page_size = int(query.get("PageSize", DEFAULT_PAGE_SIZE))
            page = int(query.get("Page", 0))
        except ValueError:
            return twilio_error(400, 20001, "PageSize and Page must be integers")
        if not 1 <= page_size <= MAX_PAGE_SIZE or page < 0:
            return twilio_error(400, 20001, f"PageSize must be 1-{MAX_PAGE_SIZE} and Page not negative")
        wanted_number = query.get("PhoneNumber", "").strip()
        wanted_name = query.get("FriendlyName")
        matching = [
            number
            for number in self.numbers.values()
            if wanted_number in number["phone_number"]
            and (wanted_name is None or number["friendly_name"] == wanted_name)
        ]
        start = page * page_size
        rows = matching[start : start + page_size]
        filters = {key: query[key] for key in ("PhoneNumber", "FriendlyName") if key in query}

        def page_uri(index: int) -> str:
            return f"{path}?{urlencode({**filters, 'PageSize': page_size, 'Page': index})}"

        more = start + page_size < len(matching)
        return 200, {
            "end": start + max(len(rows) - 1, 0),
            "first_page_uri": page_uri(0),
            "incoming_phone_numbers": rows,
            "next_page_uri": page_uri(page + 1) if more else None,
            "page": page,
            "page_size": page_size,
            "previous_page_uri": page_uri(page - 1) if page > 0 else None,
            "start": start,
            "uri": page_uri(page),
        }

    def _update(self, sid: str, form: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        for field in _METHOD_FIELDS:
            if field in form and form[field].upper() not in ("GET", "POST"):
                return twilio_error(400, 20001, f"{field} must be GET or POST, not {form[field]!r}")
        self.updates.append((sid, dict(form)))
        resource = self.numbers[sid]
        for field, value in form.items():
            attribute = UPDATABLE_FIELDS.get(field)
            if attribute is None or attribute == "account_sid":  # moving numbers between accounts: not faked
                continue
            resource[attribute] = value.upper() if field in _METHOD_FIELDS else value
        resource["date_updated"] = rfc2822(time.time())
        return 200, resource


# --- the socket edge ---------------------------------------------------------------------------


def fake_app(fake: FakeTwilioRest) -> QuartTrio:
    """The Quart app serving ``fake``: every path goes through :meth:`FakeTwilioRest.handle`."""
    app = QuartTrio("fake_twilio_rest")

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "DELETE"])
    @app.route("/<path:path>", methods=["GET", "POST", "DELETE"])
    async def any_path(path: str) -> Response:
        form = await request.form if request.method == "POST" else None
        fields: dict[str, Any] = {}
        if form is not None:
            for key in form:
                values = form.getlist(key)
                fields[key] = values if len(values) > 1 or key == "StatusCallbackEvent" else values[0]
        status, body = fake.handle(
            request.method,
            request.path,
            {key: request.args[key] for key in request.args},
            fields,
            request.headers.get("Authorization"),
        )
        response = Response(json.dumps(body), status=status, content_type="application/json")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return response

    return app


async def serve_fake_twilio_rest(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    fake: FakeTwilioRest | None = None,
    task_status: trio.TaskStatus[FakeTwilioRest] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``fake`` (a new, empty account when None) until cancelled; ``task_status.started``
    gets the handle with ``.url`` set to ``http://host:port``."""
    fake = fake or FakeTwilioRest()
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 0.5
    async with trio.open_nursery() as nursery:
        fake.calls.nursery = nursery
        binds: list[str] = await nursery.start(partial(serve, fake_app(fake), config))
        fake.url = binds[0]
        task_status.started(fake)


def demo_account(account_sid: str, auth_token: str) -> FakeTwilioRest:
    """An account with two numbers, neither pointing at callbridge yet."""
    fake = FakeTwilioRest(account_sid, auth_token)
    fake.add_number("+15005550001", friendly_name="Support line", voice_url="https://demo.twilio.com/welcome/voice/")
    fake.add_number("+15005550002", friendly_name="Sales line")
    return fake


def main(argv: list[str] | None = None) -> int:
    """Serve a demo account until SIGINT/SIGTERM. Credentials come from TWILIO_ACCOUNT_SID and
    TWILIO_AUTH_TOKEN when set (the token is then never printed), else fixed demo values."""
    parser = argparse.ArgumentParser(
        prog="python -m callbridge.adapters.sim.fake_twilio_rest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    args = parser.parse_args(argv)
    token_from_env = bool(os.environ.get("TWILIO_AUTH_TOKEN"))
    fake = demo_account(
        os.environ.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID,
        os.environ.get("TWILIO_AUTH_TOKEN") or DEFAULT_AUTH_TOKEN,
    )
    failures: list[OSError] = []

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(partial(serve_fake_twilio_rest, args.host, args.port, fake=fake))
            except OSError as error:
                failures.append(error)
                return
            print(f"fake Twilio REST API listening on {fake.url} with {len(fake.numbers)} numbers", flush=True)
            print(f"  export TWILIO_API_BASE_URL={fake.url}", flush=True)
            print(f"  export TWILIO_ACCOUNT_SID={fake.account_sid}", flush=True)
            if token_from_env:
                print("  (auth token: the TWILIO_AUTH_TOKEN already in the environment)", flush=True)
            else:
                print(f"  export TWILIO_AUTH_TOKEN={fake.auth_token}", flush=True)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(run)
    if failures:
        print(f"fake Twilio REST API: cannot listen on {args.host}:{args.port}: {failures[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
