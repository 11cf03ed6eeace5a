"""Call control in the call core: greeting, hanging up after the goodbye is heard, transfers, silence
and duration limits, voicemail — pure.

Part of ``CallCore``. Every decision is recorded as an event, and every "after it was heard" is
judged from mark echoes: a goodbye is heard when no response runs or is asked for and Twilio has
echoed the last mark of what we sent (``quiet``). The agent (``engine/agent.py``) says what to do:

- **greeting**: the agent speaks first (for an outbound call, once answering-machine detection
  says a person answered, or after ``AMD_WAIT_S``); ``GreetingAudioStarted`` records how long the
  caller waited for it;
- **wrap-up**: ``end_call``, an operator, ``silence_hangup_s`` or ``max_duration_s`` ask for the end
  (``CallEndRequested``); the goodbye is played (asked for, unless the model already said it) and
  heard (``GoodbyeHeard``, capped at ``WRAP_UP_CAP_S``), then the phone is hung up
  (``HangUpPhone``) — a transfer is the same with a ``<Dial>`` (``RedirectPhone``) at the end;
- **silence**: ``silence_reprompt_s`` after the caller heard the agent and said nothing, the agent
  asks if they are still there; ``silence_hangup_s`` more, it says goodbye and hangs up;
- **voicemail**: an answering machine gets ``voicemail_message`` after the beep, then the hang-up.

The keypad (both ways) is ``engine/call_keypad.py``; renewing the model session is
``engine/call_recycle.py``; whom a transfer reaches, cold or warm, is ``engine/call_transfer.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from callbridge.engine.agent import TransferTarget
from callbridge.engine.builtin_tools import END_CALL, TRANSFER_CALL
from callbridge.engine.call_io import (
    CancelTimer,
    HangUpPhone,
    LogLine,
    MachineDetectionReported,
    PhoneCommandDone,
    StartTimer,
    Timer,
)
from callbridge.engine.call_state import CallState
from callbridge.engine.events import (
    CallEndRequested,
    DurationWarningGiven,
    GoodbyeHeard,
    GreetingAudioStarted,
    MachineDetected,
    PhoneHangUpSent,
    SilenceReprompted,
)

if TYPE_CHECKING:
    from callbridge.engine.call_core import CallCore

WRAP_UP_CAP_S = 20.0
PHONE_CAP_S = 5.0
AMD_WAIT_S = 6.0
TAG = "callbridge"

END_REASONS = {
    "model": "agent_hangup",
    "operator": "operator_hangup",
    "silence": "silence_timeout",
    "max_duration": "max_duration",
    "voicemail": "voicemail_left",
}
GOODBYE = {
    "model": "Say a short, friendly goodbye to the caller now.",
    "operator": "Say a short, friendly goodbye to the caller now.",
    "silence": "The caller has not answered. Say a short goodbye and tell them to call back any time.",
    "max_duration": "The call has reached its time limit. Apologise briefly and say goodbye.",
}


def word_for_word(text: str) -> str:
    """Instructions that make the model say ``text`` as written (the simulated model says the quote)."""
    return f'Say this to the caller, word for word: "{text}"'


@dataclass
class Closing:
    """A decided end (``hang_up``) or transfer, waiting for what must be said to be heard."""

    kind: str
    by: str
    started_at: float
    target: TransferTarget | None = None
    phase: str = "speaking"
    """``speaking`` until heard, then ``phone`` once the phone has been told."""


class CallControl:
    def __init__(self, core: CallCore) -> None:
        self.core = core
        self.out = core.out
        self.agent = core.config.agent
        self.began_at = 0.0
        self.outbound = core.config.direction.startswith("outbound")
        self.greeting_due = bool(self.agent.greeting) or core.config.resumed
        self.greeting_response: str | None = None
        self.greeting_heard = False
        self.answered_by: str | None = None
        self.responses_with_audio: set[str] = set()
        self.caller_speaking = False
        self.closing: Closing | None = None
        self.silence_armed = False
        self.silence_stage = 0
        self.silence_since = 0.0

    # --- the call's life -----------------------------------------------------------------------

    def began(self) -> None:
        self.began_at = self.out.now
        limit = self.agent.max_duration_s
        if limit is not None:
            self.out.emit(StartTimer(timer=Timer.DURATION_LIMIT, delay_s=limit))
            if limit > self.agent.max_duration_warning_s:
                warning_at = limit - self.agent.max_duration_warning_s
                self.out.emit(StartTimer(timer=Timer.DURATION_WARNING, delay_s=warning_at))

    def first_session_opened(self) -> None:
        if self.outbound and self.answered_by is None:
            self.out.emit(StartTimer(timer=Timer.AMD_WAIT, delay_s=AMD_WAIT_S))
        else:
            self._greet()

    def _greet(self) -> None:
        text = self.agent.transfer_no_answer_message if self.core.config.resumed else self.agent.greeting
        if not self.greeting_due or not text:
            return
        self.greeting_due = False
        self.core.model.request_response({"instructions": word_for_word(text), "metadata": {TAG: "greeting"}})

    # --- what the model does -------------------------------------------------------------------

    def response_created(self, response_id: str, metadata: Any) -> None:
        if isinstance(metadata, dict) and metadata.get(TAG) == "greeting":
            self.greeting_response = response_id

    def audio_sent(self, response_id: str) -> None:
        self.responses_with_audio.add(response_id)
        if response_id == self.greeting_response and not self.greeting_heard:
            self.greeting_heard = True
            latency_ms = round((self.out.now - self.began_at) * 1000)
            self.out.record(
                GreetingAudioStarted(
                    call_id=self.core.config.call_id, at=self.out.now, response_id=response_id, latency_ms=latency_ms
                )
            )

    def caller_speech(self, started: bool) -> None:
        self.caller_speaking = started
        if started:
            self.silence_stage = 0

    def builtin_call(self, tool_call_id: str, name: str, args: dict[str, Any], response_id: str) -> None:
        """``end_call`` or ``transfer_call`` (``send_dtmf`` is the keypad's)."""
        said_something = response_id in self.responses_with_audio
        if name == END_CALL:
            result = {"ok": True, "result": "The call ends once your goodbye is heard."}
            self.core.model.tools.settle_builtin(tool_call_id, name, result)
            self.request_end("model", str(args.get("reason") or ""), say_goodbye=not said_something)
        elif name == TRANSFER_CALL:
            self.core.transfers.asked_by_model(tool_call_id, args, announce=not said_something)

    # --- ending and transferring ---------------------------------------------------------------

    def request_end(self, by: str, reason: str = "", *, say_goodbye: bool = True) -> None:
        if self.closing is not None:
            return
        self.out.record(CallEndRequested(call_id=self.core.config.call_id, at=self.out.now, by=by, reason=reason))
        self.closing = Closing(kind="hang_up", by=by, started_at=self.out.now)
        if by == "operator":
            self._finish(capped=False)
            return
        self.out.emit(StartTimer(timer=Timer.WRAP_UP_CAP, delay_s=WRAP_UP_CAP_S))
        if say_goodbye and self.core.state is CallState.ACTIVE:
            instructions = GOODBYE.get(by, GOODBYE["model"])
            if by == "voicemail" and self.agent.voicemail_message:
                instructions = word_for_word(self.agent.voicemail_message)
            self.core.model.request_response({"instructions": instructions, "metadata": {TAG: f"goodbye:{by}"}})

    def _finish(self, *, capped: bool) -> None:
        """What had to be said was heard (or the wait hit its cap): tell the phone."""
        closing = self.closing
        assert closing is not None and closing.phase == "speaking"
        closing.phase = "phone"
        self.out.emit(CancelTimer(timer=Timer.WRAP_UP_CAP))
        if not (closing.kind == "hang_up" and closing.by == "operator"):  # an operator hangs up at once
            waited_ms = round((self.out.now - closing.started_at) * 1000)
            self.out.record(
                GoodbyeHeard(call_id=self.core.config.call_id, at=self.out.now, waited_ms=waited_ms, capped=capped)
            )
        if closing.kind == "transfer" and closing.target is not None:
            self.core.transfers.phone_step(closing.target)
        else:
            self.out.emit(HangUpPhone())

    def phone_done(self, given: PhoneCommandDone) -> None:
        closing = self.closing
        call_id, now = self.core.config.call_id, self.out.now
        if closing is not None and closing.phase == "done":
            return  # already settled when Twilio's stop came before this answer
        if closing is None or closing.phase != "phone":
            self.out.emit(LogLine(level=logging.WARNING, message=f"unexpected phone result {given.kind} ignored"))
            return
        closing.phase = "done"
        if closing.kind == "transfer" and closing.target is not None:
            reason = self.core.transfers.phone_done(closing.target, given)
            if not reason:  # the warm transfer fell back to a cold one: wait for that answer
                closing.phase = "phone"
                return
            if reason == "held_for_transfer":
                given = msgspec.structs.replace(given, ok=True)
        else:
            self.out.record(
                PhoneHangUpSent(call_id=call_id, at=now, method=given.method, ok=given.ok, error=given.error)
            )
            reason = END_REASONS.get(closing.by, "agent_hangup")
        if not given.ok:
            self.out.emit(LogLine(level=logging.ERROR, message=f"Twilio refused the {given.kind}: {given.error}"))
        core = self.core
        if core.end_reason is None:
            core.end_reason = reason
        if given.method == "stream" or not given.ok:
            core.end(reason)  # the stream ends; its <Connect action> answers with what was recorded
        else:
            self.out.emit(StartTimer(timer=Timer.PHONE_CAP, delay_s=PHONE_CAP_S))

    def stopped_by_phone_command(self) -> bool:
        """Twilio sent ``stop`` while our REST hang-up or redirect was under way (its answer can
        come after the ``stop``): the command took effect. Record it as done and end the call with
        the decided reason (not ``caller_hangup``); True when that was the case."""
        closing = self.closing
        if closing is None or closing.phase != "phone":
            return False
        kind = "hang_up"
        if closing.kind == "transfer":
            kind = "hold" if self.core.transfers.warm_pending is not None else "redirect"
        self.phone_done(PhoneCommandDone(kind=kind, method="rest"))
        self.core.end(self.core.end_reason or "agent_hangup")
        return True

    # --- outbound calls ------------------------------------------------------------------------

    def machine_detected(self, given: MachineDetectionReported) -> None:
        self.out.record(
            MachineDetected(
                call_id=self.core.config.call_id,
                at=self.out.now,
                answered_by=given.answered_by,
                detection_ms=given.detection_ms,
            )
        )
        if self.answered_by is not None:
            return
        self.answered_by = given.answered_by
        self.out.emit(CancelTimer(timer=Timer.AMD_WAIT))
        if given.answered_by.startswith("machine") or given.answered_by == "fax":
            self.greeting_due = False
            message = self.agent.voicemail_message
            self.request_end("voicemail", given.answered_by, say_goodbye=bool(message) and given.answered_by != "fax")
        else:
            self._greet()

    # --- timers and quiet moments --------------------------------------------------------------

    def timer_fired(self, timer: Timer) -> bool:
        """Handle ``timer`` if it is call control's; False if it is not."""
        if timer is Timer.WRAP_UP_CAP:
            if self.closing is not None and self.closing.phase == "speaking":
                self._finish(capped=True)
        elif timer is Timer.PHONE_CAP:
            self.core.end(self.core.end_reason or "agent_hangup")
        elif timer is Timer.SILENCE:
            self._silence_fired()
        elif timer is Timer.DURATION_WARNING:
            self._warn_duration()
        elif timer is Timer.DURATION_LIMIT:
            self.request_end("max_duration", f"{self.agent.max_duration_s:g} s")
        elif timer is Timer.AMD_WAIT:
            self._greet()
        else:
            return False
        return True

    def quiet(self) -> bool:
        """Nothing is being said or about to be: the caller heard the last of what we sent."""
        core = self.core
        gate = core.model.gate
        return not (
            self.caller_speaking
            or core.assistant.is_playing
            or core.keypad.playing
            or gate.active_response is not None
            or gate.requested
            or gate.needed
            or gate.awaiting_outputs
        )

    def after_input(self) -> None:
        if self.core.state is not CallState.ACTIVE:
            return
        quiet = self.quiet()
        closing = self.closing
        if closing is not None and closing.phase == "speaking" and quiet:
            self._finish(capped=False)
            return
        if closing is None:
            self._watch_silence(quiet)

    def _watch_silence(self, quiet: bool) -> None:
        reprompt, hangup = self.agent.silence_reprompt_s, self.agent.silence_hangup_s
        if reprompt is None and hangup is None:
            return
        if quiet and not self.silence_armed:
            delay = reprompt if self.silence_stage == 0 and reprompt is not None else hangup
            if delay is None:
                return
            self.silence_armed = True
            self.silence_since = self.out.now
            self.out.emit(StartTimer(timer=Timer.SILENCE, delay_s=delay))
        elif not quiet and self.silence_armed:
            self.silence_armed = False
            self.out.emit(CancelTimer(timer=Timer.SILENCE))

    def _silence_fired(self) -> None:
        if not self.silence_armed or self.closing is not None:
            return
        self.silence_armed = False
        silent_ms = round((self.out.now - self.silence_since) * 1000)
        if self.silence_stage == 0 and self.agent.silence_reprompt_s is not None:
            self.silence_stage = 1 if self.agent.silence_hangup_s is not None else 0
            self.out.record(SilenceReprompted(call_id=self.core.config.call_id, at=self.out.now, silent_ms=silent_ms))
            text = "The caller has been silent for a while. Briefly ask whether they are still there."
            self.core.model.request_response({"instructions": text, "metadata": {TAG: "reprompt"}})
        else:
            self.request_end("silence", f"silent for {silent_ms / 1000:g} s")

    def _warn_duration(self) -> None:
        remaining = self.agent.max_duration_warning_s
        self.out.record(DurationWarningGiven(call_id=self.core.config.call_id, at=self.out.now, remaining_s=remaining))
        if self.core.state is CallState.ACTIVE:
            text = (
                f"The call will end in about {remaining:g} seconds because of its time limit. "
                "Start wrapping up politely."
            )
            self.core.model.send(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]},
                }
            )
