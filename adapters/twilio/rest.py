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
  API, a peer that is not Twilio) becomes one ``TwilioRestError`` whose ``kind`` says which and whose
  message says what to do (``adapters/twilio/rest_errors.py``). Messages never carry the auth token.

:class:`TwilioCalls` is the Calls resource the same way: placing an outbound call (``Calls.json``
create, with answering-machine detection) and updating a live one (``Status=completed`` hangs up,
``Twiml=<Response><Dial>…`` transfers). It is the engine's ``Telephony`` (``engine/context.py``):
its ``hang_up``/``redirect`` raise ``TelephonyError`` with the same actionable, token-free messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

import trio
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from callbridge.adapters.twilio.rest_errors import (
    TelephonyError,
    TwilioRestError,
    describe_failure,
    redact,
)
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
            kind, message, status, code = describe_failure(exc, self.base_url or TWILIO_API_BASE_URL, self.timeout_s)
            text = redact(f"could not {doing}: {message}", self._auth_token)
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
