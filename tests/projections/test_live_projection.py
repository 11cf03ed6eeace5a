"""The live feed's messages as a pure fold over recorded events (``projections.live``)."""

from __future__ import annotations

import json

from callbridge.engine.events import (
    SETTINGS_STREAM,
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallerAudioReceived,
    DefaultSessionConfigSaved,
    ModelEventReceived,
    ModelEventSent,
    ModelEventUnknown,
    ToolCallRequested,
)
from callbridge.engine.synthetic import CallLog
from callbridge.projections.live import LiveProjection, replay_messages

CALL = "CA00000000000000000000000000000042"
STREAM = "MZ00000000000000000000000000000042"  # CallLog's stream sid for CALL


def weather_call() -> CallLog:
    return (
        CallLog(CALL, start_at=1_767_225_600.0, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("What's the weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temperature_c": 18}, handler="human")
        .assistant_says("It is eighteen degrees in Paris.")
        .end()
    )


def feed(log: CallLog) -> list[dict[str, object]]:
    projection = LiveProjection()
    return [message for event in log.events for message in projection.messages(event)]


def test_every_message_names_its_call_and_stream_and_audio_never_reaches_the_feed() -> None:
    log = weather_call()
    messages = feed(log)
    assert all(m["call_id"] == CALL and m["stream_sid"] == STREAM for m in messages)
    types = [m["type"] for m in messages]
    assert types[0] == "call.started" and types[-1] == "call.ended"
    assert not any("audio.delta" in str(t) or t == "input_audio_buffer.append" for t in types)
    audio = [e for e in log.events if isinstance(e, CallerAudioReceived | AssistantAudioSent | AssistantAudioPlayed)]
    projection = LiveProjection()
    assert audio and all(projection.messages(e) == [] for e in audio)
    assert "AssistantAudioSent" not in projection.event_names
    assert "CallerAudioReceived" not in projection.event_names


def test_call_started_and_ended_carry_who_when_and_how_long() -> None:
    messages = feed(weather_call())
    started, ended = messages[0], messages[-1]
    assert started["from"] == "+15550100001" and started["to"] == "+15550109999"
    assert started["started_at"] == "2026-01-01T00:00:00.000Z" and started["model"] == "sim"
    assert started["session"] == {"instructions": "You are a helpful phone assistant.", "voice": "marin"}
    assert ended["reason"] == "caller_hangup" and isinstance(ended["duration"], float) and ended["duration"] > 1


def test_server_events_are_relayed_verbatim_and_client_events_are_marked_client() -> None:
    log = weather_call()
    messages = feed(log)
    received = [e for e in log.events if isinstance(e, ModelEventReceived)]
    relayed = [m for m in messages if "event_id" in m]
    assert len(relayed) == len(received)
    for event, message in zip(received, relayed, strict=True):
        body = dict(message)
        assert body.pop("call_id") == CALL and body.pop("stream_sid") == STREAM
        if "tool_call_id" in body:
            body["call_id"] = body.pop("tool_call_id")
        assert body == json.loads(event.raw)
    sent = [m for m in messages if m.get("direction") == "client"]
    assert [m["type"] for m in sent] == [e.type for e in log.events if isinstance(e, ModelEventSent)]


def test_a_server_events_own_call_id_becomes_tool_call_id() -> None:
    log = weather_call()
    args_done = next(m for m in feed(log) if m["type"] == "response.function_call_arguments.done")
    requested = next(e for e in log.events if isinstance(e, ToolCallRequested))
    assert args_done["call_id"] == CALL and args_done["tool_call_id"] == requested.tool_call_id


def test_tool_calls_are_pending_until_answered_and_the_live_calls_list_them() -> None:
    log = weather_call()
    projection = LiveProjection()
    requested = next(e for e in log.events if isinstance(e, ToolCallRequested))
    seen: list[dict[str, object]] = []
    for event in log.events:
        seen += projection.messages(event)
        if event is requested:
            assert projection.is_pending(CALL, requested.tool_call_id)
            [live] = projection.live_calls()
            assert live["call_id"] == CALL and live["stream_sid"] == STREAM
            [pending] = live["pending_tool_calls"]
            assert pending["tool_call_id"] == requested.tool_call_id and pending["handler"] == "human"
            assert json.loads(pending["arguments"]) == {"city": "Paris"}
    assert projection.live_calls() == [] and not projection.is_pending(CALL, requested.tool_call_id)
    kinds = {m["type"]: m for m in seen if str(m["type"]).startswith("callbridge.tool_call.")}
    assert kinds["callbridge.tool_call.requested"]["handler"] == "human"
    assert kinds["callbridge.tool_call.completed"]["output"] == '{"temperature_c":18}'
    assert kinds["callbridge.tool_call.completed"]["source"] == "human"


def test_a_saved_default_session_is_a_message_about_no_call() -> None:
    saved = DefaultSessionConfigSaved(call_id=SETTINGS_STREAM, at=1.0, session_config={"voice": "cedar"})
    [message] = LiveProjection().messages(saved)
    assert message["type"] == "callbridge.default_session.saved"
    assert message["call_id"] is None and message["stream_sid"] is None
    assert message["session"] == {"voice": "cedar"}


def test_unreadable_model_events_are_skipped_not_fatal() -> None:
    projection = LiveProjection()
    bad = [
        ModelEventReceived(call_id=CALL, at=1.0, type="x", raw="{not json"),
        ModelEventUnknown(call_id=CALL, at=1.0, type="", raw="[1, 2]", error="not an object"),
    ]
    assert [projection.messages(e) for e in bad] == [[], []]
    unknown = ModelEventUnknown(call_id=CALL, at=1.0, type="brand.new", raw='{"type": "brand.new", "x": 1}')
    assert projection.messages(unknown) == [{"type": "brand.new", "x": 1, "call_id": CALL, "stream_sid": None}]


def test_a_replay_has_the_live_messages_with_offsets_from_the_first_event() -> None:
    log = weather_call()
    timed = replay_messages(log.events)
    assert [m for _, m in timed] == feed(log)
    offsets = [t for t, _ in timed]
    assert offsets[0] == 0.0 and offsets == sorted(offsets) and offsets[-1] > 1
    assert replay_messages([]) == []


def test_only_the_most_recent_calls_are_remembered() -> None:
    projection = LiveProjection(max_calls=2)
    for n in range(3):
        for event in CallLog(f"CA{n}").start().events:
            projection.messages(event)
    assert [c["call_id"] for c in projection.live_calls()] == ["CA1", "CA2"]
    assert projection.stream_sid("CA0") is None and projection.stream_sid("CA2") == "MZ2"
