"""The typed conversation facts of logs recorded before the engine recorded them, derived when read.

An engine records, beside each model event it keeps verbatim, what it says about the conversation
(``engine/model_facts.py``: ``CallerSaid``, ``AssistantSaid``, ``ResponseStarted``, …), and the
views fold those facts only. A log written before that has the model's JSON alone (its
``ModelEventReceived`` events are version 1, upcast with ``facts`` 0), or beside it the first four
facts only (version 2, ``facts`` 1). This module is the one place that reads such an event's JSON:
it derives the facts the engine would have recorded and did not, with the engine's own function,
so old and new logs give the same answers. Readers call
:func:`expand` on what they read (``projections/source.py`` for the views, the timeline for a
call's events); events of today's logs pass through untouched.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.openai.errors import RealtimeProtocolError
from callbridge.engine.events import (
    AssistantSaid,
    CallerSaid,
    CallerSpeechDetected,
    Event,
    ModelEventReceived,
    ResponseFinished,
)
from callbridge.engine.model_facts import FACTS, STATING_TYPES, conversation_facts
from callbridge.engine.store import RecordedEvent

DERIVED: frozenset[str] = frozenset(cls.__name__ for cls in FACTS)
"""Names of the facts an old log's model events are read as."""

RECORDED_IN_VERSION_2: tuple[type[Event], ...] = (CallerSpeechDetected, CallerSaid, AssistantSaid, ResponseFinished)
"""The facts an engine of ``ModelEventReceived@2`` recorded itself (``facts`` 1)."""

LEGACY_TOPICS = ("ModelEventReceived@1", "ModelEventReceived@2")
"""The stored topics of the model events of logs recorded before all the facts (the only ones read here)."""


def facts_of(event: ModelEventReceived) -> list[Event]:
    """The facts an old log's model event states and its engine did not record ([] for today's
    events, whose facts are all recorded, and for JSON that does not read as the protocol says)."""
    if event.facts >= 2 or event.type not in STATING_TYPES:  # any other type is not even decoded
        return []
    try:
        decoded = oa.decode_server(event.raw)
    except RealtimeProtocolError:
        return []
    facts = conversation_facts(decoded, event.call_id, event.at, {})
    if event.facts == 1:
        facts = [fact for fact in facts if not isinstance(fact, RECORDED_IN_VERSION_2)]
    return facts


def expand(recorded: Iterable[RecordedEvent], *, keep_model_events: bool = True) -> Iterator[RecordedEvent]:
    """``recorded`` with each old model event followed by the facts it states (at its position);
    without ``keep_model_events`` the old model events themselves are left out."""
    for one in recorded:
        event = one.event
        if isinstance(event, ModelEventReceived) and event.facts < 2:
            if keep_model_events:
                yield one
            for fact in facts_of(event):
                yield RecordedEvent(position=one.position, version=one.version, event=fact, erased=one.erased)
        else:
            yield one


def expand_events(events: Iterable[Event]) -> list[Event]:
    """The same for bare events (a call's events as the timeline and the recording take them)."""
    out: list[Event] = []
    for event in events:
        out.append(event)
        if isinstance(event, ModelEventReceived) and event.facts < 2:
            out.extend(facts_of(event))
    return out
