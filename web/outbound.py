"""Outbound calls: placing them through Twilio, the cap on how many run at once, and their greetings.

``POST /api/calls`` (``web/calls_api.py``) asks :meth:`OutboundCalls.place`. Why it is built so:

- **Nothing half-recorded.** ``OutboundCallPlaced`` is recorded only after Twilio accepted the
  call, keyed by the CallSid Twilio returned; a refusal records nothing and says why (bad number:
  400 naming the parameter; no credentials: 400 saying what to set; Twilio's error: 502 with its
  code and message).
- **A cap per engine** (``CALLBRIDGE_MAX_OUTBOUND``, default 10): a slot is taken before Twilio is
  asked (so a burst cannot overshoot it) and given back when Twilio reports the call over (a
  terminal status callback), or when the call has been placed ``RING_ALLOWANCE_S`` ago and is not
  live on this engine (a lost callback never holds a slot for long). Beyond it: 429 with
  ``Retry-After``.
- **The per-call greeting and agent reach the call** whichever engine Twilio's ``/twiml`` and
  stream land on: ``OutboundCallPlaced`` is written before ``POST /api/calls`` answers; ``/twiml``
  asks :meth:`agent_for` and the call start :meth:`call_starting`, which look in this engine's
  memory, then in the call's log. The agent comes from our own log, never from Twilio's request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from callbridge.adapters.twilio import codec
from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.adapters.twilio.rest_errors import TwilioRestError
from callbridge.adapters.twilio.signature import webhook_url
from callbridge.engine.agent import E164
from callbridge.engine.events import OutboundCallPlaced
from callbridge.engine.live_calls import LiveCall

if TYPE_CHECKING:
    from callbridge.web.server import Server

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""Twilio call statuses after which a call is over (it never connected, or hung up)."""
RING_ALLOWANCE_S = 90.0
"""A placed call not live on this engine this long after placing no longer holds a slot (Twilio
rings for 60 s by default)."""
RETRY_AFTER_S = 10
MAX_GREETING_CHARS = 1000
MAX_METADATA_BYTES = 4096
REST_TIMEOUT_S = 10.0
LIVE_WAIT_S = 3.0
WRITE_WAIT_S = 2.0
"""How long placing a call, or ``/twiml`` asking for its agent, waits for the log's writes (Twilio waits)."""
AMD_STATUS_PATH = "/twilio/amd"
STATUS_PATH = "/twilio/status"


class OutboundRefused(Exception):
    """The call was not placed; ``status`` is the HTTP answer, the message says why and what to do."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


class CallRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The body of ``POST /api/calls``."""

    to: str
    from_: str | None = msgspec.field(name="from", default=None)
    greeting: str | None = None
    metadata: dict[str, Any] = {}
    agent: str | None = None
    """A saved agent profile's name: it answers this call (over the routing rules)."""

    def check(self) -> None:
        """Raise :class:`OutboundRefused` (400) naming the first parameter that is wrong."""
        if not E164.match(self.to):
            raise OutboundRefused(400, f"'to': {self.to!r} is not an E.164 number like +15551234567")
        if self.from_ is not None and not E164.match(self.from_):
            raise OutboundRefused(400, f"'from': {self.from_!r} is not an E.164 number like +15551234567")
        if self.greeting is not None:
            if not self.greeting.strip():
                raise OutboundRefused(400, "'greeting': empty (leave it out to use the agent's greeting)")
            if len(self.greeting) > MAX_GREETING_CHARS:
                raise OutboundRefused(400, f"'greeting': longer than {MAX_GREETING_CHARS} characters")
        if len(msgspec.json.encode(self.metadata)) > MAX_METADATA_BYTES:
            raise OutboundRefused(400, f"'metadata': more than {MAX_METADATA_BYTES} bytes of JSON")
        if self.agent is not None and not self.agent.strip():
            raise OutboundRefused(400, "'agent': empty (leave it out to let the routing rules choose)")


@dataclass
class _Slot:
    placed_at: float
    over: bool = False


class OutboundCalls:
    """This engine's outbound calls: placing, the cap, and the greetings they carry."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._slots: dict[str, _Slot] = {}
        self._reserved = 0
        self._greetings: dict[str, str | None] = {}
        self._agents: dict[str, str | None] = {}
        """The agent each call placed here was placed with, until ``/twiml`` asks (:meth:`agent_for`)."""
        self._caller_id: str | None = None
        self._started: dict[str, trio.Event] = {}
        """Set when the stream of an outbound call placed here starts (see :meth:`wait_live`)."""

    # --- the cap -------------------------------------------------------------------------------

    def in_progress(self) -> int:
        """Outbound calls holding a slot now (placed, not reported over, not given up on)."""
        now = trio.current_time()
        live = self.server.live
        for call_sid, slot in list(self._slots.items()):
            stale = now - slot.placed_at > RING_ALLOWANCE_S and live.get(call_sid) is None
            if slot.over or stale:
                del self._slots[call_sid]
        return len(self._slots) + self._reserved

    def status_reported(self, call_sid: str, status: str) -> None:
        """A status callback: a terminal status frees the call's slot."""
        slot = self._slots.get(call_sid)
        if status in TERMINAL_STATUSES:
            self._greetings.pop(call_sid, None)
            self._agents.pop(call_sid, None)
            if slot is not None:
                slot.over = True

    # --- placing -------------------------------------------------------------------------------

    def client(self) -> TwilioCalls | None:
        settings = self.server.settings
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            return None
        return TwilioCalls(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            base_url=settings.twilio_api_base_url,
            timeout_s=REST_TIMEOUT_S,
        )

    async def place(self, request: CallRequest, *, by: str = "api") -> OutboundCallPlaced:
        """Ask Twilio to call ``request.to``; the recorded ``OutboundCallPlaced``, or
        :class:`OutboundRefused`."""
        request.check()
        if request.agent is not None and not await self.server.routing.agent_exists(request.agent):
            names = ", ".join(await self.server.routing.agent_names())
            unknown = request.agent[:80]
            raise OutboundRefused(400, f"'agent': no agent profile named {unknown!r}; the agents are: {names}")
        client = self.client()
        if client is None:
            raise OutboundRefused(
                400,
                "outbound calls go through Twilio: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                "(and TWILIO_API_BASE_URL for a local fake) and restart callbridge serve",
            )
        limit = self.server.settings.max_outbound
        if self.in_progress() >= limit:
            raise OutboundRefused(
                429,
                f"{limit} outbound call(s) already in progress (CALLBRIDGE_MAX_OUTBOUND); try again when one ends",
                retry_after=RETRY_AFTER_S,
            )
        self._reserved += 1
        try:
            from_number = request.from_ or await self._default_caller_id(client)
            public_url = self.server.settings.public_url
            try:
                placed = await client.acreate(
                    to=request.to,
                    from_=from_number,
                    url=webhook_url(public_url, "/twiml"),
                    status_callback=webhook_url(public_url, STATUS_PATH),
                    amd_callback=webhook_url(public_url, AMD_STATUS_PATH),
                )
            except TwilioRestError as error:
                raise OutboundRefused(502, str(error), twilio_status=error.status, twilio_code=error.code) from None
            event = OutboundCallPlaced(
                call_id=placed.sid,
                at=self.server.now(),
                to_number=request.to,
                from_number=from_number,
                greeting=request.greeting,
                metadata=request.metadata,
                status=placed.status,
                by=by,
                agent=request.agent,
            )
            self.server.writer.record(event)
            self._slots[placed.sid] = _Slot(placed_at=trio.current_time())
            self._greetings[placed.sid] = request.greeting
            self._agents[placed.sid] = request.agent
            with trio.move_on_after(WRITE_WAIT_S):  # for another engine's /twiml: the agent and greeting are in the log
                await self.server.writer.flush()
            log.info("outbound call %s placed to %s from %s", placed.sid, request.to, from_number)
            return event
        finally:
            self._reserved -= 1

    async def _default_caller_id(self, client: TwilioCalls) -> str:
        configured = self.server.settings.caller_id or self._caller_id
        if configured:
            return configured
        try:
            found = await client.first_number()
        except TwilioRestError as error:
            raise OutboundRefused(502, f"{error} (or set CALLBRIDGE_CALLER_ID)", twilio_code=error.code) from None
        if found is None:
            raise OutboundRefused(
                400, "no caller ID: pass 'from', set CALLBRIDGE_CALLER_ID, or add a phone number to the Twilio account"
            )
        self._caller_id = found
        return found

    # --- the call starts ----------------------------------------------------------------------

    async def call_starting(self, start: codec.Start) -> str | None:
        """A call's stream starts (its ``LiveCall`` is added next, without waiting): the greeting
        ``POST /api/calls`` gave it, or None (inbound, or none given)."""
        info = start.start
        if not info.custom_parameters.get("Direction", "").startswith("outbound"):
            return None
        call_sid = info.call_sid
        if call_sid in self._greetings:
            greeting = self._greetings.pop(call_sid)
        else:
            greeting = await self._recorded_greeting(call_sid)
        started = self._started.get(call_sid)
        if started is not None:
            started.set()
        return greeting

    async def _recorded_greeting(self, call_sid: str) -> str | None:
        """The greeting in the call's ``OutboundCallPlaced`` (placed by another engine)."""
        placed = await self._recorded(call_sid)
        return placed.greeting if placed is not None else None

    async def _recorded(self, call_sid: str) -> OutboundCallPlaced | None:
        recorded = await trio.to_thread.run_sync(self.server.store.read_call, call_sid)
        for item in recorded:
            if isinstance(item.event, OutboundCallPlaced):
                return item.event
        return None

    async def agent_for(self, call_sid: str) -> str | None:
        """``/twiml`` of an outbound call: the agent it was placed with (this engine's memory, else
        its ``OutboundCallPlaced`` — first written out, as the call may have been placed here an
        instant ago), or None to let the routing rules choose."""
        if call_sid in self._agents:
            return self._agents[call_sid]
        if not self.server.writer.stuck:
            with trio.move_on_after(WRITE_WAIT_S):
                await self.server.writer.flush()
        placed = await self._recorded(call_sid)
        return placed.agent if placed is not None else None

    async def wait_live(self, call_sid: str) -> LiveCall | None:
        """The live call ``call_sid`` on this engine; for a call placed here whose stream has not
        started yet (the answering-machine result can come first), wait up to :data:`LIVE_WAIT_S`
        for it to start. None when it is not live."""
        call = self.server.live.get(call_sid)
        if call is not None or call_sid not in self._slots:
            return call
        started = self._started.setdefault(call_sid, trio.Event())
        with trio.move_on_after(LIVE_WAIT_S):
            await started.wait()
        self._started.pop(call_sid, None)
        return self.server.live.get(call_sid)
