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
  scripted with :meth:`FakeCalls.script_number` (:class:`Answer`). A create with ``Twiml`` instead
  of ``Url`` is the person a warm transfer calls: once answered they hear its ``<Say>`` and join its
  conference (:mod:`adapters.sim.fake_conference`); its final status (``completed`` with
  ``CallDuration``, or ``busy``/``no-answer``/``failed``) goes to its ``StatusCallback``, query intact.
- ``POST /2010-04-01/Accounts/{AC}/Calls/{CA}.json`` (update): ``Status=completed`` hangs the
  call up; ``Twiml=…`` replaces what the call does — ``<Hangup>``, ``<Dial><Number|Sip>`` (the
  fake records the number, caller ID and timeout, and rings a simulated person, who answers unless
  told not to) or ``<Dial><Conference>`` (the caller waits in the room, still in progress; a
  later update with ``<Connect><Stream>`` opens a new media stream of the same call, where the
  simulated caller plays ``FakeCall.resume_script``). Either way the stream gets ``stop``. A call
  that is not in progress answers 400 (Twilio's 21220).
- When *our* side closes the stream, the fake requests the ``<Connect action>`` URL (signed),
  records the TwiML it answers (``FakeCall.action_twiml``) and follows it.
- :meth:`FakeCalls.place_inbound` rings our voice webhook as an inbound call, so REST updates of
  inbound calls are faked too.

Inspect ``FakeCalls.calls`` (sid → :class:`FakeCall`); ``await call.done.wait()`` for the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import httpx2
import msgspec
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError, open_websocket_url

from callbridge.adapters.sim.caller_http import new_sid
from callbridge.adapters.sim.caller_report import CallReport
from callbridge.adapters.sim.caller_script import HangUp, Step, WaitForAssistant, default_script, voicemail_script
from callbridge.adapters.sim.caller_stream import run_stream
from callbridge.adapters.sim.fake_conference import DialLeg, FakeConferences
from callbridge.adapters.sim.fake_twilio_webhooks import (
    API_VERSION,
    Route,
    call_params,
    direct,
    fetch_twiml,
    post_amd,
    post_status,
    signed_post,
)
from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature
from callbridge.adapters.twilio.twiml import TwimlError, parse_connect_action, parse_connect_stream

Reply = tuple[int, dict[str, Any]]


class Answer(msgspec.Struct, kw_only=True):
    """How a called number answers: ``human`` (plays ``script``), ``machine`` (an answering
    machine: greeting, beep, then it records), or never: ``busy``, ``no-answer``, ``failed``."""

    kind: str = "human"
    script: list[Step] | None = None
    ring_s: float = 0.1
    amd: str | None = None
    """``AnsweredBy`` to report (default: ``human`` / ``machine_end_beep``; ``""``: no AMD callback)."""
    talk_s: float = 1.0
    """A person called with ``Twiml`` (a warm transfer): how long they stay in the conference."""
    briefing_s: float = 0.0
    """How long that person's ``<Say>`` (the summary) lasts."""
    leaves_during_briefing_s: float | None = None
    """That person hangs up this long into the summary (before it ends: set ``briefing_s`` longer)."""


__all__ = ["Answer", "DialLeg", "FakeCall", "FakeCalls"]


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
        self.twiml: str = form.get("Twiml", "")
        """What a call created with ``Twiml`` does once answered (a warm transfer's person)."""
        timeout = str(form.get("Timeout", ""))
        self.timeout_s = int(timeout) if timeout.isdigit() else None
        self.heard_say: list[str] = []
        self.rooms: list[str] = []
        """The conference rooms the call was in, in order."""
        self.on_hold_s = 0.0
        """How long the caller stays in a conference before hanging up (0: it only records the room)."""
        self.resume_script: list[Step] = [WaitForAssistant(timeout_s=15), HangUp()]
        """What the caller does on a later stream of the call (back from a hold)."""
        self.status = "queued"
        self.statuses_posted: list[str] = []
        self.status_forms: list[dict[str, str]] = []
        """The status callbacks' forms, as posted (signed) to ``status_callback``."""
        self.voice_twiml = ""
        self.action_twiml: str | None = None
        self.amd_posted: str | None = None
        self.updates: list[dict[str, str]] = []
        self.hung_up_by: str | None = None
        """``rest`` (Status=completed), ``twiml`` (a ``<Hangup>``), ``caller``, ``dial``, ``conference``
        (the room it waited in ended) or ``person`` (a warm transfer's person left the room)."""
        self.pending_twiml: str | None = None
        self.dial: DialLeg | None = None
        self.report: CallReport | None = None
        """The first media stream's; ``reports`` has every stream's, in order."""
        self.reports: list[CallReport] = []
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
        self.conferences = FakeConferences(self.people_answer)
        self.reach: Route = direct
        """Where our server's URLs really go (default: where they say): a test's load balancer."""
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
        if form.get("Status") in ("completed", "canceled") and call.status in ("queued", "initiated", "ringing"):
            call.hung_up_by = "rest"  # cancelled before it was answered
            call.remote_hang_up.set()
            return 200, call.resource(self.account_sid)
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
        on_hold_s: float = 0.0,
        resume_script: Sequence[Step] | None = None,
        status_callback: str = "",
    ) -> FakeCall:
        """Ring ``base_url/twiml`` as an inbound call and carry it to its end; returns the call.
        ``on_hold_s``: how long the caller waits in a conference room; ``resume_script``: what it
        does on a later stream (back from a hold); ``status_callback``: the number's status
        callback, told the call's end (``completed``)."""
        form = {"StatusCallback": status_callback} if status_callback else {}
        call = FakeCall(new_sid("CA"), to=to, from_=from_, direction="inbound", url=f"{base_url}/twiml", form=form)
        call.on_hold_s = on_hold_s
        if resume_script is not None:
            call.resume_script = list(resume_script)
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
                with trio.move_on_after(answer.ring_s):
                    await call.remote_hang_up.wait()
                if call.hung_up_by == "rest":  # cancelled over REST while it rang
                    await self._status(http, call, "canceled")
                    return
                if answer.kind in ("busy", "no-answer", "failed"):
                    await self._status(http, call, answer.kind)
                    return
                if call.twiml:  # a warm transfer's person: the summary, then the room
                    call.answered_at = time.monotonic()
                    await self._status(http, call, "in-progress")
                    redirect = partial(fetch_twiml, http, self.auth_token, self.account_sid, call, route=self.reach)
                    await self.conferences.person(call, answer, redirect)
                    await self._status(http, call, "completed")
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
            params = call_params(self.account_sid, call)
            try:
                call.voice_twiml = await signed_post(
                    http, self.auth_token, call.url, params, expect_xml=True, route=self.reach
                )
            except ValueError as error:
                call.errors.append(str(error))
                await self._status(http, call, "failed")
                return
            twiml: str | None = call.voice_twiml
            while twiml is not None:  # a stream; then another when a REST update sends the call to one
                try:
                    stream_url, parameters = parse_connect_stream(twiml)
                    action = parse_connect_action(twiml)
                except TwimlError as error:
                    call.errors.append(str(error))
                    await self._status(http, call, "failed")
                    return
                report = CallReport(
                    call_sid=call.sid, stream_sid=new_sid("MZ"), from_number=call.from_, to_number=call.to
                )
                call.report = call.report or report
                call.reports.append(report)
                call.remote_hang_up = trio.Event()
                await self._stream(http, call, report, stream_url, parameters, script, amd, machine, keep_audio)
                twiml = await self._after_stream(http, call, report, action, params)
                script, amd = call.resume_script, ""
            await self._status(http, call, "completed")

    async def _stream(
        self,
        http: httpx2.AsyncClient,
        call: FakeCall,
        report: CallReport,
        stream_url: str,
        parameters: dict[str, str],
        script: Sequence[Step],
        amd: str,
        machine: bool,
        keep_audio: bool,
    ) -> None:
        beeped = trio.Event()
        headers = [(SIGNATURE_HEADER.encode(), compute_signature(self.auth_token, stream_url, {}).encode())]
        try:
            async with (
                trio.open_nursery() as nursery,
                open_websocket_url(self.reach(stream_url), extra_headers=headers, connect_timeout=10) as ws,
            ):
                if call.amd_callback and amd:
                    amd_call = partial(post_amd, http, self.auth_token, self.account_sid, call, amd)
                    nursery.start_soon(amd_call, beeped if machine else None, self.reach)
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

    async def _after_stream(
        self, http: httpx2.AsyncClient, call: FakeCall, report: CallReport, action: str | None, params: dict[str, str]
    ) -> str | None:
        """Where the call goes once its stream ended: the next ``<Connect><Stream>`` TwiML, or None
        when it is over."""
        if report.ended_by == "server" and action:  # our side ended the stream: ask what next
            call.action_twiml = await signed_post(
                http, self.auth_token, action, params, expect_xml=True, route=self.reach
            )
            return await self.conferences.follow(call, call.action_twiml)
        if call.pending_twiml is not None:
            twiml, call.pending_twiml = call.pending_twiml, None
            return await self.conferences.follow(call, twiml)
        if call.hung_up_by is None:
            call.hung_up_by = "caller" if report.ended_by in ("caller", "error") else "server"
        return None

    async def _status(self, http: httpx2.AsyncClient, call: FakeCall, status: str) -> None:
        """The call is now ``status`` (a status callback when it asked for the event)."""
        await post_status(http, self.auth_token, self.account_sid, call, status, self.reach)
