"""Golden call-control logs: builders that add, to a synthetic ``CallLog`` (``engine/synthetic.py``),
what the engine records when it controls a call — the greeting, the agent's goodbye heard before it
hangs up, a cold transfer, keys pressed by the caller and by the agent, a silent caller re-prompted
then hung up on, the duration limit, a model session recycled.

The projections' tests and the console's fixtures need these calls without running them, and they
must be the engine's own sequences: ``tests/engine/test_synthetic_call_control.py`` runs each
scenario through the real engine over real sockets and checks the builder records the same
call-control events in the same order. Each builder takes the log and returns it, so a call still
reads as a script::

    log = hung_up_by_the_agent(greeted(CallLog("CA1").start(), "Hello!").caller_says("Bye"), "done")
"""

from __future__ import annotations

from typing import Any

from callbridge.engine.dtmf import dial
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallEnded,
    CallEndRequested,
    CallStarted,
    DtmfForwarded,
    DtmfReceived,
    DtmfSent,
    DurationWarningGiven,
    Event,
    GoodbyeHeard,
    GreetingAudioStarted,
    ModelConnected,
    ModelSessionRecycled,
    PhoneHangUpSent,
    SilenceReprompted,
    TransferDialed,
    TransferRequested,
)
from callbridge.engine.synthetic import CallLog

CALL_CONTROL_TYPES: frozenset[type[Event]] = frozenset(
    {
        CallStarted,
        GreetingAudioStarted,
        CallEndRequested,
        GoodbyeHeard,
        PhoneHangUpSent,
        TransferRequested,
        TransferDialed,
        DtmfReceived,
        DtmfForwarded,
        DtmfSent,
        SilenceReprompted,
        DurationWarningGiven,
        ModelSessionRecycled,
        CallEnded,
    }
)
"""The events these builders are about (the call's bounds and every call-control fact)."""

GOODBYE = "Thank you for calling. Goodbye!"
REPROMPT = "Are you still there?"
ANNOUNCEMENT = "One moment, I'm transferring you now."
END_CALL_RESULT = {"ok": True, "result": "The call ends once your goodbye is heard."}
DIAL_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Dial><Number>{to}</Number></Dial></Response>'


def _record(log: CallLog, kind: type[Event], **fields: Any) -> None:
    log.events.append(kind(call_id=log.call_id, at=log.start_at + log.ms / 1000, **fields))


def greeted(log: CallLog, text: str) -> CallLog:
    """The agent speaks first: ``GreetingAudioStarted`` as its first audio goes to the caller."""
    before = len(log.events)
    log.assistant_says(text)
    first = next(e for e in log.events[before:] if isinstance(e, AssistantAudioSent))
    started = GreetingAudioStarted(
        call_id=log.call_id,
        at=first.at,
        response_id=first.response_id,
        latency_ms=round((first.at - log.start_at) * 1000),
    )
    log.events.insert(log.events.index(first) + 1, started)
    return log


def _goodbye_then_hang_up(log: CallLog, by: str, reason: str, ended: str, goodbye: str, method: str) -> CallLog:
    _record(log, CallEndRequested, by=by, reason=reason)
    started = log.ms
    log.assistant_says(goodbye)
    _record(log, GoodbyeHeard, waited_ms=log.ms - started)
    log.wait(150)
    _record(log, PhoneHangUpSent, method=method)
    return log.end(ended)


def hung_up_by_the_agent(log: CallLog, reason: str = "", *, goodbye: str = GOODBYE, method: str = "rest") -> CallLog:
    """The model calls ``end_call``; its goodbye is said and heard in full, then the phone is hung up."""
    log.tool_call("end_call", {"reason": reason}, END_CALL_RESULT, duration_ms=0, handler="builtin")
    return _goodbye_then_hang_up(log, "model", reason, "agent_hangup", goodbye, method)


def transferred(
    log: CallLog, label: str, to: str, *, reason: str = "", announcement: str = ANNOUNCEMENT, method: str = "rest"
) -> CallLog:
    """A cold transfer asked for by the model: announced, heard, then ``<Dial>`` sent to Twilio."""
    arguments = {"target": label, "reason": reason}
    log.tool_call("transfer_call", arguments, {"ok": True}, duration_ms=0, handler="builtin")
    _record(log, TransferRequested, label=label, to=to, mode="cold", reason=reason)
    started = log.ms
    log.assistant_says(announcement)
    _record(log, GoodbyeHeard, waited_ms=log.ms - started)
    log.wait(150)
    _record(log, TransferDialed, label=label, to=to, method=method, twiml=DIAL_TWIML.format(to=to))
    return log.end("transferred")


def caller_pressed(log: CallLog, keys: str, *, mode: str = "model", reply: str | None = "Thanks.") -> CallLog:
    """The caller presses ``keys``: each reaches the model (``model``), or the entry once (``collect``);
    ``ignore`` only records them. The model then says ``reply``."""
    for key in keys:
        log.dtmf(key)
        if mode == "model":
            _record(log, DtmfForwarded, digits=key, mode=mode)
        log.wait(200)
    if mode == "collect":
        _record(log, DtmfForwarded, digits=keys.rstrip("#"), mode=mode)
    if mode != "ignore" and reply:
        log.assistant_says(reply)
    return log


def agent_pressed(
    log: CallLog, digits: str, *, tone_ms: int = 100, gap_ms: int = 80, reply: str | None = "Done."
) -> CallLog:
    """The model calls ``send_dtmf``: the tones go to the line as assistant audio (recorded, so the
    recording holds them) and are played; then the model says ``reply``."""
    audio = dial(digits, tone_ms=tone_ms, gap_ms=gap_ms)
    before = len(log.events)
    log.tool_call("send_dtmf", {"digits": digits}, {"ok": True, "sent": digits}, duration_ms=0, handler="builtin")
    tool_done = next(i for i, e in enumerate(log.events[before:], before) if type(e).__name__ == "ToolCallCompleted")
    at = log.events[tool_done].at
    item_id = f"dtmf_{log.call_id[-6:]}{len(log.events):04d}"
    sent = AssistantAudioSent(
        call_id=log.call_id, at=at, response_id="dtmf", item_id=item_id, offset_bytes=0, payload=audio
    )
    pressed = DtmfSent(
        call_id=log.call_id, at=at, digits=digits, tone_ms=tone_ms, gap_ms=gap_ms, audio_ms=len(audio) // 8
    )
    log.events[tool_done:tool_done] = [sent, pressed]
    log.wait(len(audio) // 8)
    _record(log, AssistantAudioPlayed, item_id=item_id, marks=1, played_bytes=len(audio), total_played_bytes=len(audio))
    if reply:
        log.assistant_says(reply)
    return log


def silent_caller_hung_up_on(
    log: CallLog, *, reprompt_s: float = 10.0, hangup_s: float = 15.0, method: str = "rest"
) -> CallLog:
    """The caller says nothing: after ``reprompt_s`` the agent asks if they are there, after
    ``hangup_s`` more it says goodbye and hangs up."""
    log.wait(round(reprompt_s * 1000))
    _record(log, SilenceReprompted, silent_ms=round(reprompt_s * 1000))
    log.assistant_says(REPROMPT)
    log.wait(round(hangup_s * 1000))
    reason = f"silent for {hangup_s:g} s"
    return _goodbye_then_hang_up(log, "silence", reason, "silence_timeout", GOODBYE, method)


def duration_limit_reached(log: CallLog, *, limit_s: float, warning_s: float = 60.0, method: str = "rest") -> CallLog:
    """The call reaches ``max_duration_s``: told to wrap up ``warning_s`` before, then a goodbye heard
    and the hang-up. The limit counts from the call's start."""
    log.wait(max(0, round((limit_s - warning_s) * 1000) - log.ms))
    _record(log, DurationWarningGiven, remaining_s=warning_s)
    log.wait(max(0, round(limit_s * 1000) - log.ms))
    return _goodbye_then_hang_up(log, "max_duration", f"{limit_s:g} s", "max_duration", GOODBYE, method)


def session_recycled(log: CallLog, *, from_session: int = 1, seeded_items: int = 2) -> CallLog:
    """A fresh model session opened beside the current one takes over at a quiet moment."""
    log.wait(200)
    _record(log, ModelConnected, url="ws://sim/v1/realtime", attempt=0, seeded_items=seeded_items)
    log.wait(100)
    _record(
        log, ModelSessionRecycled, from_session=from_session, to_session=from_session + 1, seeded_items=seeded_items
    )
    return log
