"""Where the fake Twilio sends a call once its stream is over: ``<Dial>``, conference rooms, and the
person a warm transfer calls.

Why: a warm transfer (``engine/call_transfer.py``) moves the caller into ``<Dial><Conference
startConferenceOnEnter="false">`` (hold music until someone starts the room) and places a call
with ``Twiml=<Say>summary</Say><Redirect>…/twilio/transfer-join…</Redirect>``, whose answer is
``<Dial><Conference startConferenceOnEnter="true" endConferenceOnExit="true">``. To test it
offline, this module does with those documents what Twilio does:

- :meth:`FakeConferences.follow` carries out the TwiML a call got when its stream ended (a REST
  update, or the ``<Connect action>`` answer): ``<Hangup/>`` ends it; ``<Dial><Number|Sip>`` rings
  the simulated person there (``people_answer``) and the call is over for us; ``<Dial><Conference>``
  puts it in the room, where it stays ``in-progress`` until the room ends (someone with
  ``endConferenceOnExit`` left), it is redirected again (a ``<Connect><Stream>`` is handed back to
  the calls module, which opens a new media stream of the same call), it is hung up over REST, or
  the simulated caller gives up (``FakeCall.on_hold_s``: how long it stays on hold);
- :meth:`FakeConferences.person` is the leg of the person a warm transfer calls, once they answered:
  the ``<Say>`` text they heard (``FakeCall.heard_say``; ``Answer.briefing_s`` long, and they may
  hang up during it: ``Answer.leaves_during_briefing_s``), the ``<Redirect>`` they follow when it is
  over, the room they join, how long they talk (``Answer.talk_s``). A REST hang-up ends them at
  any point.

``FakeConferences.rooms`` (name → :class:`Room`) shows who was in each room and whether the caller
and the person were in it together.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import msgspec
import trio

if TYPE_CHECKING:
    from callbridge.adapters.sim.fake_twilio_calls import Answer, FakeCall

Redirect = Callable[[str], Awaitable[str]]
"""Requests a ``<Redirect>``'s URL for the call (signed) and returns the TwiML it answers."""


class DialLeg(msgspec.Struct, kw_only=True):
    """Where a ``<Dial>`` sent the caller, and what the simulated person there did."""

    to: str
    kind: str
    """``number``, ``sip`` or ``conference``."""
    caller_id: str | None = None
    timeout_s: int | None = None
    rang: bool = False
    answered: bool = False


class Room:
    """One conference: who is in it, who ever was, and whether it started and ended."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.present: dict[str, bool] = {}
        """Call SIDs in the room now → whether their leaving ends it (``endConferenceOnExit``)."""
        self.joined: list[str] = []
        """Every call SID that was ever in the room, in order."""
        self.started = False
        """Someone with ``startConferenceOnEnter`` joined: those waiting stop hearing hold music."""
        self.most_present = 0
        """The most participants at once (2: the caller and the person were in the room together)."""
        self.ended = trio.Event()

    def join(self, sid: str, *, start: bool, end_on_exit: bool) -> None:
        self.present[sid] = end_on_exit
        self.joined.append(sid)
        self.started = self.started or start
        self.most_present = max(self.most_present, len(self.present))

    def leave(self, sid: str) -> None:
        """``sid`` left; the room ends when its leaving ends it, or when nobody is left."""
        if sid not in self.present:
            return
        ends = self.present.pop(sid)
        if ends or not self.present:
            self.ended.set()


def _flag(element: ET.Element, name: str, default: bool) -> bool:
    value = element.get(name)
    return default if value is None else value.strip().lower() == "true"


async def _first_of(*events: trio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    async with trio.open_nursery() as nursery:

        async def wait(event: trio.Event) -> None:
            await event.wait()
            nursery.cancel_scope.cancel()

        for event in events:
            nursery.start_soon(wait, event)


class FakeConferences:
    """The rooms of one fake account, and how calls move through ``<Dial>``."""

    def __init__(self, people_answer: Mapping[str, bool]) -> None:
        self.rooms: dict[str, Room] = {}
        self.people_answer = people_answer
        """``<Dial>`` targets and whether the simulated person there picks up (default yes)."""

    def room(self, name: str) -> Room:
        """The room called ``name``; a new one when there is none or the last one ended (Twilio
        starts a new conference under the same name)."""
        room = self.rooms.get(name)
        if room is None or room.ended.is_set():
            room = self.rooms[name] = Room(name)
        return room

    async def follow(self, call: FakeCall, twiml: str) -> str | None:
        """Carry out ``twiml`` for a call whose stream ended. Returns the ``<Connect><Stream>``
        TwiML the call was sent to next (a new media stream of the same call), or None when the
        call is over for the fake's caller (``call.hung_up_by`` says how)."""
        while True:
            try:
                root = ET.fromstring(twiml)
            except ET.ParseError as error:
                call.errors.append(f"TwiML is not XML: {error}")
                call.hung_up_by = "twiml"
                return None
            if root.find("Connect/Stream") is not None:
                return twiml
            dial = root.find("Dial")
            if dial is None:
                call.hung_up_by = "twiml"  # <Hangup/>, or nothing left to do
                return None
            conference = dial.find("Conference")
            if conference is None:
                self._dial(call, dial)
                return None
            redirected = await self.hold(call, conference)
            if redirected is None:
                return None
            twiml = redirected

    def _dial(self, call: FakeCall, dial: ET.Element) -> None:
        timeout = dial.get("timeout")
        for child in dial:
            kind = {"Number": "number", "Sip": "sip"}.get(child.tag)
            if kind is None:
                continue
            target = (child.text or "").strip()
            call.dial = DialLeg(
                to=target,
                kind=kind,
                caller_id=dial.get("callerId"),
                timeout_s=int(timeout) if timeout and timeout.isdigit() else None,
                rang=True,
                answered=self.people_answer.get(target, True),
            )
            break
        call.hung_up_by = "dial"

    async def hold(self, call: FakeCall, conference: ET.Element) -> str | None:
        """The caller is in the room until it ends, a REST update moves it (the TwiML it got is
        returned), or it hangs up after ``call.on_hold_s``."""
        room = self.room((conference.text or "").strip())
        call.dial = DialLeg(to=room.name, kind="conference")
        call.rooms.append(room.name)
        call.pending_twiml = None
        redirected = call.remote_hang_up = trio.Event()
        room.join(
            call.sid,
            start=_flag(conference, "startConferenceOnEnter", True),
            end_on_exit=_flag(conference, "endConferenceOnExit", False),
        )
        with trio.move_on_at(trio.current_time() + max(0.0, call.on_hold_s)) as patience:
            await _first_of(room.ended, redirected)
        room.leave(call.sid)
        if patience.cancelled_caught:
            call.hung_up_by = "caller"  # tired of the hold music
            return None
        if redirected.is_set() and call.hung_up_by != "rest":
            twiml, call.pending_twiml = call.pending_twiml, None
            return twiml
        call.hung_up_by = call.hung_up_by or "conference"
        return None

    async def person(self, call: FakeCall, answer: Answer, redirect: Redirect) -> None:
        """A warm transfer's person answered ``call.twiml``: they hear its ``<Say>`` (the summary,
        ``answer.briefing_s`` long, unless they hang up ``answer.leaves_during_briefing_s`` into it or
        are hung up over REST), follow its ``<Redirect>`` (``redirect`` fetches the TwiML there),
        join the ``<Dial><Conference>`` they get, talk for ``answer.talk_s`` (or until the room ends
        or they are hung up over REST), and leave."""
        try:
            root = ET.fromstring(call.twiml)
        except ET.ParseError as error:
            call.errors.append(f"TwiML is not XML: {error}")
            return
        call.heard_say = [(say.text or "").strip() for say in root.iter("Say")]
        leaves = answer.leaves_during_briefing_s
        listening = answer.briefing_s if leaves is None else min(leaves, answer.briefing_s)
        with trio.move_on_after(listening):
            await call.remote_hang_up.wait()
        if call.hung_up_by is not None:
            return  # ended over REST during the summary
        if leaves is not None and leaves < answer.briefing_s:
            call.hung_up_by = "person"  # hung up during the summary: Twilio runs no further verb
            return
        target = root.find("Redirect")
        if target is not None:
            try:
                root = ET.fromstring(await redirect((target.text or "").strip()))
            except ET.ParseError as error:
                call.errors.append(f"TwiML is not XML: {error}")
                return
            call.heard_say += [(say.text or "").strip() for say in root.iter("Say")]
        conference = root.find("Dial/Conference")
        if conference is None:
            call.hung_up_by = "twiml"
            return
        room = self.room((conference.text or "").strip())
        call.rooms.append(room.name)
        room.join(
            call.sid,
            start=_flag(conference, "startConferenceOnEnter", True),
            end_on_exit=_flag(conference, "endConferenceOnExit", False),
        )
        with trio.move_on_after(answer.talk_s):
            await _first_of(room.ended, call.remote_hang_up)
        room.leave(call.sid)
        call.hung_up_by = call.hung_up_by or "person"
