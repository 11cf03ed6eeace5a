"""How many connections the listener holds at once, so it never runs out of file descriptors.

Why: 1,010 half-open connections under a 1,024 descriptor limit made ``/healthz`` time out and a
call fail — each connection is a descriptor, and at the limit ``accept`` fails for everyone,
Twilio included. The budget comes from ``RLIMIT_NOFILE`` (``callbridge serve`` raises its soft
limit to the hard one at start):

- :data:`RESERVED_FDS` are left for the store, the views, logs and worker threads;
- console/API connections (and connections whose request head has not arrived yet) share
  ``http_slots``; a call costs :data:`FDS_PER_CALL` (Twilio's socket, the model's, and the
  simulated model's own end when it runs in process) and calls get what is left (``call_slots``);
- when the HTTP slots are full, the connection that has been waiting longest for its request head
  is closed to make room (a half-open connection is worth less than a new one). When every slot
  holds a real request, a new connection gets ``overflow_slots`` and a short deadline for its
  head: a ``/call`` upgrade still gets in; anything else is answered 503 at once;
- beyond all of that a connection is closed as soon as it is accepted.

The gate only counts; the listener (``web/listener.py``) reads heads and hands connections on.
"""

from __future__ import annotations

import logging
import resource
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

import trio

log = logging.getLogger(__name__)

RESERVED_FDS = 64
FDS_PER_CALL = 3


@dataclass(frozen=True)
class ConnectionLimits:
    http_slots: int
    """Console/API connections and connections still sending their request head."""
    overflow_slots: int
    """Connections let in past a full house, with :attr:`overflow_head_timeout_s` for their head."""
    call_slots: int
    """``/call`` media streams."""
    head_timeout_s: float = 10.0
    """Longest a client may take to send its whole request head (slowloris)."""
    overflow_head_timeout_s: float = 2.0

    @classmethod
    def for_fd_limit(cls, fd_limit: int) -> ConnectionLimits:
        budget = max(fd_limit - RESERVED_FDS, 16)
        http = min(max(budget // 8, 8), 1024)
        overflow = min(max(budget // 32, 4), 64)
        calls = max((budget - http - overflow) // FDS_PER_CALL, 1)
        return cls(http_slots=http, overflow_slots=overflow, call_slots=calls)

    @classmethod
    def from_process(cls) -> ConnectionLimits:
        """The limits for this process's current soft ``RLIMIT_NOFILE``."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return cls.for_fd_limit(soft if soft != resource.RLIM_INFINITY else 1 << 20)

    def describe(self) -> str:
        return f"up to {self.call_slots} calls and {self.http_slots} console/API connections at once"


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (capped at 2**20); (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    target = min(target, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, target


class Slot(Enum):
    PENDING = "pending"
    OVERFLOW = "overflow"
    HTTP = "http"
    CALL = "call"


class Admission:
    """One connection's place in the gate; :meth:`ConnectionGate.classify` moves it."""

    def __init__(self, slot: Slot, scope: trio.CancelScope) -> None:
        self.slot = slot
        self.scope = scope
        """Cancelled to close the connection while it waits for its head (eviction)."""
        self.counted = False
        self.evicted = False


class ConnectionGate:
    """Counts connections by kind against :class:`ConnectionLimits` (see the module doc)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self._pending: OrderedDict[Admission, None] = OrderedDict()
        self.counts = dict.fromkeys(Slot, 0)
        self.refused = 0
        """Connections closed at accept, or answered 503, since the start."""
        self.evicted = 0
        """Connections closed while waiting for their head, to make room."""

    def _http_full(self) -> bool:
        return self.counts[Slot.PENDING] + self.counts[Slot.HTTP] >= self.limits.http_slots

    def admit(self, scope: trio.CancelScope) -> Admission | None:
        """A place for a new connection, or None: close it at once."""
        if self._http_full() and self._pending:
            oldest = next(iter(self._pending))
            self._release(oldest)
            oldest.evicted = True
            oldest.scope.cancel()
            self.evicted += 1
        if not self._http_full():
            slot = Slot.PENDING
        elif self.counts[Slot.OVERFLOW] < self.limits.overflow_slots:
            slot = Slot.OVERFLOW
        else:
            self.refused += 1
            return None
        admission = Admission(slot, scope)
        self._assign(admission, slot)
        return admission

    def head_timeout(self, admission: Admission) -> float:
        if admission.slot is Slot.OVERFLOW:
            return self.limits.overflow_head_timeout_s
        return self.limits.head_timeout_s

    def classify(self, admission: Admission, *, media: bool) -> bool:
        """The head has arrived: move the connection to the call or HTTP slots. False when there is
        no room for it (answer 503)."""
        if media:
            room = self.counts[Slot.CALL] < self.limits.call_slots
        else:
            room = admission.slot is not Slot.OVERFLOW
        if not room:
            self.refused += 1
            return False
        self._release(admission)
        self._assign(admission, Slot.CALL if media else Slot.HTTP)
        return True

    def leave(self, admission: Admission) -> None:
        """The connection is closed."""
        self._release(admission)

    def _assign(self, admission: Admission, slot: Slot) -> None:
        admission.slot, admission.counted = slot, True
        self.counts[slot] += 1
        if slot is Slot.PENDING:
            self._pending[admission] = None

    def _release(self, admission: Admission) -> None:
        if admission.counted:
            admission.counted = False
            self.counts[admission.slot] -= 1
            self._pending.pop(admission, None)
