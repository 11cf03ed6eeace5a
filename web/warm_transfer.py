"""Warm transfers, the server's part: how a held call ends, or how it comes back to the agent.

The call core holds the caller in a conference room and has Twilio call the person
(``engine/call_transfer.py``, ``TwilioCalls.hold_for_transfer``); the call's stream ends there with
``CallHeld`` and no ``CallEnded`` — the call goes on in Twilio. The person hears the summary
(``<Say>``), then their leg asks ``POST /twilio/transfer-join?call=<the caller's
CallSid>&label=…&to=…`` for the room (``<Redirect>``): that is recorded (``TransferBriefed``) and
answered with the room — or, when the caller left meanwhile, with an apology and ``<Hangup/>``.
Twilio runs the verbs in order, so a person who hangs up during the summary never asks. What
happens next the person's leg tells in its final status callback, ``POST
/twilio/transfer-status`` with the same query, signed like every Twilio webhook:

- ``completed`` after ``TransferBriefed``: the person joined and talked. The room ended when
  they hung up (``endConferenceOnExit``), so the caller's call is over:
  ``CallEnded(reason="transferred", detail=label)``.
- ``busy``, ``no-answer``, ``failed``, ``canceled``, or ``completed`` without ``TransferBriefed``
  (the person hung up during the summary): nobody took it.
  ``TransferNotAnswered(label, to, status, reason)`` is recorded, then the caller's call is redirected over
  REST to a ``<Connect><Stream>`` built like ``/twiml``'s, with a ``callbridge_resume`` parameter:
  a token bound to the call and to this hold (``web/call_admission.py``), so the new stream is let
  in as the same call, carries on from its log (``CallResumed``) and the agent says the agent's
  ``transfer_no_answer_message``. When the redirect fails the caller hung up while on hold:
  ``CallEnded(reason="caller_hangup", detail="while on hold")``.

Why it is written so:

- **Decided from the log, appended with optimistic concurrency.** The callback may reach any
  engine, and Twilio retries callbacks. Each decision reads the call's log and appends only if
  nothing was stored for the call since (``EventStore.append_if_unchanged``; a conflict reads again
  and decides again), so a callback that comes twice — or to two engines at once — changes nothing
  the second time, and the call's stream is continued at its stored version, never beside it.
- **The hold may not be in the log yet**: the engine that held the call writes every 100 ms and a
  busy line answers within a second, so the callback waits up to :data:`HOLD_WAIT_S` for the
  ``CallHeld``.
- **The outcome is written before the caller is redirected**, so the resumed stream, on whatever
  engine it lands, finds ``TransferNotAnswered`` in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

import trio
from eventsourcing.persistence import IntegrityError
from quart import Response

from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.adapters.twilio.rest_errors import TelephonyError
from callbridge.adapters.twilio.signature import webhook_url
from callbridge.adapters.twilio.twiml import conference_twiml, say_and_hang_up_twiml
from callbridge.engine.events import CallEnded, Event, TransferBriefed, TransferNotAnswered
from callbridge.web.call_admission import Hold, StartRefused, check_sid, hold_of, printable, resume_token
from callbridge.web.media import RESUME_PARAMETER

if TYPE_CHECKING:
    from callbridge.server import Server

log = logging.getLogger(__name__)

TRANSFER_STATUS_PATH = "/twilio/transfer-status"
TRANSFER_JOIN_PATH = "/twilio/transfer-join"
FINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
HOLD_WAIT_S = 5.0
"""How long a callback waits for the call's ``CallHeld`` to reach the log."""
POLL_S = 0.1
ATTEMPTS = 5
"""Decisions tried when other writers keep appending to the call meanwhile."""

MISSED = {
    "completed": "the person hung up during the briefing",
    "busy": "the line was busy",
    "no-answer": "nobody answered",
    "failed": "the call to the person could not be placed",
    "canceled": "the call to the person was cancelled before anyone answered",
}
"""Why a transfer was not taken, by the person's final status (``completed``: before joining)."""
CALLER_GONE = "Sorry, the caller is no longer waiting. Goodbye."
"""What a person who finished the summary hears when the caller left the hold meanwhile."""

StreamTwiml = Callable[[dict[str, str]], str]
"""``/twiml``'s builder: ``<Connect action><Stream>`` with these parameters and the per-call token."""


def tell_transfer_status_url(telephony: object, public_url: str) -> None:
    """Once the server knows its public URL: where a warm transfer's person leg asks to join the
    caller, and where it reports its end."""
    if isinstance(telephony, TwilioCalls):
        telephony.transfer_status_url = webhook_url(public_url, TRANSFER_STATUS_PATH)
        telephony.transfer_join_url = webhook_url(public_url, TRANSFER_JOIN_PATH)


def _text(status: int, message: str) -> Response:
    return Response(message + "\n", status=status, content_type="text/plain")


async def transfer_status_reported(
    server: Server, query: Mapping[str, str], params: Mapping[str, str], stream_twiml: StreamTwiml
) -> Response:
    """``POST /twilio/transfer-status`` (signature already checked): record how the warm transfer of
    call ``query["call"]`` ended and, when nobody took it, bring the caller back to the agent."""
    call_sid, label, to = query.get("call", ""), query.get("label", ""), query.get("to", "")
    try:
        check_sid("CallSid", call_sid)
    except StartRefused as error:
        return _text(400, f"'call' in the query string: {error}; expected ?call=<the held caller's CallSid>")
    status = params.get("CallStatus", "")
    if status not in FINAL_STATUSES:  # the person's phone is ringing or was answered: the end decides
        return Response("", status=204)
    secret = server.settings.twilio_auth_token
    await server.writer.flush()  # a hold this engine recorded an instant ago
    for _ in range(ATTEMPTS):
        hold = await _held(server, call_sid)
        if hold.held is None:
            return _text(404, f"call {call_sid} is not held for a warm transfer (no CallHeld in its log)")
        if not hold.on_hold or hold.not_answered is not None or (label, to) != (hold.held.label, hold.held.to):
            return Response("", status=204)  # decided already (Twilio retried), or a leg of an earlier hold
        now = server.now()
        if status == "completed" and hold.briefed is not None:  # they heard the summary and joined
            ended = CallEnded(call_id=call_sid, at=now, reason="transferred", detail=label)
            if await append_after(server, hold, ended):
                duration = params.get("CallDuration", "")
                log.info("call %s: transferred to %s (%s s with the person)", call_sid, printable(label), duration)
                return Response("", status=204)
            continue
        if server.telephony is None or not secret:
            return _text(503, "this engine has no Twilio credentials: it cannot bring the caller back; set them")
        why = MISSED.get(status, status)
        missed = TransferNotAnswered(call_id=call_sid, at=now, label=label, to=to, status=status, reason=why)
        if await append_after(server, hold, missed):
            await _bring_back(server, hold, call_sid, resume_token(secret, call_sid, hold.held_version), stream_twiml)
            return Response("", status=204)
    return _text(503, f"call {call_sid} kept changing while this callback was decided; retry")


async def transfer_join_requested(server: Server, query: Mapping[str, str], params: Mapping[str, str]) -> Response:
    """``POST /twilio/transfer-join`` (signature already checked): the person heard the whole
    summary (the ``<Redirect>`` after the ``<Say>``). Record ``TransferBriefed`` and answer the
    room; when the caller is no longer waiting there, tell the person so and hang up."""
    call_sid, label, to = query.get("call", ""), query.get("label", ""), query.get("to", "")
    try:
        check_sid("CallSid", call_sid)
    except StartRefused as error:
        return _text(400, f"'call' in the query string: {error}; expected ?call=<the held caller's CallSid>")
    await server.writer.flush()
    for _ in range(ATTEMPTS):
        hold = await _held(server, call_sid)
        if hold.held is None or not hold.on_hold or hold.not_answered is not None or hold.end_requested is not None:
            return _twiml(say_and_hang_up_twiml(CALLER_GONE))
        if (label, to) != (hold.held.label, hold.held.to):
            return _twiml(say_and_hang_up_twiml(CALLER_GONE))  # a leg of an earlier hold
        room = conference_twiml(hold.held.room, start_on_enter=True)
        if hold.briefed is not None:  # Twilio asked again
            return _twiml(room)
        person_sid = params.get("CallSid", "")
        briefed = TransferBriefed(call_id=call_sid, at=server.now(), label=label, to=to, person_sid=person_sid)
        if await append_after(server, hold, briefed):
            log.info("call %s: %s heard the summary and joins the caller", call_sid, printable(label))
            return _twiml(room)
    return _twiml(say_and_hang_up_twiml(CALLER_GONE))


def _twiml(body: str) -> Response:
    return Response(body, content_type="text/xml")


async def _held(server: Server, call_sid: str) -> Hold:
    """The call's hold as the log says, waiting up to :data:`HOLD_WAIT_S` for its ``CallHeld``."""
    with trio.move_on_after(HOLD_WAIT_S):
        while True:
            read = partial(server.store.read_call, call_sid)
            hold = hold_of(await trio.to_thread.run_sync(read, limiter=server.db_threads))
            if hold.held is not None:
                return hold
            await trio.sleep(POLL_S)
    return hold


async def append_after(server: Server, hold: Hold, event: Event) -> bool:
    """Append ``event`` right after the call's last stored event; False when something else was
    stored for the call since it was read (decide again)."""
    append = partial(server.store.append_if_unchanged, event.call_id, hold.last_version, [event])
    try:
        await trio.to_thread.run_sync(append, limiter=server.db_threads)
    except IntegrityError:
        return False
    return True


async def _bring_back(server: Server, hold: Hold, call_sid: str, token: str, stream_twiml: StreamTwiml) -> None:
    """Redirect the held caller to a new stream of the same call, or record that they hung up."""
    started = hold.started
    parameters = {
        "From": started.from_number if started else "",
        "To": started.to_number if started else "",
        "CallSid": call_sid,
        "Direction": (started.custom_parameters.get("Direction") if started else "") or "inbound",
        RESUME_PARAMETER: token,
    }
    assert server.telephony is not None
    try:
        await server.telephony.redirect(call_sid, stream_twiml(parameters))
    except TelephonyError as error:
        log.info("call %s: the caller left the hold before the transfer was given up (%s)", call_sid, error)
        await _end_on_hold(server, call_sid)
        return
    label = hold.held.label if hold.held else ""
    log.info("call %s: nobody took the transfer to %s: back to the agent", call_sid, printable(label))


async def _end_on_hold(server: Server, call_sid: str) -> None:
    """``CallEnded(caller_hangup, "while on hold")``, unless the call ended or came back meanwhile."""
    for _ in range(ATTEMPTS):
        hold = await _held(server, call_sid)
        if not hold.on_hold:
            return
        ended = CallEnded(call_id=call_sid, at=server.now(), reason="caller_hangup", detail="while on hold")
        if await append_after(server, hold, ended):
            return
