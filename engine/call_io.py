"""What goes into a call's core and what comes out: typed, immutable, no I/O.

``engine/call_core.py`` is a sans-IO state machine (h11/wsproto style). The call's trio tasks
(``engine/call.py``) turn what happens on the sockets, the tool runner, the timers and the console
into **inputs**, hand them to ``CallCore.handle(input, now)``, and carry out the **outputs** it
returns, in order: bytes for a socket, an event to record, a timer to set, a tool to run, the call
to end. Every decision — barge-in, when a response may be created, the tool-wait filler, reconnects
and re-seeding, how a call ends — is taken in the core from these inputs alone, so it can be
tested by feeding sequences, in microseconds, without sockets or clocks.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from callbridge.engine.events import Event

# --- timers the core sets (the shell keeps one deadline per timer) -----------------------------


class Timer(enum.Enum):
    TOOL_WAIT = "tool_wait"
    """Tool outputs awaited in silence: say "one moment"."""
    APOLOGY_PLAYED = "apology_played"
    """The cap on waiting for the apology's last mark before the call ends anyway."""
    SILENCE = "silence"
    """The caller has said nothing since hearing the agent: re-prompt, then hang up."""
    DURATION_WARNING = "duration_warning"
    DURATION_LIMIT = "duration_limit"
    WRAP_UP_CAP = "wrap_up_cap"
    """The longest wait for a goodbye (or a transfer announcement) to be heard."""
    PHONE_CAP = "phone_cap"
    """After a REST hang-up or transfer, the longest wait for Twilio to end the stream."""
    DTMF_COLLECT = "dtmf_collect"
    """A pause that ends a collected keypad entry."""
    RECYCLE = "recycle"
    """Time to renew the model session (at the next quiet moment)."""
    AMD_WAIT = "amd_wait"
    """An outbound call waits this long for answering-machine detection before greeting anyway."""


class Input(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every input."""


class Output(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every output."""


# --- inputs: the call begins and ends ----------------------------------------------------------


class CallBegan(Input, frozen=True, kw_only=True):
    """Twilio's ``start`` arrived: record the call and open the first model session."""


class CallTornDown(Input, frozen=True, kw_only=True):
    """The call's tasks have stopped: record what is left and ``CallEnded``. The last input."""

    reason: str = ""
    """Why, when the core did not decide it (``server_shutdown``, a console hang-up)."""
    uplink_dropped: CallerFramesDropped | None = None
    """Caller frames the uplink dropped that no ``CallerFramesDropped`` reported (their session ended
    first): recorded before ``CallEnded``."""


class HangUpRequested(Input, frozen=True, kw_only=True):
    """The server (shutdown: the stream is closed) or an operator (the phone is hung up too) wants
    the call ended now."""

    reason: str
    by: str = "server"


class TransferOrdered(Input, frozen=True, kw_only=True):
    """An operator hands the caller to the configured target ``label``."""

    label: str
    reason: str = ""
    by: str = "operator"


class PhoneCommandDone(Input, frozen=True, kw_only=True):
    """A ``HangUpPhone`` or ``RedirectPhone`` was carried out: through Twilio's REST API (``rest``),
    or the stream is to be ended so its ``<Connect action>`` does it (``stream``)."""

    kind: str
    method: str
    ok: bool = True
    error: str = ""


class TransferPersonCalled(Input, frozen=True, kw_only=True):
    """A warm transfer's call to the person was placed (before the caller is moved to the room):
    its CallSid, so the hold's record says which call to cancel if the caller leaves first."""

    sid: str


class MachineDetectionReported(Input, frozen=True, kw_only=True):
    """Twilio's asynchronous answering-machine detection result for this (outbound) call."""

    answered_by: str
    detection_ms: int | None = None


# --- inputs: the caller's side (Twilio) --------------------------------------------------------


class CallerMedia(Input, frozen=True, kw_only=True):
    """One Twilio ``media`` frame: base64 μ-law, passed to the model unchanged."""

    payload: str
    timestamp: int
    chunk: int


class MarkEchoed(Input, frozen=True, kw_only=True):
    """Twilio echoed a mark we sent: the audio before it has been played (or cleared)."""

    name: str


class DtmfPressed(Input, frozen=True, kw_only=True):
    digit: str
    sequence_number: int = 0


class CallerHungUp(Input, frozen=True, kw_only=True):
    """Twilio sent ``stop``."""


class TwilioSocketLost(Input, frozen=True, kw_only=True):
    """The media-stream socket closed without ``stop``."""

    code: int | None = None
    reason: str = ""


class TwilioFrameInvalid(Input, frozen=True, kw_only=True):
    """A frame that could not be decoded (``raw`` already cut to size)."""

    error: str
    raw: str


class TwilioEventUnknown(Input, frozen=True, kw_only=True):
    event: str
    raw: str


class CallerFramesDropped(Input, frozen=True, kw_only=True):
    """The model socket could not take caller audio as fast as it came: ``count`` frames were dropped
    (the oldest first) instead of queueing more than the uplink allows."""

    count: int
    queued_limit: int


# --- inputs: the model's side ------------------------------------------------------------------


class ModelSessionOpened(Input, frozen=True, kw_only=True):
    """Model session number ``session`` is connected and ready for its first client event."""

    session: int


class ModelServerEvent(Input, frozen=True, kw_only=True):
    """A decoded server event of ``session``; ``raw`` is the frame as received (recorded verbatim)."""

    session: int
    event: Any
    raw: str


class ModelFrameInvalid(Input, frozen=True, kw_only=True):
    """A server frame that is not an event at all."""

    session: int
    raw: str
    error: str


class ModelSessionLost(Input, frozen=True, kw_only=True):
    """Session ``session`` failed: it never opened (``connected`` False) or dropped. ``retryable``
    False when trying again cannot help (a rejected key, a malformed URL)."""

    session: int
    connected: bool
    error: str
    code: int | None = None
    reason: str = ""
    retryable: bool = True


# --- inputs: tools, timers, operators, supervision ---------------------------------------------


class ToolSettled(Input, frozen=True, kw_only=True):
    """The tool runner decided a call: ``event`` (``ToolCallCompleted``/``ToolCallFailed``) is
    recorded and ``output`` becomes the ``function_call_output``."""

    tool_call_id: str
    output: str
    event: Event


class ToolRunnerLost(Input, frozen=True, kw_only=True):
    """The tool runner crashed with calls pending: each must still get one (error) output."""

    error: str


class TimerFired(Input, frozen=True, kw_only=True):
    timer: Timer


class SessionUpdateRequested(Input, frozen=True, kw_only=True):
    """An operator changes this call's session configuration."""

    session: dict[str, Any]
    source: str = "console"


class ClientEventRequested(Input, frozen=True, kw_only=True):
    """An operator's client event for this call's model (``conversation.item.create`` or
    ``response.create``; anything else is refused)."""

    event: dict[str, Any]


class TaskFailed(Input, frozen=True, kw_only=True):
    """A task of the call raised (a bug). ``action`` is what the supervisor did about it."""

    task: str
    error: str
    traceback: str
    action: str


class AudioFlushDue(Input, frozen=True, kw_only=True):
    """The store's writer is about to write a batch (every window, and when a reader flushes it): hand
    it the transcript words and the assistant's audio held in partial chunks, and the caller's partial
    chunk once it is half a second old, so a crash loses at most one batch window (and half a second
    of the caller's audio) and a reader sees what was said up to now."""


# --- outputs -----------------------------------------------------------------------------------


class SendToCaller(Output, frozen=True, kw_only=True):
    """Encoded Twilio frames, written in order with one write (a ``media`` and its ``mark``)."""

    frames: tuple[str, ...]


class SendToModel(Output, frozen=True, kw_only=True):
    """One encoded client event for model session ``session``. ``audio`` marks caller audio, which
    the uplink may drop (oldest first) rather than queue beyond its limit; nothing else is dropped."""

    text: str
    session: int
    audio: bool = False


class Record(Output, frozen=True, kw_only=True):
    event: Event


class StartTimer(Output, frozen=True, kw_only=True):
    """(Re)arm ``timer`` to fire ``delay_s`` from now."""

    timer: Timer
    delay_s: float


class CancelTimer(Output, frozen=True, kw_only=True):
    timer: Timer


class RunTool(Output, frozen=True, kw_only=True):
    tool_call_id: str
    name: str
    arguments: str
    handler: str
    """``backend`` or ``human`` (answered by an operator)."""


class OpenModelSession(Output, frozen=True, kw_only=True):
    """Open session number ``session`` after ``delay_s`` (0 for the first). A ``recycle`` session is
    opened beside the current one, which keeps serving until the core switches over."""

    session: int
    delay_s: float
    recycle: bool = False


class CloseModelSession(Output, frozen=True, kw_only=True):
    """Close session ``session`` (replaced by a newer one): it is not lost, just retired."""

    session: int


class EndCall(Output, frozen=True, kw_only=True):
    """Stop the call's tasks; then feed ``CallTornDown``."""

    reason: str
    detail: str = ""


class HangUpPhone(Output, frozen=True, kw_only=True):
    """End the phone call itself (not just the stream): feed ``PhoneCommandDone`` with how."""


class RedirectPhone(Output, frozen=True, kw_only=True):
    """Hand the phone call to ``twiml`` (a ``<Dial>``): feed ``PhoneCommandDone`` with how."""

    twiml: str


class HoldForTransfer(Output, frozen=True, kw_only=True):
    """A warm transfer: hold the caller in conference ``room`` and call ``to``, whose answer hears
    ``summary`` before joining the room; feed ``PhoneCommandDone(kind="hold")`` with how it went."""

    room: str
    label: str
    to: str
    caller_id: str | None
    timeout_s: int
    summary: str


class LogLine(Output, frozen=True, kw_only=True):
    """Something the operator must see in the server log (a model that is unreachable, say)."""

    level: int
    message: str


class CoreStateError(RuntimeError):
    """An input the core's current state does not allow (a bug in the code that feeds it)."""

    def __init__(self, state: enum.Enum, given: Input) -> None:
        super().__init__(f"call core in state {state.value!r} cannot take {type(given).__name__}")
        self.state = state
        self.given = given
