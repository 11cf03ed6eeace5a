"""A recorded call as a test: its caller's audio and keys to play again, the script the simulated
model follows (what the recorded caller said, and what the agent answered then), its turns to compare
with, and the assertions suggested by what happened.

The simulated model cannot understand audio, so it is told the words of each caller turn (the
recorded transcriptions) and answers as the agent answered in the original call: the same reply, or
the same tool call followed by what was said once the tool answered. What changes in a rerun is
everything around the model: the agent (greeting, tools offered, transfer targets, keypad, limits)
and the engine. With a real model (``OPENAI_API_KEY``) the model answers afresh.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callbridge.adapters.sim.caller_script import Step
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.sim.recorded_caller import recorded_caller_script
from callbridge.engine.agent import DEFAULT_PROFILE, Agent, AgentError
from callbridge.engine.agent_profiles import AgentBook
from callbridge.engine.events import (
    AGENTS_STREAM,
    SETTINGS_STREAM,
    CallErased,
    CallerAudioReceived,
    CallResumed,
    CallStarted,
    DefaultSessionConfigSaved,
    DtmfReceived,
    Event,
)
from callbridge.engine.store import EventStore
from callbridge.projections.call_turns import CallTurns, call_turns
from callbridge.projections.source import LogSource
from callbridge.projections.test_suggestion import suggested_test_toml
from callbridge.regression.spec import Expect, parse_spec

NOT_HEARD = "(the recorded call had no more turns)"


class RecordedCallError(ValueError):
    """The call cannot be replayed (unknown, erased, no caller audio); the message says what to do."""


class RecordedCall(msgspec.Struct, frozen=True):
    call_id: str
    events: list[Event]
    turns: CallTurns


def read_recorded_call(store: EventStore, call_id: str) -> RecordedCall:
    recorded = store.read_call(call_id)
    if not recorded:
        raise RecordedCallError(
            f"no call {call_id} in {store.description}; list calls with `GET /api/conversations` or the console"
        )
    events = [r.event for r in recorded]
    if any(isinstance(e, CallErased) for e in events):
        raise RecordedCallError(f"call {call_id} was erased: its audio is gone, it cannot be replayed")
    if not any(isinstance(e, CallerAudioReceived) for e in events):
        raise RecordedCallError(f"call {call_id} has no recorded caller audio to replay")
    return RecordedCall(call_id, events, call_turns(events))


def stored_agent(store: EventStore, name: str) -> Agent | None:
    """Today's version of the agent profile ``name`` in the store (None: no such profile, or one this
    code cannot read): what answers that agent's calls now."""
    book = AgentBook()
    for recorded in store.read_call(AGENTS_STREAM):
        book.apply(recorded.event, position=recorded.position, version=recorded.version)
    current = book.current(name or DEFAULT_PROFILE)
    if current is None:
        return None
    try:
        return current.decoded()
    except AgentError:
        return None


def stored_default_session(store: EventStore) -> dict[str, Any] | None:
    """Today's default session configuration (the console's Session page), when one was saved: the
    rerun's fresh store starts with it, so instructions, voice and tools set there answer too."""
    saved = None
    for recorded in store.read_call(SETTINGS_STREAM):
        if isinstance(recorded.event, DefaultSessionConfigSaved):
            saved = dict(recorded.event.session_config)
    return saved


def last_calls(store: EventStore, count: int, agent: str | None = None) -> list[str]:
    """The ``count`` most recently started calls (answered by ``agent``, when given), oldest first;
    only ``CallStarted`` rows are read (the log's topic filter), not the calls' audio."""
    source = LogSource(store, {CallStarted.__name__})
    head = source.head()
    found: list[str] = []
    after = 0
    while after < head:
        page = source.page(after, head, 1000)
        for recorded in page.events:
            event = recorded.event
            if isinstance(event, CallStarted) and (agent is None or (event.agent_name or DEFAULT_PROFILE) == agent):
                found.append(event.call_id)
        after = page.reached
    return found[-count:] if count > 0 else []


def caller_steps(call: RecordedCall, *, wait_for_hang_up_s: float = 10.0) -> list[Step]:
    """The recorded caller's part (its first stream: a call back from a transfer's hold is not
    replayed), keys pressed where they were pressed."""
    frames: list[tuple[int, bytes]] = []
    offsets: list[float] = []
    for event in call.events:
        if isinstance(event, CallResumed):
            break
        if isinstance(event, CallerAudioReceived) and event.timestamps:
            offsets.append(event.at - event.timestamps[0] / 1000)
            start = 0
            for timestamp, size in zip(event.timestamps, event.frame_sizes, strict=False):
                frames.append((timestamp, event.payload[start : start + size]))
                start += size
    stream_start = min(offsets) if offsets else 0.0
    keys = [
        (round((e.at - stream_start) * 1000), e.digit)
        for e in call.events
        if isinstance(e, DtmfReceived) and len(e.digit) == 1
    ]
    caller_hung_up = call.turns.outcome.ended_by == "caller"
    return recorded_caller_script(frames, keys, caller_hung_up=caller_hung_up, wait_for_hang_up_s=wait_for_hang_up_s)


def model_script(turns: CallTurns) -> Script:
    """The simulated model's part: each user turn of the recorded call, heard and answered as then."""
    scripted: list[Turn] = []
    for turn in turns.turns[1:]:
        heard = turn.caller or "(inaudible)"
        first_tool = turn.tools[0] if turn.tools else None
        if first_tool is not None:
            call = FunctionCall(name=first_tool.name, arguments=first_tool.arguments or "{}")
            after = _template(turn.after_tool) if turn.after_tool is not None else None
            scripted.append(
                Turn(transcript=heard, function_call=call, **({"after_tool": after} if after is not None else {}))
            )
        else:
            scripted.append(Turn(transcript=heard, reply=turn.reply or ""))
    greeting = turns.turns[0].reply
    script = Script(turns=scripted, fallback_transcript=NOT_HEARD)
    return msgspec.structs.replace(script, greeting=greeting) if greeting else script


def _template(text: str) -> str:
    """Recorded words as an ``after_tool`` template: braces would read as placeholders."""
    return text.replace("{", "(").replace("}", ")")


def suggested_expect(turns: CallTurns) -> Expect:
    """Assertions from what happened (``projections/test_suggestion.py``, the console's "Save as test")."""
    return parse_spec(suggested_test_toml(turns), f"call {turns.call_id}").expect
