"""The event catalogue: every fact callbridge records about a call.

A call's log is the only source of truth. Everything people and programs read (conversation
tables, the live feed, metrics, recordings, replays) is a fold over these events, so they are:

- small immutable facts with past-tense names (``CallStarted``, ``CallerSpeechStarted``);
- versioned: each class carries ``schema_version``; the stored topic is ``Name@version`` and an
  old payload is brought up to date by the upcasters registered in ``UPCASTERS`` before it is
  decoded, so logs written today replay after the code changes;
- independent of module paths: the topic is the event's own name, never ``module:Qualname``.

Every event holds the ``call_id`` (the Twilio CallSid) it belongs to and ``at``, the wall-clock time
in Unix seconds on the call's monotonic clock (so events of one call never go backwards in time).
Audio is stored losslessly in chunks (``CallerAudioReceived``, ``AssistantAudioSent``) rather than one
event per 20 ms frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import msgspec

SETTINGS_STREAM = "settings"
"""The ``call_id`` of events that belong to no call (saved defaults)."""
ENGINE_STREAM_PREFIX = "engine:"
"""``call_id`` prefix of each engine's own stream (its heartbeats): ``engine:<engine_id>``."""
AGENTS_STREAM = "agents"
"""The ``call_id`` of the agent profiles and the routing rules (every engine folds it)."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every recorded fact. Subclasses register themselves by class name."""

    call_id: str
    at: float

    schema_version: ClassVar[int] = 1
    registry: ClassVar[dict[str, type[Event]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__name__
        if name in Event.registry and Event.registry[name] is not cls:
            raise TypeError(f"event name {name!r} is registered twice")
        Event.registry[name] = cls

    @classmethod
    def topic(cls) -> str:
        return f"{cls.__name__}@{cls.schema_version}"


# --- the call's life ---------------------------------------------------------------------------


class CallStarted(Event, frozen=True, kw_only=True):
    """Twilio's ``start`` frame arrived: a caller is on the line."""

    stream_sid: str
    account_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    custom_parameters: dict[str, str] = {}
    model: str = "sim"
    """``openai`` or ``sim``: which realtime peer the call was bridged to."""
    session_config: dict[str, Any] = {}
    """The session configuration the call started with (never contains secrets)."""
    engine_id: str = ""
    """The engine carrying the call (``CALLBRIDGE_ENGINE_ID``; empty in logs recorded before engines
    had names). If it stops without recording ``CallEnded``, the call is ended for it."""
    agent_name: str = ""
    """The agent profile that answered (empty in logs recorded before profiles existed)."""
    agent_version: int = 0
    """Its version (``AgentSaved.version``; 0 in logs recorded before profiles existed)."""


class CallEnded(Event, frozen=True, kw_only=True):
    """The call is over. ``reason`` says why: ``caller_hangup`` (Twilio ``stop``),
    ``twilio_disconnected`` (socket closed without ``stop``), ``model_unavailable`` (reconnects
    exhausted), ``server_shutdown``, ``supervisor_gave_up`` (a task kept crashing), ``engine_lost``
    (the engine carrying it died; recorded by the engine that noticed, ``at`` the call's last event)."""

    reason: str
    detail: str = ""


class CallSessionConfigChanged(Event, frozen=True, kw_only=True):
    """The session configuration of one live call was changed (from the console or the API)."""

    session_config: dict[str, Any]
    source: str = "console"


class DefaultSessionConfigSaved(Event, frozen=True, kw_only=True):
    """The default session configuration for new calls was saved (``call_id`` is ``settings``)."""

    session_config: dict[str, Any]
    source: str = "console"


class RedactionRulesSet(Event, frozen=True, kw_only=True):
    """The redaction rules (``CALLBRIDGE_REDACT``) a server started with, when they differ from the last
    ones recorded (``call_id`` is ``settings``): a process that reads the store on its own
    (``callbridge mcp``) masks at least these, whatever its own environment says."""

    rules: list[str]
    in_log: bool = False


class EngineHeartbeat(Event, frozen=True, kw_only=True):
    """An engine is running (``call_id`` is ``engine:<engine_id>``). Written when ``callbridge serve``
    starts (proving the store takes writes) and every ``interval_s`` after. An engine silent for
    longer than another engine's timeout is taken for dead, and its open calls are ended."""

    engine_id: str
    instance: str
    """Random for each process start: tells a restarted engine from the process before it."""
    interval_s: float
    host: str = ""
    pid: int = 0


# --- agents and routing (``engine/agent_profiles.py``, ``engine/routing.py``) --------------------


class AgentSaved(Event, frozen=True, kw_only=True):
    """A version of the agent profile ``name`` was saved (``call_id`` is ``agents``): ``agent`` holds
    every key of the agent (``engine/agent.py``), defaults filled in, so the version says exactly what
    answered. ``source`` is ``file:<path>`` when the agent file was loaded into ``default``;
    ``rolled_back_from`` the version whose content this one restores."""

    name: str
    version: int
    agent: dict[str, Any]
    by: str = "api"
    source: str = ""
    rolled_back_from: int | None = None


class AgentDeleted(Event, frozen=True, kw_only=True):
    """The profile ``name`` was deleted (``call_id`` is ``agents``); its versions stay readable, and a
    profile saved later under the name numbers on from ``version``."""

    name: str
    version: int
    by: str = "api"


class RoutingRulesSaved(Event, frozen=True, kw_only=True):
    """Which agent answers a call was decided anew (``call_id`` is ``agents``): the rules, first match
    wins, the agent when none matches, and the operator's assistant-request endpoint (its secret is
    named by an environment variable, never stored)."""

    version: int
    rules: list[dict[str, Any]] = []
    default_agent: str = "default"
    assistant_request: dict[str, Any] | None = None
    by: str = "api"


class AgentRouted(Event, frozen=True, kw_only=True):
    """Which agent answers this call, and why: ``reason`` is ``rule #2 'to=+1555…'``, ``assistant
    request``, ``fallback after timeout: …`` or ``default``. Recorded when ``/twiml`` answers (before
    ``CallStarted``), or when the stream starts if no decision was found. ``overrides`` are keys of the
    agent the assistant request replaced for this call only."""

    agent: str
    version: int
    reason: str
    source: str = "default"
    """``rule``, ``assistant_request``, ``default``, ``fallback`` (the assistant request failed) or
    ``placed`` (the outbound call was placed with this agent: ``POST /api/calls {"agent"}``)."""
    rule: int | None = None
    """The 1-based number of the rule that matched."""
    overrides: dict[str, Any] = {}
    routing_version: int = 0
    assistant_request_ms: float | None = None
    """How long the assistant request took (None: none was sent)."""
    at_stream_start: bool = False


# --- the Twilio side ---------------------------------------------------------------------------


class CallerAudioReceived(Event, frozen=True, kw_only=True):
    """A run of caller audio frames, losslessly: the μ-law bytes of consecutive ``media`` frames,
    with each frame's Twilio ``timestamp`` (ms since stream start) and size so frame boundaries and
    gaps can be rebuilt. ``at`` is when the first frame of the run arrived."""

    first_chunk: int
    timestamps: list[int]
    frame_sizes: list[int]
    payload: bytes


class CallerAudioDropped(Event, frozen=True, kw_only=True):
    """Caller audio frames that were not passed to the model, and why: ``count`` frames arrived
    faster than a phone sends them, or the model socket could not keep up and the uplink dropped the
    oldest rather than let the caller's audio fall behind. (Every received frame is still in
    ``CallerAudioReceived`` unless it arrived faster than a phone sends.)"""

    count: int
    reason: str


class DtmfReceived(Event, frozen=True, kw_only=True):
    digit: str
    sequence_number: int = 0


class TwilioFrameRejected(Event, frozen=True, kw_only=True):
    """A frame from Twilio could not be decoded. The call goes on; ``raw`` is cut to 2 KiB."""

    error: str
    raw: str


class TwilioEventIgnored(Event, frozen=True, kw_only=True):
    """A well-formed frame with an event name the bridge does not know (recorded, then dropped)."""

    event: str
    raw: str


class CallStatusReported(Event, frozen=True, kw_only=True):
    """Twilio's call status callback (``POST /twilio/status``): the phone call's own status."""

    status: str
    duration_s: int | None = None
    params: dict[str, str] = {}


class TwilioSocketClosed(Event, frozen=True, kw_only=True):
    """The Twilio WebSocket closed (after ``stop`` or abruptly)."""

    code: int | None = None
    reason: str = ""


class AssistantAudioSent(Event, frozen=True, kw_only=True):
    """Assistant audio forwarded to Twilio, losslessly, in chunks of one item. ``at`` is when the
    first byte of the chunk was sent; ``offset_bytes`` is where the chunk starts within the item."""

    response_id: str
    item_id: str
    content_index: int = 0
    offset_bytes: int
    payload: bytes


class AssistantAudioDiscarded(Event, frozen=True, kw_only=True):
    """Audio deltas that were not forwarded (late deltas of an interrupted item)."""

    response_id: str
    item_id: str
    byte_count: int
    reason: str


class AssistantAudioPlayed(Event, frozen=True, kw_only=True):
    """Twilio echoed marks: ``played_bytes`` more of ``item_id`` have been played to the caller
    (``total_played_bytes`` so far). Marks echoed because of a ``clear`` are not counted."""

    item_id: str
    marks: int
    played_bytes: int
    total_played_bytes: int


class PlaybackCleared(Event, frozen=True, kw_only=True):
    """A Twilio ``clear`` was sent: buffered assistant audio was dropped."""

    item_id: str | None
    unplayed_bytes: int


class BargeInDecided(Event, frozen=True, kw_only=True):
    """The caller spoke over the assistant. The decision, with the numbers it was made from:
    ``played_ms`` from mark echoes, ``received_ms`` from the model's deltas, ``audio_end_ms`` sent in
    ``conversation.item.truncate`` (None when skipped). ``action`` is ``truncated``,
    ``skipped_nothing_playing`` or ``skipped_fully_played``."""

    item_id: str | None
    played_ms: int
    received_ms: int
    audio_end_ms: int | None
    action: str


# --- the model side ----------------------------------------------------------------------------


class ModelConnected(Event, frozen=True, kw_only=True):
    """The realtime model socket is open. ``attempt`` 0 is the first connection; later ones are
    reconnects. ``url`` never holds a secret."""

    url: str
    attempt: int = 0
    seeded_items: int = 0


class ModelConnectionFailed(Event, frozen=True, kw_only=True):
    attempt: int
    error: str
    retry_in_s: float | None
    """Seconds until the next try; None when the supervisor gave up."""


class ModelDisconnected(Event, frozen=True, kw_only=True):
    """The model socket closed or failed while the call was live."""

    code: int | None
    reason: str
    error: str = ""


class ModelEventReceived(Event, frozen=True, kw_only=True, omit_defaults=True):
    """A server event from the realtime model, verbatim (audio deltas excepted: their bytes are in
    ``AssistantAudioSent``/``AssistantAudioDiscarded``, with their ids).

    The engine records beside it what it says about the conversation as typed facts
    (``engine/model_facts.py``), so readers take those and never parse these (they can even leave
    today's version out of what they fetch). Versions tell which facts a log has (``facts``): 3,
    today's, every one of them; 2, from an engine that recorded ``CallerSpeechDetected``,
    ``CallerSaid``, ``AssistantSaid`` and ``ResponseFinished`` only; 1, from before any, where the
    model's JSON is the only account. ``projections/legacy_facts.py`` derives the missing facts of
    versions 1 and 2 when such a log is read."""

    type: str
    raw: str
    facts: int = 2
    """Which typed facts were recorded beside this event: 2 all, 1 those of version 2, 0 none. Set by
    the upcasters (never stored: the default is omitted)."""

    schema_version: ClassVar[int] = 3


class ModelEventSent(Event, frozen=True, kw_only=True):
    """A client event the bridge sent to the model, verbatim (caller audio appends excepted: their
    bytes are in ``CallerAudioReceived``)."""

    type: str
    raw: str


class ModelEventUnknown(Event, frozen=True, kw_only=True):
    """A server event type the bridge does not know, or a malformed one: recorded and ignored."""

    type: str
    raw: str
    error: str = ""


class ModelErrorReported(Event, frozen=True, kw_only=True):
    """An ``error`` event from the model, with its code (also kept verbatim as ModelEventReceived)."""

    code: str | None
    message: str
    error_type: str = ""
    param: str | None = None


# --- what was said (typed facts, so readers never re-parse the model's JSON) ---------------------


class CallerSaid(Event, frozen=True, kw_only=True):
    """The model's transcription of one caller utterance (its input item)."""

    item_id: str
    text: str


class CallerSpeechDetected(Event, frozen=True, kw_only=True):
    """The model's voice activity detection heard the caller start (``started``) or stop speaking,
    ``audio_ms`` into the audio it was sent."""

    item_id: str
    started: bool
    audio_ms: int | None = None


class AssistantSaid(Event, frozen=True, kw_only=True):
    """What the assistant said in one item, as the model transcribed it (what it *generated*: where
    the caller cut it off is in ``BargeInDecided``). ``purpose`` names a response the engine asked
    for (``greeting``, ``goodbye:model``, ``tool_wait``, …; empty for a normal turn); an
    ``out_of_band`` one is spoken but not part of the conversation."""

    item_id: str
    response_id: str
    text: str
    purpose: str = ""
    out_of_band: bool = False


class ResponseFinished(Event, frozen=True, kw_only=True):
    """A model response ended (``status`` completed, cancelled, failed, incomplete), with its token
    counts by priced kind (``engine/usage.py`` ``TOKEN_KINDS``); ``error`` is the model's message
    when it failed (empty otherwise, and in logs recorded before it existed)."""

    response_id: str
    status: str
    tokens: dict[str, int] = {}
    purpose: str = ""
    out_of_band: bool = False
    error: str = ""


class ResponseStarted(Event, frozen=True, kw_only=True):
    """The model began a response (``response.created``): the turn's clock for its first audio.
    ``purpose`` and ``out_of_band`` as in ``AssistantSaid``."""

    response_id: str
    purpose: str = ""
    out_of_band: bool = False


class ResponseItemAdded(Event, frozen=True, kw_only=True):
    """A response began an item (``response.output_item.added``): ``item_type`` ``message`` (the
    assistant speaking; its words come in ``AssistantSaid``) or ``function_call`` (``name`` and
    ``tool_call_id``; the call itself is ``ToolCallRequested``). This is where the item takes its
    place in the conversation."""

    response_id: str
    item_id: str
    item_type: str
    role: str = ""
    name: str = ""
    tool_call_id: str = ""


class CallerAudioCommitted(Event, frozen=True, kw_only=True):
    """The caller's audio so far became an item of the conversation (``input_audio_buffer.committed``):
    where the caller's turn takes its place; its words come in ``CallerSaid``."""

    item_id: str


class CallerTranscriptionFailed(Event, frozen=True, kw_only=True):
    """The model could not transcribe a caller item (the model still heard the audio)."""

    item_id: str
    error: str = ""


class TranscriptDelta(Event, frozen=True, kw_only=True):
    """The next words of a transcript while it is being made (``role`` ``user``: the caller's
    transcription; ``assistant``: what it is saying, with its ``response_id``). The whole text comes
    in ``CallerSaid``/``AssistantSaid``; until then, and for an item cut off before its transcript
    was done (the call or the model went away), these are the words so far.

    One per item and writer window (``engine/transcript_words.py``): ``delta`` is every piece the
    model sent in that window, joined, and ``at`` when the first came. Logs recorded before hold one
    per piece; readers join them all the same."""

    item_id: str
    role: str
    delta: str
    response_id: str = ""


# --- tools -------------------------------------------------------------------------------------


class ToolCallRequested(Event, frozen=True, kw_only=True):
    """The model asked for a function call. ``handler`` is ``backend`` or ``human``."""

    tool_call_id: str
    name: str
    arguments: str
    response_id: str = ""
    item_id: str = ""
    handler: str = "backend"


class ToolCallCompleted(Event, frozen=True, kw_only=True):
    tool_call_id: str
    name: str
    output: str
    duration_ms: float
    source: str = "backend"
    """``backend`` (a registered handler), ``human`` (answered from the console) or ``stub`` (a
    ``callbridge test`` rerun answered it from the recorded call or the test file, without running it)."""


class ToolCallFailed(Event, frozen=True, kw_only=True):
    """A tool crashed, timed out or had no answer in time; ``output`` is the error result the model got."""

    tool_call_id: str
    name: str
    error: str
    output: str
    duration_ms: float
    timed_out: bool = False
    source: str = ""
    """``stub``: a ``callbridge test`` rerun's stand-in failed as the recorded call or the test file said
    (the tool did not run); empty: the tool itself, or the wait for an operator."""


# --- call control ------------------------------------------------------------------------------


class GreetingAudioStarted(Event, frozen=True, kw_only=True):
    """The agent's greeting started to play: its first audio went to the caller ``latency_ms`` after
    the call started (Twilio's ``start``)."""

    response_id: str
    latency_ms: int


class CallEndRequested(Event, frozen=True, kw_only=True):
    """Somebody decided the call should end: ``by`` is ``model`` (the end_call tool), ``operator``
    (console or API), ``silence``, ``max_duration`` or ``voicemail``. The goodbye is played first
    (unless an operator hung up), then the phone is hung up."""

    by: str
    reason: str = ""


class GoodbyeHeard(Event, frozen=True, kw_only=True):
    """What had to be said before hanging up or transferring has been played to the caller (its last
    mark echoed), ``waited_ms`` after the decision; ``capped`` when the wait hit its limit instead."""

    waited_ms: int
    capped: bool = False


class PhoneHangUpSent(Event, frozen=True, kw_only=True):
    """The phone call was hung up: through Twilio's REST API (``rest``: the call updated to
    ``completed``), or by ending the media stream, whose ``<Connect action>`` answers ``<Hangup/>``
    (``stream``)."""

    method: str
    ok: bool = True
    error: str = ""


class TransferRequested(Event, frozen=True, kw_only=True):
    """A transfer to a configured target was asked for (``by`` ``model`` or ``operator``)."""

    label: str
    to: str
    mode: str
    reason: str = ""
    by: str = "model"


class TransferRefused(Event, frozen=True, kw_only=True):
    """A transfer was asked for a target that is not configured: nothing is dialled."""

    label: str
    reason: str
    by: str = "model"


class TransferDialed(Event, frozen=True, kw_only=True):
    """The caller was handed to ``to`` with ``twiml`` (a ``<Dial>``), through REST or the stream's
    ``<Connect action>`` (``method``)."""

    label: str
    to: str
    method: str
    twiml: str
    ok: bool = True
    error: str = ""


class CallHeld(Event, frozen=True, kw_only=True):
    """A warm transfer: the caller waits in conference ``room`` (hold music) while the person at
    ``to`` is called and briefed. The call is not over: it ends when the caller hangs up there
    (``CallEnded(reason="transferred")``), or it comes back to the agent (``CallResumed``) when
    nobody answers."""

    label: str
    to: str
    room: str
    person_sid: str = ""
    """The CallSid of the call to the person (empty when the phone's answer did not tell): what a
    caller hanging up on hold, or an operator hanging the held call up, cancels."""


class TransferBriefed(Event, frozen=True, kw_only=True):
    """The person a warm transfer called heard the whole summary and is being put through to the
    caller (their leg asked for the room). Only then is the person's hanging up a transfer: one who
    hangs up during the summary never reaches the caller (``TransferNotAnswered``)."""

    label: str
    to: str
    person_sid: str = ""


class CallResumed(Event, frozen=True, kw_only=True):
    """The caller is back with the agent on a new media stream of the same call (a warm transfer
    nobody answered); the conversation carries on from the call's own log."""

    stream_sid: str
    reason: str = ""
    engine_id: str = ""
    """The engine carrying the call from here on (any engine may take the new stream)."""


class TransferNotAnswered(Event, frozen=True, kw_only=True):
    """Nobody took a warm transfer: the person's phone answered ``status`` (busy, no-answer, …, or
    ``completed`` when they hung up during the summary); ``reason`` says it in words."""

    label: str = ""
    to: str = ""
    status: str = ""
    reason: str = ""


class DtmfForwarded(Event, frozen=True, kw_only=True):
    """Keys the caller pressed were given to the model (``mode`` ``model``: each key; ``collect``:
    the whole entry, ended by ``#`` or a pause)."""

    digits: str
    mode: str


class DtmfSent(Event, frozen=True, kw_only=True):
    """The agent pressed keys (``send_dtmf``): in-band tones sent to the caller as audio (also in
    ``AssistantAudioSent``, so the recording has them)."""

    digits: str
    tone_ms: int
    gap_ms: int
    audio_ms: int


class SilenceReprompted(Event, frozen=True, kw_only=True):
    """The caller said nothing for ``silent_ms`` after hearing the agent: the agent asked if they are
    still there."""

    silent_ms: int


class DurationWarningGiven(Event, frozen=True, kw_only=True):
    """The call nears its maximum duration: the agent was told to wrap up."""

    remaining_s: float


class MachineDetected(Event, frozen=True, kw_only=True):
    """Twilio's answering-machine detection result for an outbound call (``human``,
    ``machine_end_beep``, ``machine_end_silence``, ``machine_end_other``, ``fax``, ``unknown``)."""

    answered_by: str
    detection_ms: int | None = None


class OutboundCallPlaced(Event, frozen=True, kw_only=True):
    """We asked Twilio to call ``to_number`` (``POST /api/calls``) and Twilio accepted: ``call_id``
    is the CallSid it returned. ``greeting`` (when given) replaces the agent's for this call;
    ``metadata`` is the caller's own, kept as given. Recorded only after Twilio accepted the call."""

    to_number: str
    from_number: str
    greeting: str | None = None
    metadata: dict[str, Any] = {}
    status: str = ""
    """Twilio's status in its answer (``queued``)."""
    by: str = "api"
    agent: str | None = None
    """The agent profile asked for (``POST /api/calls {"agent"}``): it answers the call, over the
    routing rules and the assistant request."""


class ModelSessionRecycled(Event, frozen=True, kw_only=True):
    """A fresh model session took over from one nearing its time limit, at a quiet moment: the new
    one was configured and re-seeded before the switch, so the caller heard no gap."""

    from_session: int
    to_session: int
    seeded_items: int


# --- commands between engines -------------------------------------------------------------------


class CallCommandIssued(Event, frozen=True, kw_only=True):
    """An operator's command for a live call that this engine does not carry (recorded in the issuing
    engine's own stream; ``target_call_id`` is the call). The engine that carries the call carries it
    out and answers with ``CallCommandAnswered``."""

    target_call_id: str
    command_id: str
    kind: str
    """``update_session``, ``client_event``, ``hang_up``, ``transfer`` or ``machine_detected``."""
    payload: dict[str, Any] = {}
    issued_by: str = ""


class CallCommandAnswered(Event, frozen=True, kw_only=True):
    """The engine carrying the call carried a command out (``ok``) or could not (the call is ending)."""

    command_id: str
    kind: str
    ok: bool
    detail: str = ""
    engine_id: str = ""
    issued_by: str = ""


# --- supervision -------------------------------------------------------------------------------


class TaskCrashed(Event, frozen=True, kw_only=True):
    """A task of the call raised. ``action`` is what the supervisor did: ``restarted`` or ``ended_call``."""

    task: str
    error: str
    traceback: str = ""
    action: str = "restarted"


# --- privacy -------------------------------------------------------------------------------------


class CallErased(Event, frozen=True, kw_only=True):
    """The call's audio, transcripts, tool payloads and caller details were made unreadable everywhere:
    its key was deleted from the key store (crypto-shredding, ``engine.keys``), so its events now read
    with placeholders (``engine.privacy``), and the views replaced what they held. ``by`` is ``api`` or
    ``cli``; ``legacy_events`` counts events recorded before encryption existed, scrubbed in place."""

    by: str = "api"
    legacy_events: int = 0


# --- webhooks out (``projections.webhooks``) -----------------------------------------------------

WEBHOOKS_STREAM = "webhooks"
"""The ``call_id`` of webhook registrations (every engine reads them from the log)."""
WEBHOOK_LEASE_STREAM = "webhooks:lease"
"""The ``call_id`` of the delivery lease: which engine sends webhooks."""
WEBHOOK_STREAM_PREFIX = "webhook:"
"""``call_id`` prefix of one endpoint's delivery record: ``webhook:<webhook_id>``."""


class WebhookRegistered(Event, frozen=True, kw_only=True):
    """An endpoint was registered for some event kinds (``call_id`` is ``webhooks``). ``secret`` is
    sealed with the webhook's own key (never stored in clear; shredded when it is removed)."""

    webhook_id: str
    url: str
    events: list[str]
    secret: str
    by: str = "api"


class WebhookRemoved(Event, frozen=True, kw_only=True):
    """An endpoint was removed: nothing more is sent to it (``call_id`` is ``webhooks``)."""

    webhook_id: str
    by: str = "api"


class WebhookLeaseTaken(Event, frozen=True, kw_only=True):
    """``engine_id`` now sends the webhooks (``call_id`` is ``webhooks:lease``): appended only if the
    lease stream did not change since it was read, so one engine holds it at a time. ``previous`` is
    the engine it was taken from (empty for the first)."""

    engine_id: str
    instance: str
    previous: str = ""


class WebhookAttempted(Event, frozen=True, kw_only=True):
    """One attempt to deliver a message to an endpoint (``call_id`` is ``webhook:<webhook_id>``).
    ``delivery_id`` is ``<trigger>-<kind>`` (``trigger``: the log position that queued it — the event
    itself, or a redelivery request); ``message_id`` is the ``webhook-id`` header, the same on every
    attempt. ``ok`` when the endpoint answered 2xx; ``low_water``: every delivery queued at or before
    this position is done (where a restarted sender resumes)."""

    webhook_id: str
    delivery_id: str
    message_id: str
    kind: str
    subject: str
    """The call the message is about."""
    source: int
    """Position of the event the message describes."""
    trigger: int
    attempt: int
    ok: bool
    status: int | None = None
    latency_ms: float = 0.0
    error: str = ""
    low_water: int = 0
    engine_id: str = ""


class WebhookDeadLettered(Event, frozen=True, kw_only=True):
    """A message was given up on: no 2xx within the retry window (``call_id`` is ``webhook:<id>``).
    It can be sent again with ``POST /api/webhooks/{id}/deliveries/{delivery_id}/redeliver``."""

    webhook_id: str
    delivery_id: str
    message_id: str
    kind: str
    subject: str
    source: int
    trigger: int
    attempts: int
    error: str = ""
    low_water: int = 0


class WebhookRedeliveryRequested(Event, frozen=True, kw_only=True):
    """Send a delivered or dead-lettered message again (``call_id`` is ``webhooks``): it is queued as
    a new delivery, ``<this event's position>-<kind>``, with the same ``webhook-id``."""

    webhook_id: str
    delivery_id: str
    by: str = "api"


Direction = Literal["caller", "assistant"]

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""``(name, from_version) -> function`` turning a stored payload of that version into the next one.
Register one whenever a class's ``schema_version`` goes up."""


def _recorded_without_facts(payload: dict[str, Any]) -> dict[str, Any]:
    """ModelEventReceived v1 -> v2: the same fields; a v1 event's log has no typed facts beside it."""
    return {**payload, "facts": 0}


def _recorded_with_the_first_facts(payload: dict[str, Any]) -> dict[str, Any]:
    """ModelEventReceived v2 -> v3: the same fields; a v2 event's log has the first four facts only
    (unless it came from v1, with none)."""
    return payload if "facts" in payload else {**payload, "facts": 1}


UPCASTERS[("ModelEventReceived", 1)] = _recorded_without_facts
UPCASTERS[("ModelEventReceived", 2)] = _recorded_with_the_first_facts


def upcast(name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    """Bring a stored payload of ``name@version`` up to the current ``schema_version``."""
    cls = Event.registry[name]
    while version < cls.schema_version:
        payload = UPCASTERS[(name, version)](payload)
        version += 1
    return payload


_encoder = msgspec.json.Encoder()


def encode_event(event: Event) -> tuple[str, bytes]:
    """The stored form of an event: ``(topic, JSON bytes)``."""
    return type(event).topic(), _encoder.encode(event)


_decoders: dict[str, msgspec.json.Decoder[Any]] = {}


def decode_event(topic: str, state: bytes) -> Event:
    """Rebuild an event from its stored form, upcasting old versions.

    Raises ``KeyError`` for a topic this code does not know.
    """
    name, _, version_text = topic.partition("@")
    cls = Event.registry[name]
    version = int(version_text or 1)
    if version == cls.schema_version:
        decoder = _decoders.get(name)
        if decoder is None:
            decoder = _decoders[name] = msgspec.json.Decoder(cls)
        event: Event = decoder.decode(state)
        return event
    payload = upcast(name, version, msgspec.json.decode(state))
    return msgspec.convert(payload, cls)


def event_to_dict(event: Event) -> dict[str, Any]:
    """The JSON-ready form used by the API and the live feed (bytes become base64 strings)."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return data
