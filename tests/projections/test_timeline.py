"""The replayable timeline and ``callbridge replay``: what happened in a call, in words, the same
every time it is replayed; the events as JSON; the recording written where asked."""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path

import pytest

from callbridge.engine.events import (
    CallerAudioReceived,
    ModelEventReceived,
    ModelEventUnknown,
    TwilioEventIgnored,
    TwilioFrameRejected,
)
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.event_json import event_record, render_json
from callbridge.projections.replay_cli import replay_cli
from callbridge.projections.timeline import KINDS, TimelineEntry, build_timeline, render_text


def small_call() -> CallLog:
    return CallLog().start().caller_says("What's the weather in Paris?").assistant_says("It is sunny.").end()


def stored(log: CallLog, url: str) -> None:
    store = EventStore(url)
    try:
        log.write(store)
    finally:
        store.close()


def entries_of(log: CallLog, kind: str) -> list[TimelineEntry]:
    return [entry for entry in build_timeline(log.events) if entry.kind == kind]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- the timeline ----------------------------------------------------------------------------


def test_a_small_call_reads_as_a_timeline() -> None:
    assert render_text(build_timeline(small_call().events), color=False) == (
        "+00:00.000  call       answered by agent default v1: default\n"
        "+00:00.000  call       call from +15550100001 to +15550109999 (model sim)\n"
        "+00:00.040  model      connected to ws://sim/v1/realtime\n"
        "+00:00.040  caller     starts speaking\n"
        "+00:00.040  barge_in   caller spoke while nothing was playing: no truncate\n"
        "+00:02.220  caller     stops speaking (2.18 s)\n"
        '+00:02.340  caller     "What\'s the weather in Paris?"\n'
        '+00:02.690  assistant  "It is sunny." (latency 470 ms)\n'
        "+00:03.690  twilio     stream stopped by Twilio\n"
        "+00:03.690  call       call ended: caller_hangup after 3.7 s\n"
    )


def test_entries_carry_the_facts_behind_their_summaries() -> None:
    timeline = build_timeline(small_call().events)
    start, reply, end = timeline[1], timeline[7], timeline[-1]  # after the routing decision

    assert {entry.kind for entry in timeline} <= set(KINDS)
    assert [entry.t_ms for entry in timeline] == sorted(entry.t_ms for entry in timeline)
    assert (start.data["from_number"], start.data["to_number"], start.data["model"]) == (
        "+15550100001",
        "+15550109999",
        "sim",
    )
    assert reply.kind == "assistant"
    assert reply.data["transcript"] == "It is sunny."
    assert (reply.data["latency_ms"], reply.data["status"], reply.data["heard_ms"]) == (470, "completed", 800)
    assert (end.data["reason"], end.data["duration_s"]) == ("caller_hangup", 3.69)


def test_tool_calls_show_arguments_result_error_and_duration() -> None:
    log = (
        CallLog()
        .start()
        .caller_says("Weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temp_c": 21}, duration_ms=250)
        .tool_call("book_table", {"people": 4}, "restaurant API down", duration_ms=5000, failed=True)
        .end()
    )
    lines = [entry.summary for entry in entries_of(log, "tool")]

    assert lines == [
        'get_weather({"city":"Paris"})',
        'get_weather -> {"temp_c":21} (250 ms)',
        'book_table({"people":4})',
        "book_table failed after 5000 ms: restaurant API down",
    ]
    completed = entries_of(log, "tool")[1]
    assert (completed.data["output"], completed.data["duration_ms"]) == ('{"temp_c":21}', 250.0)


def test_a_barge_in_shows_what_was_heard_received_and_truncated() -> None:
    log = (
        CallLog()
        .start()
        .caller_says("Tell me a story")
        .assistant_says("Once upon a time there was a phone.", ms=3000, interrupted_at_ms=1200)
        .caller_says("Stop")
        .end()
    )
    skipped, barge, cleared = entries_of(log, "barge_in")  # the first question: nothing was playing
    assert skipped.data["action"] == "skipped_nothing_playing"
    reply = entries_of(log, "assistant")[0]

    assert barge.summary == "caller interrupted: heard 1200 ms of 2200 ms received, truncated at 1200 ms"
    assert (barge.data["played_ms"], barge.data["received_ms"], barge.data["audio_end_ms"]) == (1200, 2200, 1200)
    assert barge.data["action"] == "truncated"
    assert cleared.summary == "playback cleared: 1000 ms unplayed dropped"
    assert reply.summary.endswith("(interrupted, 1200 ms heard; latency 470 ms)")
    assert barge.t_ms - reply.t_ms == 1200


def test_a_model_drop_and_reconnect_are_on_the_timeline() -> None:
    log = CallLog().start().caller_says("Hello").assistant_says("Hi!").model_drops(code=1011).end()
    model = [entry.summary for entry in entries_of(log, "model")]

    assert model == [
        "connected to ws://sim/v1/realtime",
        "disconnected (code 1011): connection lost",
        "reconnected (attempt 1), 2 items re-seeded",
    ]
    assert entries_of(log, "model")[2].data["attempt"] == 1


def test_errors_dtmf_and_odd_frames_from_either_side_are_shown() -> None:
    log = CallLog().start().model_error("invalid_value", "Invalid audio format").dtmf("7")
    at = log._at()
    log.events += [
        TwilioFrameRejected(call_id=log.call_id, at=at, error="not JSON", raw="{oops"),
        TwilioEventIgnored(call_id=log.call_id, at=at, event="heartbeat", raw='{"event":"heartbeat"}'),
        ModelEventUnknown(call_id=log.call_id, at=at, type="response.mystery", raw="{}", error="unknown type"),
    ]
    log.end()
    summaries = [(entry.kind, entry.summary) for entry in build_timeline(log.events)]

    assert ("error", "model error invalid_value: Invalid audio format") in summaries
    assert ("dtmf", "pressed 7") in summaries
    assert ("twilio", "frame rejected: not JSON") in summaries
    assert ("twilio", "unknown event 'heartbeat' ignored") in summaries
    assert ("model", "unknown model event 'response.mystery' ignored: unknown type") in summaries


def test_a_call_without_call_ended_says_it_was_cut_off_at_its_last_moment() -> None:
    log = CallLog().start().caller_says("Hello?")
    last_audio = max(e.at + len(e.payload) / 8000 for e in log.events if isinstance(e, CallerAudioReceived))
    timeline = build_timeline(log.events)

    assert timeline[-1].kind == "call"
    assert timeline[-1].summary == "no CallEnded: the call was cut off"
    assert timeline[-1].t_ms == round((max(last_audio, log.events[-1].at) - log.start_at) * 1000)
    assert not any("call ended" in entry.summary for entry in timeline)


def test_untrusted_text_cannot_drive_the_terminal_and_color_is_opt_in() -> None:
    log = CallLog().start().caller_says("Hi \x1b[2J there\nfriend").end()
    plain = render_text(build_timeline(log.events), color=False)
    colored = render_text(build_timeline(log.events), color=True)

    assert '"Hi ?[2J there friend"' in plain
    assert "\x1b" not in plain
    assert "\x1b[36mcaller    \x1b[0m" in colored
    assert "\x1b[2J" not in colored


def test_malformed_model_events_of_an_old_log_do_not_break_the_timeline() -> None:
    log = CallLog().start()
    at = log._at()
    old = {"call_id": log.call_id, "at": at, "facts": 0}  # a log with no facts: read from the model's JSON
    speech = '{"type": "input_audio_buffer.speech_started", "item_id": "item_1", "audio_start_ms": 0}'
    log.events += [
        ModelEventReceived(**old, type="response.done", raw="not json"),
        ModelEventReceived(**old, type="response.done", raw='{"response": "text"}'),
        ModelEventReceived(**old, type="input_audio_buffer.speech_started", raw="[1]"),
        ModelEventReceived(**old, type="input_audio_buffer.speech_started", raw=speech),
    ]
    log.end()
    assert [entry.summary for entry in build_timeline(log.events)][-4:] == [
        "connected to ws://sim/v1/realtime",
        "starts speaking",
        "stream stopped by Twilio",
        "call ended: caller_hangup after 0.2 s",
    ]


def test_replaying_the_same_log_twice_gives_identical_output(sqlite_store_url: str) -> None:
    log = (
        CallLog()
        .start()
        .caller_says("Book a table")
        .tool_call("book_table", {"people": 2}, {"ok": True})
        .assistant_says("Done, a table for two.", interrupted_at_ms=500)
        .model_drops()
        .end()
    )
    stored(log, sqlite_store_url)
    outputs = []
    for _ in range(2):
        store = EventStore(sqlite_store_url)
        recorded = store.read_call(log.call_id)
        store.close()
        events = [r.event for r in recorded]
        outputs.append((render_text(build_timeline(events), color=True), render_json(recorded)))
    assert outputs[0] == outputs[1]
    assert render_text(build_timeline(log.events), color=True) == outputs[0][0]


# --- events as JSON ---------------------------------------------------------------------------


def test_events_as_json_have_position_type_iso_time_and_base64_audio(sqlite_store_url: str) -> None:
    log = small_call()
    stored(log, sqlite_store_url)
    store = EventStore(sqlite_store_url)
    recorded = store.read_call(log.call_id)
    store.close()
    events = json.loads(render_json(recorded))

    assert [e["position"] for e in events] == [r.position for r in recorded]
    assert [e["type"] for e in events[:2]] == ["AgentRouted", "CallStarted"]
    started = events[1]
    assert started["at"] == "2026-01-01T00:00:00.000000Z"
    assert started["data"]["from_number"] == "+15550100001"
    assert "at" not in started["data"]
    audio = next(e for e in events if e["type"] == "CallerAudioReceived")
    first = next(e for e in log.events if isinstance(e, CallerAudioReceived))
    assert base64.b64decode(audio["data"]["payload"]) == first.payload
    assert event_record(recorded[1]) == started


# --- callbridge replay ------------------------------------------------------------------------


def test_replay_prints_the_timeline_of_a_stored_call(sqlite_store_url: str) -> None:
    log = small_call()
    stored(log, sqlite_store_url)
    out = io.StringIO()

    assert replay_cli(sqlite_store_url, log.call_id, wav=None, as_json=False, out=out) == 0
    assert out.getvalue() == render_text(build_timeline(log.events), color=False)


def test_replay_colors_only_a_terminal(sqlite_store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    log = small_call()
    stored(log, sqlite_store_url)
    out = Tty()

    assert replay_cli(sqlite_store_url, log.call_id, wav=None, as_json=False, out=out) == 0
    assert "\x1b[" in out.getvalue()


def test_replay_of_an_unknown_call_says_so_and_exits_1(
    sqlite_store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stored(small_call(), sqlite_store_url)
    out = io.StringIO()

    assert replay_cli(sqlite_store_url, "CAnope", wav=None, as_json=False, out=out) == 1
    error = capsys.readouterr().err
    assert "no events for call CAnope in sqlite:" in error
    assert "list calls with" in error
    assert out.getvalue() == ""


def test_replay_refuses_a_store_that_does_not_exist_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere" / "callbridge.db"
    assert replay_cli(str(missing), "CA1", wav=None, as_json=False, out=io.StringIO()) == 2
    assert f"cannot open the event store {missing}: there is no such file" in capsys.readouterr().err
    assert not missing.parent.exists()


def test_replay_writes_the_recording_and_says_where(sqlite_store_url: str, tmp_path: Path) -> None:
    log = small_call()
    stored(log, sqlite_store_url)
    target = tmp_path / "call.wav"
    out = io.StringIO()

    assert replay_cli(sqlite_store_url, log.call_id, wav=str(target), as_json=False, out=out) == 0
    assert out.getvalue() == f"wrote {target}: 3.7 s, stereo 8 kHz 16-bit (caller left, assistant right)\n"
    with wave.open(str(target)) as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getnframes()) == (2, 8000, 3690 * 8)


def test_replay_json_prints_only_json_on_stdout(
    sqlite_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = small_call()
    stored(log, sqlite_store_url)
    out = io.StringIO()

    assert replay_cli(sqlite_store_url, log.call_id, wav=str(tmp_path / "c.wav"), as_json=True, out=out) == 0
    events = json.loads(out.getvalue())
    assert len(events) == len(log.events)
    assert [e["type"] for e in events[:3]] == ["AgentRouted", "CallStarted", "ModelEventSent"]
    assert "wrote" in capsys.readouterr().err
