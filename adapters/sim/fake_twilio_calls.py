"""The Calls resource of the fake Twilio REST API, and the phone calls it carries (docs/protocols.md A10).

Why: hang-ups, transfers and outbound calls go through Twilio's REST API and come back as webhooks,
a media stream and callbacks; to test all of it offline, this peer does what Twilio does, over
real sockets, signed with the account's auth token:

- ``POST /2010-04-01/Accounts/{AC}/Calls.json`` (create) answers ``201 {sid, status: queued, …}``
  and then places the call: status callbacks in order (``initiated``, ``ringing``, then
  ``in-progress`` or ``busy``/``no-answer``/``failed``), the voice webhook (``Url``, with
  ``Direction=outbound-api``), the media stream played by the simulated caller
  (:mod:`adapters.sim.caller_stream`), the ``AsyncAmdStatusCallback`` with ``AnsweredBy``
  (a person: ``human`` shortly after answering; an answering machine: ``machine_end_beep`` once
  its beep ended), and ``completed`` with ``CallDuration`` at the end. Who answers a number is
  scripted with :meth:`FakeCalls.script_number` (:class:`Answer`).
- ``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` (update): ``Status=completed`` hangs the
  call up; ``Twiml=…`` replaces what the call does — ``<Hangup>``, ``<Dial><Number|Sip>`` (the
  fake records the number, caller ID and timeout, and rings a simulated person, who answers unless
  told not to) or ``<Dial><Conference>``. Either way the stream gets ``stop``. A call that is not
  in progress answers 400 (Twilio's 21220).
- When *our* side closes the stream, the fake requests the ``<Connect action>`` URL (signed),
  records the TwiML it answers (``FakeCall.action_twiml``) and follows it.
- :meth:`FakeCalls.place_inbound` rings our voice webhook as an inbound call, so REST updates of
  inbound calls are faked too.

Inspect ``FakeCalls.calls`` (sid → :class:`FakeCall`); ``await call.done.wait()`` for the end.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx2
import msgspec
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from callbridge.adapters.sim.caller_http import new_sid
from callbridge.adapters.sim.caller_report import CallReport
from callbridge.adapters.sim.caller_script import Step, default_script, voicemail_script
from callbridge.adapters.sim.caller_stream import run_stream
from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature
from callbridge.adapters.twilio.twiml import TwimlError, parse_connect_action, parse_connect_stream

API_VERSION = "2010-04-01"
HUMAN_AMD_AFTER_S = 0.3
TERMINAL = ("completed", "busy", "no-answer", "failed", "canceled")

Reply = tuple[int, dict[str, Any]]


class Answer(msgspec.Struct, kw_only=True):
    """How a called number answers: ``human`` (plays ``script``), ``machine`` (an answering
    machine: greeting, beep, then it records), or never: ``busy``, ``no-answer``, ``failed``."""

    kind: str = "human"
    script: list[Step] | None = None
    ring_s: float = 0.1
    amd: str | None = None
    """``AnsweredBy`` to report (default: ``human`` / ``machine_end_beep``; ``""``: no AMD callback)."""


class DialLeg(msgspec.Struct, kw_only=True):
    """Where a ``<Dial>`` sent the caller, and what the simulated person there did."""

    to: str
    kind: str
    """``number``, ``sip`` or ``conference``."""
    caller_id: str | None = None
    timeout_s: int | None = None
    rang: bool = False
    answered: bool = False


class FakeCall:
    """One phone call as the fake Twilio sees it."""

    def __init__(self, sid: str, *, to: str, from_: str, direction: str, url: str, form: Mapping[str, Any]) -> None:
        self.sid = sid
        self.to = to
        self.from_ = from_
        self.direction = direction
        self.url = url
        self.status_callback: str = form.get("StatusCallback", "")
        self.status_events: list[str] = list(form.get("StatusCallbackEvent", []) or ["completed"])
        self.amd_callback: str = form.get("AsyncAmdStatusCallback", "")
        self.machine_detection: str = form.get("MachineDetection", "")
        self.status = "queued"
        self.statuses_posted: list[str] = []
        self.voice_twiml = ""
        self.action_twiml: str | None = None
        self.amd_posted: str | None = None
        self.updates: list[dict[str, str]] = []
        self.hung_up_by: str | None = None
        """``rest`` (Status=completed), ``twiml`` (a ``<Hangup>``), ``caller`` or ``dial``."""
        self.pending_twiml: str | None = None
        self.dial: DialLeg | None = None
        self.report: CallReport | None = None
        self.errors: list[str] = []
        self.answered_at: float | None = None
        self.remote_hang_up = trio.Event()
        self.heard_assistant = trio.Event()
        """Set when the first assistant audio reached the phone (the call is live on the server)."""
        self.done = trio.Event()

    @property
    def redirected_to(self) -> str | None:
        return self.dial.to if self.dial is not None else None

    def resource(self, account_sid: str) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": account_sid,
            "to": self.to,
            "from": self.from_,
            "status": self.status,
            "direction": self.direction,
            "api_version": API_VERSION,
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/Calls/{self.sid}.json",
        }


def _error(status: int, code: int, message: str) -> Reply:
    return status, {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
                    "status": status}  # fmt: skip


class FakeCalls:
    """The calls of one fake account. ``nursery`` (set by the server) runs each call."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.calls: dict[str, FakeCall] = {}
        self.numbers: dict[str, Answer] = {}
        self.people_answer: dict[str, bool] = {}
        """``<Dial>`` targets and whether the simulated person there picks up (default yes)."""
        self.fail_next: list[Reply] = []
        """Errors to answer to the next create or update requests, in order (Twilio refusing)."""
        self.nursery: trio.Nursery | None = None
        self.placed = trio.Event()
        self.on_call: Callable[[FakeCall], None] | None = None

    def script_number(self, number: str, answer: Answer) -> None:
        self.numbers[number] = answer

    # --- REST (called from the HTTP handler) ---------------------------------------------------

    def route(self, method: str, sid: str | None, form: Mapping[str, Any]) -> Reply:
        """``Calls.json`` (create) or ``Calls/{sid}.json`` (fetch, update); ``form`` values are
        strings, or lists for repeated fields."""
        single = {key: value[-1] if isinstance(value, list) else value for key, value in form.items()}
        if sid is None and method == "POST":
            return self.create({**single, "StatusCallbackEvent": form.get("StatusCallbackEvent", [])})
        if sid is not None and method == "GET":
            return self.fetch(sid)
        if sid is not None and method == "POST":
            return self.update(sid, single)
        return _error(405, 20004, "Method not allowed")  # listing and deleting calls are not faked

    def create(self, form: Mapping[str, Any]) -> Reply:
        if self.fail_next:
            return self.fail_next.pop(0)
        to, from_, url = form.get("To", ""), form.get("From", ""), form.get("Url", "")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21603, "A 'From' phone number is required.")
        if not url and not form.get("Twiml"):
            return _error(400, 21205, "Url parameter is required.")
        call = FakeCall(new_sid("CA"), to=to, from_=from_, direction="outbound-api", url=url, form=form)
        self.calls[call.sid] = call
        if self.nursery is None:
            return _error(500, 20500, "the fake is not serving")
        self.nursery.start_soon(self._run_outbound, call, self.numbers.get(to, Answer()))
        self.placed.set()
        self.placed = trio.Event()
        return 201, call.resource(self.account_sid)

    def fetch(self, sid: str) -> Reply:
        call = self.calls.get(sid)
        if call is None:
            return _error(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
        return 200, call.resource(self.account_sid)

    def update(self, sid: str, form: Mapping[str, str]) -> Reply:
        call = self.calls.get(sid)
        if call is None:
            return _error(404, 20404, f"The requested resource /Calls/{sid}.json was not found")
        if self.fail_next:
            return self.fail_next.pop(0)
        call.updates.append(dict(form))
        if call.status != "in-progress":
            return _error(400, 21220, "Call is not in-progress. Cannot redirect.")
        if form.get("Status") == "completed":
            call.hung_up_by = "rest"
        elif form.get("Twiml"):
            call.pending_twiml = form["Twiml"]
        elif form.get("Url"):
            return _error(400, 21205, "the fake does not fetch a new Url; send Twiml")
        else:
            return _error(400, 20001, "Nothing to update: send Status=completed or Twiml")
        call.remote_hang_up.set()
        return 200, call.resource(self.account_sid)

    # --- placing calls -------------------------------------------------------------------------

    async def place_inbound(
        self,
        base_url: str,
        *,
        script: Sequence[Step] | None = None,
        from_: str = "+15005550006",
        to: str = "+15005550001",
        keep_audio: bool = True,
    ) -> FakeCall:
        """Ring ``base_url/twiml`` as an inbound call and carry it to its end; returns the call."""
        call = FakeCall(new_sid("CA"), to=to, from_=from_, direction="inbound", url=f"{base_url}/twiml", form={})
        self.calls[call.sid] = call
        if self.on_call is not None:
            self.on_call(call)
        try:
            await self._answered(call, Answer(script=list(script or default_script(8.0))), keep_audio=keep_audio)
        except (httpx2.HTTPError, OSError, ValueError) as error:
            call.errors.append(f"{type(error).__name__}: {error}")
        finally:
            call.done.set()
        return call

    async def _run_outbound(self, call: FakeCall, answer: Answer) -> None:
        if self.on_call is not None:
            self.on_call(call)
        try:
            async with httpx2.AsyncClient(timeout=10.0) as http:
                await self._status(http, call, "initiated")
                await self._status(http, call, "ringing")
                await trio.sleep(answer.ring_s)
                if answer.kind in ("busy", "no-answer", "failed"):
                    await self._status(http, call, answer.kind)
                    return
            await self._answered(call, answer, keep_audio=True)
        except (httpx2.HTTPError, OSError, ValueError) as error:
            call.errors.append(f"{type(error).__name__}: {error}")
        finally:
            call.done.set()

    async def _answered(self, call: FakeCall, answer: Answer, *, keep_audio: bool) -> None:
        machine = answer.kind == "machine"
        script = answer.script or (voicemail_script() if machine else default_script(8.0))
        amd = answer.amd if answer.amd is not None else ("machine_end_beep" if machine else "human")
        call.answered_at = time.monotonic()
        async with httpx2.AsyncClient(timeout=10.0) as http:
            call.status = "in-progress"
            if call.direction != "inbound":
                await self._status(http, call, "in-progress")
            params = self._params(call)
            try:
                call.voice_twiml = await self._post(http, call.url, params, expect_xml=True)
                stream_url, parameters = parse_connect_stream(call.voice_twiml)
                action = parse_connect_action(call.voice_twiml)
            except (TwimlError, ValueError) as error:
                call.errors.append(str(error))
                await self._finish(http, call, "failed")
                return
            report = CallReport(call_sid=call.sid, stream_sid=new_sid("MZ"), from_number=call.from_, to_number=call.to)
            call.report = report
            beeped = trio.Event()
            headers = [(SIGNATURE_HEADER.encode(), compute_signature(self.auth_token, stream_url, {}).encode())]
            try:
                async with (
                    trio.open_nursery() as nursery,
                    open_websocket_url(stream_url, extra_headers=headers, connect_timeout=10) as ws,
                ):
                    if call.amd_callback and amd:
                        nursery.start_soon(self._amd, http, call, amd, beeped if machine else None)
                    await run_stream(
                        ws,
                        report,
                        script=script,
                        account_sid=self.account_sid,
                        custom_parameters=parameters,
                        keep_audio=keep_audio,
                        remote_hang_up=call.remote_hang_up,
                        on_beep=beeped.set,
                        on_media_received=lambda _now, _media: call.heard_assistant.set(),
                    )
                    nursery.cancel_scope.cancel()
            except (ConnectionRejected, ConnectionClosed, HandshakeError) as error:
                call.errors.append(f"stream: {error!r}")
            await self._after_stream(http, call, report, action, params)

    async def _after_stream(
        self, http: httpx2.AsyncClient, call: FakeCall, report: CallReport, action: str | None, params: dict[str, str]
    ) -> None:
        if report.ended_by == "server" and action:  # our side ended the stream: ask what next
            call.action_twiml = await self._post(http, action, params, expect_xml=True)
            self._follow(call, call.action_twiml)
        elif call.pending_twiml is not None:
            self._follow(call, call.pending_twiml)
        elif call.hung_up_by is None:
            call.hung_up_by = "caller" if report.ended_by in ("caller", "error") else "server"
        await self._finish(http, call, "completed")

    def _follow(self, call: FakeCall, twiml: str) -> None:
        """Carry out the TwiML a call was given once its stream ended."""
        try:
            root = ET.fromstring(twiml)
        except ET.ParseError as error:
            call.errors.append(f"TwiML is not XML: {error}")
            call.hung_up_by = "twiml"
            return
        dial = root.find("Dial")
        if dial is None:
            call.hung_up_by = "twiml"  # <Hangup/>, or nothing left to do
            return
        timeout = dial.get("timeout")
        for child in dial:
            kind = {"Number": "number", "Sip": "sip", "Conference": "conference"}.get(child.tag)
            if kind is None:
                continue
            target = (child.text or "").strip()
            answered = self.people_answer.get(target, True)
            call.dial = DialLeg(
                to=target,
                kind=kind,
                caller_id=dial.get("callerId"),
                timeout_s=int(timeout) if timeout and timeout.isdigit() else None,
                rang=True,
                answered=answered,
            )
            break
        call.hung_up_by = "dial"

    async def _finish(self, http: httpx2.AsyncClient, call: FakeCall, status: str) -> None:
        call.status = status
        await self._status(http, call, status)

    # --- webhooks ------------------------------------------------------------------------------

    def _params(self, call: FakeCall) -> dict[str, str]:
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": call.status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
        }

    async def _post(self, http: httpx2.AsyncClient, url: str, form: dict[str, str], *, expect_xml: bool = False) -> str:
        headers = {SIGNATURE_HEADER: compute_signature(self.auth_token, url, form)}
        response = await http.post(url, data=form, headers=headers)
        if not 200 <= response.status_code < 300:
            raise ValueError(f"{url} answered HTTP {response.status_code}: {response.text[:200]!r}")
        if expect_xml and "xml" not in response.headers.get("content-type", ""):
            raise ValueError(f"{url} answered {response.headers.get('content-type')!r}, not TwiML")
        return response.text

    async def _status(self, http: httpx2.AsyncClient, call: FakeCall, status: str) -> None:
        """A status callback, when the call asked for this event (``in-progress`` is ``answered``)."""
        call.status = status
        event = {"in-progress": "answered", "busy": "completed", "no-answer": "completed", "failed": "completed"}
        if not call.status_callback or event.get(status, status) not in call.status_events:
            return
        form = {**self._params(call), "CallbackSource": "call-progress-events"}
        form["SequenceNumber"] = str(len(call.statuses_posted))
        if status in TERMINAL and call.answered_at is not None:
            form["CallDuration"] = str(round(time.monotonic() - call.answered_at))
        call.statuses_posted.append(status)
        try:
            await self._post(http, call.status_callback, form)
        except (ValueError, httpx2.HTTPError, OSError) as error:
            call.errors.append(f"status callback {status}: {error}")

    async def _amd(self, http: httpx2.AsyncClient, call: FakeCall, answered_by: str, beeped: trio.Event | None) -> None:
        started = time.monotonic()
        if beeped is not None:
            await beeped.wait()
        else:
            await trio.sleep(HUMAN_AMD_AFTER_S)
        form = {
            "AccountSid": self.account_sid,
            "CallSid": call.sid,
            "AnsweredBy": answered_by,
            "MachineDetectionDuration": str(round((time.monotonic() - started) * 1000)),
        }
        call.amd_posted = answered_by
        try:
            await self._post(http, call.amd_callback, form)
        except (ValueError, httpx2.HTTPError, OSError) as error:
            call.errors.append(f"AMD callback: {error}")
