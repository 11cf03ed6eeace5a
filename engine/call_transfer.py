"""Transfers in the call core: to configured targets only, cold or warm — pure.

Part of call control (``engine/call_control.py``, which decides *when*: after the announcement was
heard). Here is *what* a transfer does:

- **refused** when the target is not one the agent lists (the model cannot invent a number): an
  error result for the model, ``TransferRefused`` on the record, nothing dialled;
- **cold**: the phone call is handed to the target with a ``<Dial>`` (caller ID and ring timeout from
  the target) — ``RedirectPhone``; the call is over for us (``transferred``);
- **warm** (needs Twilio's REST API, else it falls back to cold): the caller waits in a conference
  room with hold music while the target is called (``HoldForTransfer``); the person who answers
  hears a summary of the call (``summary``, from the call's own transcript, spoken by Twilio) and,
  once it was spoken, asks the server for the room (``web/warm_transfer.py``: one who hangs up
  during it is not a transfer). The person's CallSid is told to the core (``TransferPersonCalled``)
  and kept in ``CallHeld``, so their call can be ended if the caller leaves first. The call is
  ``CallHeld`` meanwhile, not ended: the server records its end when the person's leg is over, or,
  if nobody answers, the caller comes back to the agent on a new stream of the same call
  (``CallConfig.resumed``, ``CallResumed``), which carries on the conversation from the log. Twilio
  refusing the hold falls back to a cold transfer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from callbridge.adapters.twilio.twiml import dial_twiml
from callbridge.engine.agent import TransferTarget
from callbridge.engine.builtin_tools import TRANSFER_CALL
from callbridge.engine.call_control import TAG, WRAP_UP_CAP_S, Closing
from callbridge.engine.call_io import (
    HoldForTransfer,
    LogLine,
    PhoneCommandDone,
    RedirectPhone,
    StartTimer,
    Timer,
    TransferOrdered,
)
from callbridge.engine.call_state import CallState
from callbridge.engine.events import CallHeld, TransferDialed, TransferRefused, TransferRequested

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

SUMMARY_TURNS = 3
"""How many of the caller's last utterances the person taking a warm transfer hears."""


def room_for(call_id: str) -> str:
    return f"callbridge-{call_id}"


class Transfers:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.reason = ""
        self.warm_pending: TransferTarget | None = None
        self.person_sid = ""
        """The CallSid of the warm transfer's call to the person, once placed."""

    def asked_by_model(self, tool_call_id: str, args: dict[str, Any], *, announce: bool) -> None:
        """``transfer_call(target, reason)``: a listed target is announced (unless the model already
        said something), else refused — the model is told why and speaks again."""
        label, tools = str(args.get("target") or ""), self.core.model.tools
        target = self.core.config.agent.target(label)
        why = self._why_not(label, target)
        if target is None or why:
            self._refuse(label, why, "model")
            tools.settle_builtin(tool_call_id, TRANSFER_CALL, {"error": why}, ok=False)
            self.core.model.request_response(None)  # the model tells the caller
            return
        result = {"ok": True, "result": f"Transferring to {target.label} once the caller heard you."}
        tools.settle_builtin(tool_call_id, TRANSFER_CALL, result)
        self._start(target, str(args.get("reason") or ""), "model", announce=announce)

    def ordered(self, given: TransferOrdered) -> None:
        """An operator's transfer (API or console): always announced first."""
        target = self.core.config.agent.target(given.label)
        why = self._why_not(given.label, target)
        if target is None or why:
            self._refuse(given.label, why, given.by)
            return
        self._start(target, given.reason, given.by, announce=True)

    def _why_not(self, label: str, target: TransferTarget | None) -> str:
        if self.core.control.closing is not None:
            return "the call is already ending"
        if target is None:
            labels = ", ".join(t.label for t in self.core.config.agent.transfer_targets) or "none"
            return f"no transfer target {label!r}; the targets are: {labels}"
        return ""

    def _refuse(self, label: str, why: str, by: str) -> None:
        call_id = self.core.config.call_id
        self.out.record(TransferRefused(call_id=call_id, at=self.out.now, label=label, reason=why, by=by))
        self.out.emit(LogLine(level=logging.WARNING, message=f"transfer to {label!r} refused: {why}"))

    def _start(self, target: TransferTarget, reason: str, by: str, *, announce: bool) -> None:
        core = self.core
        self.out.record(
            TransferRequested(
                call_id=core.config.call_id,
                at=self.out.now,
                label=target.label,
                to=target.to,
                mode=target.mode,
                reason=reason,
                by=by,
            )
        )
        core.control.closing = Closing(kind="transfer", by=by, started_at=self.out.now, target=target)
        self.reason = reason
        self.out.emit(StartTimer(timer=Timer.WRAP_UP_CAP, delay_s=WRAP_UP_CAP_S))
        if announce and core.state is CallState.ACTIVE:
            text = f"Tell the caller, in one short sentence, that you are transferring them to {target.label} now."
            core.model.request_response({"instructions": text, "metadata": {TAG: "transfer"}})

    def summary(self, target: TransferTarget, reason: str) -> str:
        """What the person taking a warm transfer hears first: who calls, why, and their last words."""
        config = self.core.config
        said = [item.text for item in self.core.memory.items.values() if item.kind == "user" and item.text]
        last = " ".join(said[-SUMMARY_TURNS:])
        parts = [f"Incoming transfer for {target.label} from {config.from_number or 'an unknown number'}."]
        if reason:
            parts.append(f"Reason: {reason}.")
        if last:
            parts.append(f'The caller said: "{last}"')
        return " ".join(parts)

    def phone_step(self, target: TransferTarget) -> None:
        """The announcement was heard: hold and call the person (warm), or dial (cold)."""
        if target.mode == "warm" and self.core.config.warm_transfers:
            self.warm_pending = target
            self.out.emit(
                HoldForTransfer(
                    room=room_for(self.core.config.call_id),
                    label=target.label,
                    to=target.to,
                    caller_id=target.caller_id or self.core.config.to_number or None,
                    timeout_s=target.timeout_s,
                    summary=self.summary(target, self.reason),
                )
            )
            return
        self.out.emit(
            RedirectPhone(twiml=dial_twiml(target.to, caller_id=target.caller_id, timeout_s=target.timeout_s))
        )

    def phone_done(self, target: TransferTarget, given: PhoneCommandDone) -> str:
        """Record what the phone did; returns the call's end reason."""
        call_id, now = self.core.config.call_id, self.out.now
        if given.kind == "hold" and given.ok:
            room = room_for(call_id)
            held = CallHeld(call_id=call_id, at=now, label=target.label, to=target.to, room=room,
                            person_sid=self.person_sid)  # fmt: skip
            self.out.record(held)
            return "held_for_transfer"
        if given.kind == "hold":  # Twilio refused the hold: a cold transfer is the next best thing
            self.warm_pending = None
            warning = f"a warm transfer to {target.label} failed ({given.error}): transferring cold"
            self.out.emit(LogLine(level=logging.WARNING, message=warning))
            twiml = dial_twiml(target.to, caller_id=target.caller_id, timeout_s=target.timeout_s)
            self.out.emit(RedirectPhone(twiml=twiml))
            return ""
        twiml = dial_twiml(target.to, caller_id=target.caller_id, timeout_s=target.timeout_s)
        self.out.record(
            TransferDialed(
                call_id=call_id,
                at=now,
                label=target.label,
                to=target.to,
                method=given.method,
                twiml=twiml,
                ok=given.ok,
                error=given.error,
            )
        )
        return "transferred"
