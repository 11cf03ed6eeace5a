"""Renewing the model session before its time limit, with no gap — pure.

A realtime session ends after 60 minutes. Waiting for that cuts the model off mid-call (the reactive
reconnect then re-seeds it, but the caller may hear a gap). Instead, ``session_recycle_s`` after a
session became current the core waits for a quiet moment (nothing playing, the caller not speaking,
no response or tool in flight), opens the next session *beside* the current one, configures and
re-seeds it from the call's own log, and switches the caller's audio to it only when it is ready and
the moment is still quiet; the old session is then closed. A recycle that fails to open is tried
again later; the current session carries on meanwhile.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from callbridge.engine.call_io import CloseModelSession, LogLine, OpenModelSession, StartTimer, Timer
from callbridge.engine.events import ModelSessionRecycled

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

QUIET_RETRY_S = 1.0
FAILED_RETRY_S = 30.0


class Recycler:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.pending: int | None = None
        """The session being opened to take over."""
        self.ready = False
        self.seeded = 0

    def session_became_current(self) -> None:
        self.out.emit(StartTimer(timer=Timer.RECYCLE, delay_s=self.core.config.agent.session_recycle_s))

    def timer_fired(self, timer: Timer) -> bool:
        if timer is not Timer.RECYCLE:
            return False
        if self.pending is None and self.core.model.connected:
            if self.core.control.quiet():
                self.pending = self.core.model.allocate()
                self.out.emit(OpenModelSession(session=self.pending, delay_s=0.0, recycle=True))
            else:
                self.out.emit(StartTimer(timer=Timer.RECYCLE, delay_s=QUIET_RETRY_S))
        return True

    def opened(self, session: int) -> None:
        self.seeded = self.core.model.configure(session, seed=True)
        self.ready = True
        self.after_input()

    def after_input(self) -> None:
        if self.ready and self.pending is not None and self.core.model.connected and self.core.control.quiet():
            self._switch(self.pending)

    def _switch(self, session: int) -> None:
        model = self.core.model
        old = model.session
        model.session = session
        self.pending, self.ready = None, False
        self.out.emit(CloseModelSession(session=old))
        self.out.record(
            ModelSessionRecycled(
                call_id=self.core.config.call_id,
                at=self.out.now,
                from_session=old,
                to_session=session,
                seeded_items=self.seeded,
            )
        )
        self.session_became_current()

    def lost(self, error: str) -> None:
        """The session meant to take over failed: the current one carries on; try again later."""
        self.pending, self.ready = None, False
        self.out.emit(LogLine(level=logging.WARNING, message=f"session recycle failed ({error}); retrying later"))
        self.out.emit(StartTimer(timer=Timer.RECYCLE, delay_s=FAILED_RETRY_S))

    def abandon(self) -> None:
        """The current session was lost: the one being opened to replace it is not wanted any more
        (the reconnect opens a fresh one)."""
        if self.pending is not None:
            self.out.emit(CloseModelSession(session=self.pending))
        self.pending, self.ready = None, False
