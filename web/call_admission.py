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
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable

import trio

from callbridge.engine.events import CallEnded, CallStarted
from callbridge.engine.store import EventStore

log = logging.getLogger(__name__)

SID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_VALIDITY_S = 120
"""How long after ``/twiml`` answered its per-call token opens a stream."""
TOKEN_CLOCK_SKEW_S = 30
"""A token issued this far in the future (another engine's clock) is still accepted."""
RECENT_CALLS = 10_000
"""Ended calls remembered in memory (older ones are found in the store)."""
_TOKEN_LABEL = b"callbridge stream token v2"
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

    def release(self, call_id: str) -> None:
        """``call_id``'s call is over: it stays refused, remembered among the recent ones."""
        self._live.discard(call_id)
        self._recent[call_id] = None
        self._recent.move_to_end(call_id)
        while len(self._recent) > RECENT_CALLS:
            self._recent.popitem(last=False)
