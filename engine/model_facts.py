"""What a model server event says about the conversation, as typed facts — pure, in one place.

The engine records the model's events verbatim (``ModelEventReceived``), and beside them these
facts: who spoke when (``CallerSpeechDetected``), the caller's turn taking its place
(``CallerAudioCommitted``) and its words (``CallerSaid``, ``CallerTranscriptionFailed``), each
response's start, items and end (``ResponseStarted``, ``ResponseItemAdded``, ``ResponseFinished``
with its tokens), what the assistant said (``AssistantSaid``), and the words of both so far
(``TranscriptDelta``). Readers fold the facts and never
parse the model's JSON. The call core (``engine/call_model.py``) records them as the events arrive;
``projections/legacy_facts.py`` derives the same facts from logs recorded before they existed, with
this same function, so old and new logs read alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from callbridge.adapters.openai import server_events as se
from callbridge.engine.events import (
    AssistantSaid,
    CallerAudioCommitted,
    CallerSaid,
    CallerSpeechDetected,
    CallerTranscriptionFailed,
    Event,
    ResponseFinished,
    ResponseItemAdded,
    ResponseStarted,
    TranscriptDelta,
)
from callbridge.engine.tool_wait import TOOL_WAIT_TAG
from callbridge.engine.usage import TOKEN_KINDS, usage_tokens

FACTS: tuple[type[Event], ...] = (
    CallerSpeechDetected,
    CallerAudioCommitted,
    TranscriptDelta,
    CallerSaid,
    CallerTranscriptionFailed,
    ResponseStarted,
    ResponseItemAdded,
    AssistantSaid,
    ResponseFinished,
)
"""Every kind of fact :func:`conversation_facts` states."""

STATING_TYPES: frozenset[str] = se.wire_types(
    se.InputAudioBufferSpeechStarted,
    se.InputAudioBufferSpeechStopped,
    se.InputAudioBufferCommitted,
    se.InputAudioTranscriptionDelta,
    se.InputAudioTranscriptionCompleted,
    se.InputAudioTranscriptionFailed,
    se.ResponseCreated,
    se.ResponseOutputItemAdded,
    se.ResponseOutputAudioTranscriptDelta,
    se.ResponseOutputTextDelta,
    se.ResponseOutputAudioTranscriptDone,
    se.ResponseOutputTextDone,
    se.ResponseDone,
)
"""The model event types that state a fact (any other states none)."""


def response_purpose(response: se.Response) -> str:
    """What the engine asked a response for (its ``metadata.callbridge``), or empty."""
    metadata = response.metadata
    if isinstance(metadata, dict) and isinstance(metadata.get("callbridge"), str):
        return str(metadata["callbridge"])
    return ""


def response_failure(response: se.Response) -> str:
    """What the model said about a failed response (empty for any other status)."""
    details = response.status_details
    if response.status != "failed" or details is None:
        return ""
    error = details.error
    return (error.message or error.code or "") if error is not None else (details.reason or "")


def conversation_facts(event: object, call_id: str, at: float, purposes: Mapping[str, str]) -> list[Event]:
    """The facts ``event`` (a decoded server event) states; ``purposes`` maps response ids to what
    the engine asked them for (``response_purpose``) and may be empty."""
    if isinstance(event, se.InputAudioBufferSpeechStarted | se.InputAudioBufferSpeechStopped):
        started = isinstance(event, se.InputAudioBufferSpeechStarted)
        audio_ms = event.audio_start_ms if isinstance(event, se.InputAudioBufferSpeechStarted) else event.audio_end_ms
        return [CallerSpeechDetected(call_id=call_id, at=at, item_id=event.item_id, started=started, audio_ms=audio_ms)]
    if isinstance(event, se.InputAudioBufferCommitted):
        return [CallerAudioCommitted(call_id=call_id, at=at, item_id=event.item_id)]
    if isinstance(event, se.InputAudioTranscriptionCompleted):
        return [CallerSaid(call_id=call_id, at=at, item_id=event.item_id, text=event.transcript)]
    if isinstance(event, se.InputAudioTranscriptionFailed):
        error = event.error.message or event.error.code or ""
        return [CallerTranscriptionFailed(call_id=call_id, at=at, item_id=event.item_id, error=error)]
    if isinstance(event, se.ResponseOutputAudioTranscriptDelta | se.ResponseOutputTextDelta):
        if not event.delta:
            return []
        return [
            TranscriptDelta(
                call_id=call_id,
                at=at,
                item_id=event.item_id,
                role="assistant",
                delta=event.delta,
                response_id=event.response_id,
            )
        ]
    if isinstance(event, se.InputAudioTranscriptionDelta):
        if not event.delta:
            return []
        return [TranscriptDelta(call_id=call_id, at=at, item_id=event.item_id, role="user", delta=event.delta)]
    if isinstance(event, se.ResponseOutputAudioTranscriptDone | se.ResponseOutputTextDone):
        text = event.transcript if isinstance(event, se.ResponseOutputAudioTranscriptDone) else event.text
        purpose = purposes.get(event.response_id, "")
        said = AssistantSaid(
            call_id=call_id,
            at=at,
            item_id=event.item_id,
            response_id=event.response_id,
            text=text,
            purpose=purpose,
            out_of_band=purpose == TOOL_WAIT_TAG,
        )
        return [said]
    if isinstance(event, se.ResponseCreated):
        purpose = response_purpose(event.response)
        response_id = event.response.id or ""
        return [
            ResponseStarted(
                call_id=call_id, at=at, response_id=response_id, purpose=purpose, out_of_band=purpose == TOOL_WAIT_TAG
            )
        ]
    if isinstance(event, se.ResponseOutputItemAdded):
        item = event.item
        if not item.id:
            return []
        added = ResponseItemAdded(
            call_id=call_id,
            at=at,
            response_id=event.response_id,
            item_id=item.id,
            item_type=item.type,
            role=item.role or "",
            name=item.name or "",
            tool_call_id=item.call_id or "",
        )
        return [added]
    if isinstance(event, se.ResponseDone):
        response = event.response
        response_id = response.id or ""
        purpose = purposes.get(response_id, "")
        finished = ResponseFinished(
            call_id=call_id,
            at=at,
            response_id=response_id,
            status=response.status or "",
            tokens=dict(zip(TOKEN_KINDS, usage_tokens(response.usage), strict=True)),
            purpose=purpose,
            out_of_band=purpose == TOOL_WAIT_TAG,
            error=response_failure(response),
        )
        return [finished]
    return []
