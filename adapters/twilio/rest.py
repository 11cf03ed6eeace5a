"""Twilio's IncomingPhoneNumbers REST resource: list the account's numbers, point one at us.

The console's setup checklist needs two calls (docs/protocols.md A9): list the numbers with their voice
webhooks, and set a number's ``voice_url`` / ``status_callback``. Why this wrapper rather than the
twilio client used directly:

- **Trio.** The twilio client is synchronous (``requests``); its async variant is aiohttp, which
  does not run under trio. Each call here builds a client and runs in a worker thread
  (``trio.to_thread``), bounded by a timeout, so nothing blocks the event loop.
- **A local peer.** ``base_url`` (``TWILIO_API_BASE_URL``) replaces the ``Api`` domain's base URL,
  so tests and demos talk to :mod:`adapters.sim.fake_twilio_rest`; pagination follows it too.
  With a base URL the edge/region host rewriting (``TWILIO_EDGE``/``TWILIO_REGION``) is off: it
  would mangle ``127.0.0.1``.
- **Errors a person can act on.** Every failure (bad credentials, unknown number, unreachable
  API, a peer that is not Twilio) becomes one :class:`TwilioRestError` whose ``kind`` says which
  and whose message says what to do. Messages never carry the auth token.

:class:`TwilioCalls` is the Calls resource the same way: placing an outbound call (``Calls.json``
create, with answering-machine detection) and updating a live one (``Status=completed`` hangs up,
``Twiml=<Response><Dial>…`` transfers). It is the engine's ``Telephony`` (``engine/context.py``):
its ``hang_up``/``redirect`` raise ``TelephonyError`` with the same actionable, token-free messages.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlencode

import requests
import trio
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from callbridge.adapters.twilio.twiml import briefing_twiml, conference_twiml

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 5.0
TWILIO_API_BASE_URL = "https://api.twilio.com"


@dataclass(frozen=True)
class PhoneNumber:
    """The fields of an IncomingPhoneNumber the console uses (missing ones are empty strings)."""

    sid: str
    phone_number: str
    friendly_name: str
    voice_url: str
    voice_method: str
    status_callback: str
    status_callback_method: str
    voice_application_sid: str
    trunk_sid: str

    @classmethod
    def from_instance(cls, instance: Any) -> PhoneNumber:
        """From a twilio ``IncomingPhoneNumberInstance`` (its attributes mirror the JSON)."""
        return cls(**{name: getattr(instance, name, None) or "" for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class RestErrorKind(StrEnum):
    AUTH = "auth"
    """Twilio refused the credentials (HTTP 401/403, e.g. error 20003)."""
    NOT_FOUND = "not_found"
    """No such number on the account (HTTP 404, error 20404)."""
    UNREACHABLE = "unreachable"
    """No answer: connection refused, DNS, timeout, bad base URL."""
    REJECTED = "rejected"
    """Any other error answer (400, 429, 5xx)."""
    BAD_RESPONSE = "bad_response"
    """An answer that is not the Twilio API's JSON (a wrong ``TWILIO_API_BASE_URL``)."""


class TelephonyError(Exception):
    """Twilio refused a call update, or could not be reached: what the engine's ``Telephony`` raises
    (``engine.context``); the message says which and why, without the token."""


class TwilioRestError(Exception):
    """A Twilio REST call failed; ``kind`` says how, the message what to do about it."""

    def __init__(self, kind: RestErrorKind, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.code = code


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


class _TwilioRest:
    """Credentials, a client per operation, and errors translated: what every resource shares."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("a Twilio account SID and auth token are both needed")
        self._account_sid = account_sid
        self._auth_token = auth_token
        self.base_url = (base_url or "").rstrip("/") or None
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # never the token
        return f"{type(self).__name__}(account_sid={self._account_sid!r}, base_url={self.base_url!r})"

    @contextmanager
    def _client(self) -> Iterator[Client]:
        """A twilio client for one operation; its HTTP connections are closed afterwards."""
        http = TwilioHttpClient(timeout=self.timeout_s)
        client = Client(self._account_sid, self._auth_token, http_client=http)
        if self.base_url is not None:
            client.api.base_url = self.base_url
            client.edge = client.region = None
        try:
            yield client
        finally:
            if http.session is not None:
                http.session.close()

    def _translated(self, doing: str, call: Callable[[], T]) -> T:
        """``call()``, with whatever the twilio client raises turned into a :class:`TwilioRestError`."""
        try:
            return call()
        except Exception as exc:
            kind, message, status, code = _describe(exc, self.base_url or TWILIO_API_BASE_URL, self.timeout_s)
            text = _redact(f"could not {doing}: {message}", self._auth_token)
            raise TwilioRestError(kind, text, status=status, code=code) from None


class IncomingPhoneNumbers(_TwilioRest):
    """The account's phone numbers over the Twilio REST API. The sync methods block (call them
    from a thread); the ``a``-prefixed ones run them in a trio worker thread."""

    # --- blocking calls --------------------------------------------------------------------

    def list_numbers(self, *, limit: int | None = None, page_size: int | None = None) -> list[PhoneNumber]:
        """Every number on the account (all pages), or the first ``limit``."""

        def call() -> list[PhoneNumber]:
            with self._client() as client:
                found = client.incoming_phone_numbers.list(limit=limit, page_size=page_size)
            return [PhoneNumber.from_instance(instance) for instance in found]

        return self._translated("list the account's phone numbers", call)

    def set_voice_webhook(
        self,
        sid: str,
        *,
        voice_url: str,
        status_callback: str | None = None,
        voice_method: str = "POST",
        status_callback_method: str = "POST",
    ) -> PhoneNumber:
        """Point number ``sid``'s voice webhook at ``voice_url`` (and its call status callbacks at
        ``status_callback`` when given); returns the number as Twilio now has it."""
        fields: dict[str, Any] = {"voice_url": voice_url, "voice_method": voice_method}
        if status_callback is not None:
            fields |= {"status_callback": status_callback, "status_callback_method": status_callback_method}

        def call() -> PhoneNumber:
            with self._client() as client:
                return PhoneNumber.from_instance(client.incoming_phone_numbers(sid).update(**fields))

        return self._translated(f"update phone number {sid}", call)

    # --- trio ------------------------------------------------------------------------------

    async def alist_numbers(self, *, limit: int | None = None, page_size: int | None = None) -> list[PhoneNumber]:
        return await trio.to_thread.run_sync(
            lambda: self.list_numbers(limit=limit, page_size=page_size), abandon_on_cancel=True
        )

    async def aset_voice_webhook(self, sid: str, *, voice_url: str, status_callback: str | None = None) -> PhoneNumber:
        return await trio.to_thread.run_sync(
            lambda: self.set_voice_webhook(sid, voice_url=voice_url, status_callback=status_callback),
            abandon_on_cancel=True,
        )


@dataclass(frozen=True)
class PlacedCall:
    """What Twilio answered to ``Calls.json`` create: the new call's SID and status (``queued``)."""

    sid: str
    status: str
    to: str
    from_: str


STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
"""Every call progress event, so a call that never connects (busy, no-answer) is reported too."""


class TwilioCalls(_TwilioRest):
    """The Calls resource: place an outbound call, hang up or redirect a live one, hold one for a
    warm transfer. Implements the engine's ``Telephony``; every call runs in a trio worker thread."""

    transfer_status_url: str | None = None
    """Where a warm transfer's person leg reports its end (the server's ``/twilio/transfer-status``)."""
    transfer_join_url: str | None = None
    """Where that leg asks to join the caller once it heard the summary (``/twilio/transfer-join``)."""

    def create(
        self,
        *,
        to: str,
        from_: str,
        url: str,
        status_callback: str,
        amd_callback: str,
        machine_detection: str = "DetectMessageEnd",
    ) -> PlacedCall:
        """Place a call to ``to``: Twilio requests ``url`` (our ``/twiml``) once answered, reports
        progress to ``status_callback`` and the answering-machine result to ``amd_callback``
        (asynchronously: the conversation starts at once)."""

        def call() -> PlacedCall:
            with self._client() as client:
                created = client.calls.create(
                    to=to,
                    from_=from_,
                    url=url,
                    method="POST",
                    status_callback=status_callback,
                    status_callback_event=list(STATUS_EVENTS),
                    status_callback_method="POST",
                    machine_detection=machine_detection,
                    async_amd="true",
                    async_amd_status_callback=amd_callback,
                    async_amd_status_callback_method="POST",
                )
            return PlacedCall(sid=created.sid or "", status=created.status or "", to=to, from_=from_)

        return self._translated(f"place a call to {to}", call)

    def update(self, call_sid: str, **fields: Any) -> None:
        def call() -> None:
            with self._client() as client:
                client.calls(call_sid).update(**fields)

        what = "hang up" if fields.get("status") == "completed" else "redirect"
        self._translated(f"{what} call {call_sid}", call)

    async def acreate(self, *, to: str, from_: str, url: str, status_callback: str, amd_callback: str) -> PlacedCall:
        return await trio.to_thread.run_sync(
            lambda: self.create(
                to=to, from_=from_, url=url, status_callback=status_callback, amd_callback=amd_callback
            ),
            abandon_on_cancel=True,
        )

    async def first_number(self) -> str | None:
        """The account's first phone number (the default caller ID), or None when it has none."""
        numbers = IncomingPhoneNumbers(
            self._account_sid, self._auth_token, base_url=self.base_url, timeout_s=self.timeout_s
        )
        found = await numbers.alist_numbers(limit=1, page_size=1)
        return found[0].phone_number if found else None

    # --- engine.context.Telephony ------------------------------------------------------------

    async def hang_up(self, call_sid: str) -> None:
        await self._update_or_raise(call_sid, status="completed")

    async def redirect(self, call_sid: str, twiml: str) -> None:
        await self._update_or_raise(call_sid, twiml=twiml)

    async def hold_for_transfer(
        self,
        call_sid: str,
        *,
        room: str,
        label: str,
        to: str,
        caller_id: str | None,
        timeout_s: int,
        summary: str,
        person_called: Callable[[str], None] | None = None,
    ) -> None:
        """A warm transfer: ``to`` is called (whoever answers hears ``summary``, then asks
        ``transfer_join_url?call=…&label=…&to=…`` for the room), then the caller is moved into
        ``room`` (hold music). The person's leg reports its end to ``transfer_status_url`` with the
        same query, where the server decides how the hold ends. The person is called first (and
        ``person_called`` told their CallSid at once): moving the caller stops the stream, and with
        it the call's tasks; when the caller cannot be moved (they hung up), the person's call is
        cancelled."""
        if not caller_id:
            raise TelephonyError(f"a warm transfer to {label} needs a caller ID: set the target's caller_id")
        if self.transfer_status_url is None or self.transfer_join_url is None:
            raise TelephonyError("a warm transfer needs the server's public URL for Twilio's status callback")
        query = urlencode({"call": call_sid, "label": label, "to": to})
        person = briefing_twiml(summary, f"{self.transfer_join_url}?{query}")

        def call() -> str:
            callback = f"{self.transfer_status_url}?{query}"
            with self._client() as client:
                created = client.calls.create(to=to, from_=caller_id, twiml=person, timeout=timeout_s,
                                              status_callback=callback, status_callback_method="POST")  # fmt: skip
            return created.sid or ""

        try:
            person_sid = await trio.to_thread.run_sync(lambda: self._translated(f"call {to} for a warm transfer", call))
        except TwilioRestError as error:
            raise TelephonyError(str(error)) from None
        if person_called is not None:
            person_called(person_sid)
        try:
            await self._update_or_raise(call_sid, twiml=conference_twiml(room, start_on_enter=False))
        except TelephonyError:
            with contextlib.suppress(TwilioRestError):
                await trio.to_thread.run_sync(lambda: self.update(person_sid, status="canceled"))
            raise

    async def _update_or_raise(self, call_sid: str, **fields: Any) -> None:
        try:
            await trio.to_thread.run_sync(lambda: self.update(call_sid, **fields), abandon_on_cancel=True)
        except TwilioRestError as error:
            raise TelephonyError(str(error)) from None


def _describe(exc: Exception, base_url: str, timeout_s: float) -> tuple[RestErrorKind, str, int | None, int | None]:
    """(kind, what happened and what to do, HTTP status, Twilio error code) for a failed call."""
    page_error = _page_error(exc)
    if page_error is not None or isinstance(exc, TwilioRestException | TwilioServiceException):
        if page_error is not None:
            status, code, said = page_error
        else:
            assert isinstance(exc, TwilioRestException | TwilioServiceException)
            status, code, said = int(exc.status), _int_or_none(exc.code), _twilio_message(exc)
        where = f"HTTP {status}" + (f", Twilio error {code}" if code and code != status else "")
        if status in (401, 403):
            advice = "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            return RestErrorKind.AUTH, f"Twilio refused the credentials ({where}: {said}); {advice}", status, code
        if status == 404:
            return RestErrorKind.NOT_FOUND, f"not found on this account ({where}: {said})", status, code
        return RestErrorKind.REJECTED, f"Twilio answered {where}: {said}", status, code
    if isinstance(exc, requests.Timeout):
        return RestErrorKind.UNREACHABLE, f"no answer from {base_url} within {timeout_s:g} s", None, None
    if isinstance(exc, requests.ConnectionError):
        return RestErrorKind.UNREACHABLE, f"cannot connect to {base_url} ({_root_cause(exc)})", None, None
    if isinstance(exc, requests.RequestException):
        return RestErrorKind.UNREACHABLE, f"bad Twilio API URL {base_url} ({type(exc).__name__})", None, None
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | TwilioException):
        advice = "check TWILIO_API_BASE_URL"
        return RestErrorKind.BAD_RESPONSE, f"{base_url} did not answer like the Twilio API; {advice}", None, None
    return RestErrorKind.REJECTED, type(exc).__name__, None, None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _page_error(exc: Exception) -> tuple[int, int | None, str] | None:
    """(status, code, message) of a failed list page: the client raises a bare
    ``TwilioException("Unable to fetch page", response)`` there, not a ``TwilioRestException``."""
    if type(exc) is not TwilioException or len(exc.args) < 2:
        return None
    response = exc.args[1]
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    try:
        body = json.loads(getattr(response, "text", "") or "")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return status, None, f"HTTP {status}"
    return status, _int_or_none(body.get("code")), str(body.get("message") or body.get("title") or f"HTTP {status}")


def _twilio_message(exc: TwilioRestException | TwilioServiceException) -> str:
    """Twilio's own words for the error: the ``message`` (REST) or ``title``/``detail`` (RFC 9457)."""
    if isinstance(exc, TwilioServiceException):
        return exc.detail or exc.title
    msg = str(exc.msg or "")
    return msg.split(": ", 1)[1] if ": " in msg else msg  # twilio prefixes "Unable to fetch page: "


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's text, short (requests wraps urllib3 wraps socket errors)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or (inner.args and isinstance(inner.args[0], BaseException)):
        inner = inner.__cause__ or inner.args[0]
    text = str(inner)
    if "] " in text and text.startswith(("<", "HTTPConnection")):
        text = text.rsplit("] ", 1)[-1]
    return (text or type(inner).__name__)[:160]
