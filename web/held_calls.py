"""Ending a call that a warm transfer holds: the caller hangs up on hold, or an operator hangs it up.

A held call (``CallHeld``, no ``CallEnded``) is live on no engine: its stream ended when the caller
was moved into the conference room, and the call goes on in Twilio (``web/warm_transfer.py``). Two
things can end it besides the person's leg:

- **The caller hangs up while waiting.** Twilio reports the caller's own call ``completed`` to
  ``/twilio/status`` (the number's status callback; an outbound call's own). :func:`caller_left`
  records ``CallEnded(reason="caller_hangup", detail="while on hold")`` and ends the call to the
  person through Twilio's REST API (``Status=completed``: a ringing call is cancelled, one hearing
  the summary is hung up) — nobody is put through to an empty room. When the person had already
  joined (``TransferBriefed``), the room ended with the caller: that is the transfer, ended
  ``transferred``, and the person's leg is left to Twilio.
- **An operator hangs it up** (``POST /api/calls/{id}/hangup``, the console's button).
  :func:`hang_up_held` records ``CallEndRequested(by="operator")`` first — so the caller's own
  final status callback, which our hang-up causes, ends the call as the operator's, not as the
  caller's hang-up —, then ends the caller's leg (REST ``Status=completed``) and the person's, and
  records ``CallEnded(reason="operator_hangup", detail="while on hold")``.

Both decide from the call's log and append with optimistic concurrency, as the transfer callback
does, so a callback that comes twice, or to two engines, ends the call once.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import TYPE_CHECKING

import trio

from callbridge.adapters.twilio.rest_errors import TelephonyError
from callbridge.engine.events import CallEnded, CallEndRequested, Event
from callbridge.web.call_admission import Hold, hold_of, printable
from callbridge.web.warm_transfer import ATTEMPTS, append_after

if TYPE_CHECKING:
    from callbridge.server import Server

log = logging.getLogger(__name__)

WHILE_ON_HOLD = "while on hold"
FLUSH_WAIT_S = 1.0
HELD_TAIL = 16
"""Events read from a call's end to tell whether it is held: after its ``CallHeld`` come at most a
few (``TransferBriefed``, ``CallEndRequested``, status callbacks)."""


class HangUpFailed(Exception):
    """Twilio refused (or did not answer) the hang-up of a held caller; the message says why."""


async def read_hold(server: Server, call_sid: str) -> Hold:
    """The call's hold as its log says now (no wait: a call never held answers at once)."""
    read = partial(server.store.read_call, call_sid)
    return hold_of(await trio.to_thread.run_sync(read, limiter=server.db_threads))


async def _held_now(server: Server, call_sid: str) -> bool:
    """Whether the call is held, from its last events (a call that is not is never read whole).
    What this engine recorded an instant ago (a hold) is written first — for at most
    :data:`FLUSH_WAIT_S`, and not at all while the store is failing: Twilio's callback is answered
    in time either way."""
    if not server.writer.stuck:
        with trio.move_on_after(FLUSH_WAIT_S):
            await server.writer.flush()
    tail = partial(server.store.read_call_tail, call_sid, HELD_TAIL)
    return hold_of(await trio.to_thread.run_sync(tail, limiter=server.db_threads)).on_hold


def _end_of(hold: Hold, call_sid: str, now: float) -> CallEnded:
    """How a held call ends when the caller's own leg is over."""
    assert hold.held is not None
    if hold.briefed is not None:  # the person was put through: the room ended with the caller
        return CallEnded(call_id=call_sid, at=now, reason="transferred", detail=hold.held.label)
    if hold.end_requested is not None:
        return CallEnded(call_id=call_sid, at=now, reason="operator_hangup", detail=WHILE_ON_HOLD)
    return CallEnded(call_id=call_sid, at=now, reason="caller_hangup", detail=WHILE_ON_HOLD)


async def _record_end(server: Server, call_sid: str) -> Hold | None:
    """Append the held call's ``CallEnded``; the hold it ended, or None when it was not on hold
    (any more)."""
    for _ in range(ATTEMPTS):
        hold = await read_hold(server, call_sid)
        if not hold.on_hold:
            return None
        if await append_after(server, hold, _end_of(hold, call_sid, server.now())):
            return hold
    log.warning("call %s: kept changing while its end on hold was recorded", call_sid)
    return None


async def end_person_leg(server: Server, hold: Hold) -> str:
    """End the call to the person a hold dialled (REST ``Status=completed``), unless they are
    already through to the caller or their call is over; returns the person's CallSid (or "")."""
    if hold.held is None or hold.briefed is not None or hold.not_answered is not None:
        return ""
    sid = hold.held.person_sid
    if not sid or server.telephony is None:
        log.warning("call %s: the call to %s cannot be cancelled (no CallSid or no Twilio credentials)",
                    hold.held.room, printable(hold.held.label))  # fmt: skip
        return ""
    try:
        await server.telephony.hang_up(sid)
    except TelephonyError as error:  # it ended meanwhile
        log.info("call to %s (%s) not ended: %s", printable(hold.held.label), sid, error)
        return ""
    log.info("call %s: the call to %s (%s) was ended", hold.held.room, printable(hold.held.label), sid)
    return sid


async def caller_left(server: Server, call_sid: str, status: str) -> None:
    """The caller's own call reported ``status`` (a final one) to ``/twilio/status``: when its log
    says it is held, end it, and end the call to the person who was being dialled or briefed."""
    if not await _held_now(server, call_sid):
        return  # not held: its stream recorded its end (the usual case)
    ended = await _record_end(server, call_sid)
    if ended is not None:
        log.info("call %s: the caller left the hold (%s)", call_sid, status)
        await end_person_leg(server, ended)


async def hang_up_held(server: Server, call_sid: str, reason: str) -> bool:
    """An operator hangs up ``call_sid``: False when it is not held; else it is ended (caller's
    leg and person's leg, through Twilio) and True. Raises :class:`HangUpFailed` when Twilio
    refuses or is unreachable (the request can be repeated)."""
    if not await _held_now(server, call_sid):
        return False
    hold = await read_hold(server, call_sid)
    if server.telephony is None:
        raise HangUpFailed(
            "a held call is ended through Twilio's REST API and this engine has no Twilio credentials: "
            "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
        )
    for _ in range(ATTEMPTS):
        if not hold.on_hold:
            return True  # it ended meanwhile
        if hold.end_requested is not None:
            break
        asked: Event = CallEndRequested(call_id=call_sid, at=server.now(), by="operator", reason=reason)
        if await append_after(server, hold, asked):
            break
        hold = await read_hold(server, call_sid)
    try:
        await server.telephony.hang_up(call_sid)
    except TelephonyError as error:
        raise HangUpFailed(f"Twilio did not hang up the held call: {error}; try again") from None
    ended = await _record_end(server, call_sid)
    if ended is not None:
        await end_person_leg(server, ended)
    log.info("call %s: hung up on hold by an operator", call_sid)
    return True
