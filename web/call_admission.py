"""Whether a media stream's ``start`` may become a call: the identifiers' shapes, the per-call
token, and that the CallSid has never been started before.

Why each rule:

- **Shapes.** The CallSid becomes the call's id: a stream name in the store, a path segment of the
  API, a file name in ``Content-Disposition``, a word in log lines. Twilio's are ``CA``/``MZ`` and
  32 hex digits; we accept :data:`SID_PATTERN` (letters, digits, ``_``, ``-``, at most 64), which
  also covers the simulated peers and recorded fixtures. Anything else (CR/LF, NUL, quotes) is
  refused before it reaches any of those places.
- **The per-call token** (only when ``TWILIO_AUTH_TOKEN`` is set). The upgrade's
  ``X-Twilio-Signature`` signs only the constant stream URL, so anyone who saw one signature could
  open streams at will; ``/twiml`` therefore puts a token in a ``<Parameter>`` that comes back in
  ``start``: ``ISSUED.MAC``, the Unix second ``/twiml`` answered and an HMAC-SHA256 under the auth
  token over the CallSid and that second. It is accepted for :data:`TOKEN_VALIDITY_S` (Twilio opens
  the stream within a second or two of reading the TwiML).
- **One stream per CallSid, ever.** A ``start`` whose CallSid is live, or was started before (on
  this engine, or — the store knows — on any engine sharing the log, including calls that have
  ended), is refused: a replayed ``start`` would otherwise open a second call under a live id
  (the first becomes unreachable and is never hung up on shutdown) or reopen a finished call and
  rewrite its history. The store check costs one indexed read of a few rows per call, in a worker
  thread; the in-memory set covers the ~100 ms before a new call's first events are written.
- **The one exception: a call back from a hold.** A warm transfer nobody answered
  (``web/warm_transfer.py``) redirects the caller to a new stream whose ``start`` carries a resume
  token: an HMAC under the auth token over the CallSid and the version of the call's last
  ``CallHeld`` (so it opens this call, after this hold, and nothing else). It is let in only when
  the log says the call is held, the transfer was not answered (``TransferNotAnswered``), and it has
  neither ended nor been resumed since; the call then runs with its stored events as history
  (``CallSettings.resumed_history``). Any engine can take it: the log is shared.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import NamedTuple

import trio

from callbridge.engine.events import (
    CallEnded,
    CallEndRequested,
    CallHeld,
    CallResumed,
    CallStarted,
    Event,
    TransferBriefed,
    TransferNotAnswered,
)
from callbridge.engine.store import EventStore, RecordedEvent

log = logging.getLogger(__name__)

SID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_VALIDITY_S = 120
"""How long after ``/twiml`` answered its per-call token opens a stream."""
TOKEN_CLOCK_SKEW_S = 30
"""A token issued this far in the future (another engine's clock) is still accepted."""
RECENT_CALLS = 10_000
"""Ended calls remembered in memory (older ones are found in the store)."""
_TOKEN_LABEL = b"callbridge stream token v2"
_RESUME_LABEL = b"callbridge resume token v1"
_PRINTABLE_LIMIT = 80


class StartRefused(Exception):
    """The ``start`` frame cannot become a call; the message says why (safe to log and to send)."""


def printable(text: str, limit: int = _PRINTABLE_LIMIT) -> str:
    """A peer's string made safe for one log line: control characters, quotes and non-ASCII
    escaped (``repr`` style, so a CR/LF can never start a forged line), cut to ``limit``."""
    shown = text[:limit].encode("ascii", "backslashreplace").decode("ascii")
    shown = "".join(ch if " " <= ch <= "~" and ch not in "\"'" else f"\\x{ord(ch):02x}" for ch in shown)
    return shown + ("…" if len(text) > limit else "")


def check_sid(kind: str, value: str) -> None:
    """Raise :class:`StartRefused` unless ``value`` has :data:`SID_PATTERN`'s shape."""
    if not SID_PATTERN.fullmatch(value):
        raise StartRefused(
            f"invalid {kind} {printable(value)!r}: expected letters, digits, '_' or '-' (at most 64), "
            "e.g. CA followed by 32 hex digits"
        )


def call_token(secret: str, call_sid: str, issued_at: float) -> str:
    """The per-call token ``/twiml`` puts in the TwiML for ``call_sid`` at ``issued_at``."""
    issued = int(issued_at)
    return f"{issued}.{_token_mac(secret, call_sid, issued)}"


def _token_mac(secret: str, call_sid: str, issued: int) -> str:
    message = _TOKEN_LABEL + b"|" + call_sid.encode() + b"|" + str(issued).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


def check_call_token(secret: str, call_sid: str, token: str, now: float) -> None:
    """Raise :class:`StartRefused` unless ``token`` is this call's and still fresh."""
    issued_text, _, mac = token.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12 or not mac:
        raise StartRefused("start frame without a valid per-call token")
    issued = int(issued_text)
    if not hmac.compare_digest(mac.encode(), _token_mac(secret, call_sid, issued).encode()):
        raise StartRefused("start frame without a valid per-call token")
    if not issued - TOKEN_CLOCK_SKEW_S <= now <= issued + TOKEN_VALIDITY_S:
        raise StartRefused(
            f"per-call token expired: /twiml answered {now - issued:.0f} s ago (tokens last {TOKEN_VALIDITY_S} s)"
        )


def resume_token(secret: str, call_sid: str, held_version: int) -> str:
    """The token that brings ``call_sid`` back from the hold recorded at ``held_version`` of its log."""
    message = _RESUME_LABEL + b"|" + call_sid.encode() + b"|" + str(held_version).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


class Hold(NamedTuple):
    """Where a call stands with warm transfers, from its log."""

    last_version: int
    """The version of the call's last stored event (0: nothing stored)."""
    held_version: int
    """The version of its last ``CallHeld`` (0: never held)."""
    held: CallHeld | None
    resumed: bool
    """A ``CallResumed`` came after the last ``CallHeld``: the caller is back with the agent."""
    not_answered: TransferNotAnswered | None
    """The ``TransferNotAnswered`` after the last ``CallHeld``, if any."""
    ended: CallEnded | None
    started: CallStarted | None
    briefed: TransferBriefed | None = None
    """The ``TransferBriefed`` after the last ``CallHeld``: the person heard the summary and joined."""
    end_requested: CallEndRequested | None = None
    """A ``CallEndRequested`` after the last ``CallHeld``: an operator hung the held call up."""

    @property
    def on_hold(self) -> bool:
        """Held in a conference room right now (the server decides how that ends)."""
        return self.held is not None and not self.resumed and self.ended is None


def hold_of(recorded: Sequence[RecordedEvent]) -> Hold:
    """Fold a call's stored events into its :class:`Hold`."""
    last = held_version = 0
    held: CallHeld | None = None
    resumed = False
    not_answered: TransferNotAnswered | None = None
    ended: CallEnded | None = None
    started: CallStarted | None = None
    briefed: TransferBriefed | None = None
    end_requested: CallEndRequested | None = None
    for item in recorded:
        event = item.event
        last = item.version
        if isinstance(event, CallHeld):
            held, held_version, resumed, not_answered = event, item.version, False, None
            briefed = end_requested = None
        elif isinstance(event, TransferBriefed):
            briefed = event
        elif isinstance(event, CallEndRequested) and held is not None:
            end_requested = event
        elif isinstance(event, CallResumed):
            resumed = True
        elif isinstance(event, TransferNotAnswered):
            not_answered = event
        elif isinstance(event, CallEnded):
            ended = ended or event
        elif isinstance(event, CallStarted):
            started = started or event
    return Hold(last, held_version, held, resumed, not_answered, ended, started, briefed, end_requested)


def resumable(hold: Hold, call_id: str, token: str, secret: str) -> None:
    """Raise :class:`StartRefused` unless ``token`` brings back ``call_id``, held now, whose transfer
    nobody answered."""
    expected = resume_token(secret, call_id, hold.held_version)
    if hold.held is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise StartRefused(f"no valid resume token for call {call_id} (it is not held, or the token is not its own)")
    if hold.ended is not None:
        raise StartRefused(f"call {call_id} has ended ({hold.ended.reason}): it cannot be resumed")
    if hold.resumed:
        raise StartRefused(f"call {call_id} was already resumed: a second stream is refused")
    if hold.not_answered is None:
        raise StartRefused(f"call {call_id} is still being transferred to {hold.held.label}: not resumed")


def started_in_store(store: EventStore, call_id: str) -> bool:
    """Whether the store holds a ``CallStarted`` or ``CallEnded`` for ``call_id`` (blocking; reads
    the call's first few events — only status callbacks can come before ``CallStarted``)."""
    first = store.read_call_page(call_id, after=0, limit=8)
    return any(isinstance(recorded.event, CallStarted | CallEnded) for recorded in first)


class CallAdmission:
    """The CallSids this engine has let in, and the store's memory of all others."""

    def __init__(self, store: EventStore | None, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self.clock = clock
        self._live: set[str] = set()
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._resumed: dict[str, tuple[Event, ...]] = {}

    def token_for(self, secret: str, call_sid: str) -> str:
        """A per-call token issued now."""
        return call_token(secret, call_sid, self.clock())

    async def claim(self, call_id: str) -> None:
        """Reserve ``call_id`` for one call; :class:`StartRefused` when it is live or was started
        before. Release it with :meth:`release` when the call is over."""
        if call_id in self._live:
            raise StartRefused(f"call {call_id} is already live on this server: a second stream is refused")
        if call_id in self._recent:
            raise StartRefused(f"call {call_id} has already ended: it cannot be started again")
        self._live.add(call_id)  # before the store read, so a concurrent duplicate is refused too
        try:
            started = self._store is not None and await trio.to_thread.run_sync(started_in_store, self._store, call_id)
        except trio.Cancelled:
            self._live.discard(call_id)
            raise
        except Exception as error:  # a phone call is not refused because the log cannot be read now
            log.warning("call %s: cannot check the event log for an earlier start (%s); letting it in", call_id, error)
            started = False
        if started:
            self.release(call_id)
            raise StartRefused(f"call {call_id} was already started (the event log has it): refused")

    async def claim_resumed(self, call_id: str, token: str, secret: str | None) -> tuple[Event, ...]:
        """Reserve ``call_id`` for the stream that brings it back from a hold (see the module's
        docstring); its stored events (the history it resumes from), or :class:`StartRefused`.
        Release it with :meth:`release` when the call is over."""
        if not secret or self._store is None:
            raise StartRefused("a call back from a hold needs TWILIO_AUTH_TOKEN and the event log: refused")
        if call_id in self._live:
            raise StartRefused(f"call {call_id} is already live on this server: a second stream is refused")
        self._live.add(call_id)
        try:
            try:
                recorded = await trio.to_thread.run_sync(self._store.read_call, call_id)
            except Exception as error:
                log.warning("call %s: cannot read the event log to resume it (%s)", call_id, error)
                raise StartRefused(f"call {call_id}: the event log cannot be read now, so it cannot resume") from None
            resumable(hold_of(recorded), call_id, token, secret)
            # another engine may have written to the call since this one did (its hold's outcome):
            # the call's next events are numbered after what is stored, not after this engine's memory
            self._store.forget_version(call_id)
        except BaseException:
            self._live.discard(call_id)
            raise
        self._recent.pop(call_id, None)
        self._resumed[call_id] = tuple(item.event for item in recorded)
        return self._resumed[call_id]

    def resumed_history(self, call_id: str) -> tuple[Event, ...] | None:
        """The history :meth:`claim_resumed` read for ``call_id`` (once), or None: a new call."""
        return self._resumed.pop(call_id, None)

    def release(self, call_id: str) -> None:
        """``call_id``'s call is over: it stays refused, remembered among the recent ones."""
        self._live.discard(call_id)
        self._resumed.pop(call_id, None)
        self._recent[call_id] = None
        self._recent.move_to_end(call_id)
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)
