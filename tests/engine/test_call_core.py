"""Specification of the call core (engine/call_core.py, call_model.py): what a call decides, fed by hand.

Each test feeds a short sequence of inputs and reads the outputs — the frames for each socket, the
events recorded, the timers, tools and sessions asked for. No sockets, no trio: microseconds each.
"""

from __future__ import annotations

import base64
import json

import pytest
from core_driver import (
    SPEECH_STARTED,
    Driver,
    delta,
    frame,
    function_call_done,
    message_item_added,
    response_created,
    response_done,
)

from callbridge.adapters.twilio import codec
from callbridge.engine.apology import Apology
from callbridge.engine.call_io import (
    AudioFlushDue,
    CallBegan,
    CallerHungUp,
    CallTornDown,
    CancelTimer,
    ClientEventRequested,
    CoreStateError,
    EndCall,
    HangUpRequested,
    LogLine,
    MarkEchoed,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    RunTool,
    SessionUpdateRequested,
    StartTimer,
    TaskFailed,
    Timer,
    TimerFired,
    ToolRunnerLost,
    ToolSettled,
)
from callbridge.engine.call_state import CallState
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    BargeInDecided,
    CallEnded,
    CallerAudioDropped,
    CallerAudioReceived,
    CallSessionConfigChanged,
    CallStarted,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    PlaybackCleared,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.frame_rate import FrameRateLimit


def completed(call_id: str, output: str = '{"temperature_c": 21}') -> ToolSettled:
    event = ToolCallCompleted(
        call_id="CAcore", at=0.0, tool_call_id=call_id, name="get_weather", output=output, duration_ms=1.0
    )
    return ToolSettled(tool_call_id=call_id, output=output, event=event)


# --- the call's life -----------------------------------------------------------------------------


def test_a_call_begins_by_recording_itself_and_asking_for_a_model_session() -> None:
    call = Driver()
    outputs = call.feed(CallBegan())
    started = call.events(CallStarted)
    assert len(started) == 1 and started[0].from_number == "+15550001"
    assert started[0].session_config == {"instructions": "Be brief."}
    assert call.of(OpenModelSession, outputs) == [OpenModelSession(session=1, delay_s=0.0)]
    assert call.core.state is CallState.CONNECTING


def test_a_new_session_is_configured_with_the_servers_and_the_sessions_tools() -> None:
    session_tool = {"type": "function", "name": "ask_a_person", "description": "", "parameters": {"type": "object"}}
    call = Driver(session_config={"instructions": "Hi", "tools": [session_tool]})
    call.start()
    [update] = call.to_model()
    assert update["type"] == "session.update"
    names = [tool["name"] for tool in update["session"]["tools"]]
    assert names == ["get_weather", "end_call", "send_dtmf", "ask_a_person"]  # server, built-in, session
    assert [c.attempt for c in call.events(ModelConnected)] == [0]
    assert call.core.state is CallState.ACTIVE


def test_caller_audio_goes_to_the_model_as_is_and_is_recorded_in_half_second_chunks() -> None:
    """A partial chunk waits for the writer's batch after its first frame is half a second old."""
    call = Driver()
    call.start()
    for index in range(30):
        call.feed(frame(index), dt=0.02)
    appends = call.to_model(audio=True)
    assert [a["audio"] for a in appends] == [frame(i).payload for i in range(30)]
    chunks = call.events(CallerAudioReceived)
    assert len(chunks) == 1 and len(chunks[0].frame_sizes) == 25  # the rest is held until the next chunk
    call.feed(AudioFlushDue())  # the writer's batch: the 5 frames held began 80 ms ago, they wait
    assert [len(c.frame_sizes) for c in call.events(CallerAudioReceived)] == [25]
    call.feed(AudioFlushDue(), dt=0.40)  # 480 ms: still held
    assert [len(c.frame_sizes) for c in call.events(CallerAudioReceived)] == [25]
    call.feed(AudioFlushDue(), dt=0.05)  # half a second old: handed over with this batch
    assert [len(c.frame_sizes) for c in call.events(CallerAudioReceived)] == [25, 5]


def test_audio_that_arrives_before_the_first_session_is_sent_to_it_once_it_opens() -> None:
    call = Driver()
    call.feed(CallBegan())
    for index in range(3):
        call.feed(frame(index))
    assert call.to_model(audio=True) == []
    opened = call.feed(ModelSessionOpened(session=1))
    assert call.model_types(opened)[0] == "session.update"
    replayed = [json.loads(o.text)["audio"] for o in opened if getattr(o, "text", "").find("append") > 0]
    assert replayed == [frame(i).payload for i in range(3)]


def test_a_caller_faster_than_a_phone_is_cut_to_the_limit_and_the_drop_recorded() -> None:
    call = Driver(frame_rate=FrameRateLimit(frames_per_s=50.0, burst_frames=10))
    call.start()
    for index in range(15):  # 15 frames at the same instant: 10 pass, 5 are dropped
        call.feed(frame(index))
    assert len(call.to_model(audio=True)) == 10
    call.feed(frame(15), dt=0.1)  # 5 tokens back: the next frame passes and the drop is recorded once
    [dropped] = call.events(CallerAudioDropped)
    assert dropped.count == 5 and "frames/s" in dropped.reason
    assert len(call.to_model(audio=True)) == 11


def test_drops_still_running_when_the_call_ends_are_recorded_before_call_ended() -> None:
    """A caller that fell behind sends its backlog at once and hangs up: no kept frame follows the
    drops, so the end records them (before, they were counted and forgotten)."""
    call = Driver(frame_rate=FrameRateLimit(frames_per_s=50.0, burst_frames=10))
    call.start()
    for index in range(15):  # 10 pass, 5 are dropped, and the caller hangs up
        call.feed(frame(index))
    call.feed(CallerHungUp())
    call.feed(CallTornDown(reason="server_shutdown"))
    [dropped] = call.events(CallerAudioDropped)
    assert dropped.count == 5 and "frames/s" in dropped.reason
    events = call.events()
    assert events.index(dropped) < events.index(call.events(CallEnded)[0])


def test_the_caller_hanging_up_ends_the_call_and_call_ended_is_recorded_last_and_once() -> None:
    call = Driver()
    call.start()
    for index in range(3):
        call.feed(frame(index))
    outputs = call.feed(CallerHungUp())
    assert call.of(EndCall, outputs) == [EndCall(reason="caller_hangup")]
    assert call.core.state is CallState.ENDING
    call.feed(CallTornDown(reason="server_shutdown"))  # the decided reason wins
    events = call.events()
    assert isinstance(events[-2], CallerAudioReceived)  # the held partial chunk is flushed first
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "caller_hangup"
    assert len(call.events(CallEnded)) == 1
    with pytest.raises(CoreStateError, match="state 'ended' cannot take CallerMedia"):
        call.feed(frame(9))


def test_a_hang_up_request_ends_the_call_with_its_reason() -> None:
    call = Driver()
    call.start()
    assert call.of(EndCall, call.feed(HangUpRequested(reason="server_shutdown"))) == [EndCall(reason="server_shutdown")]
    assert call.of(EndCall, call.feed(CallerHungUp())) == []  # the first reason wins
    call.feed(CallTornDown())
    assert call.events(CallEnded)[0].reason == "server_shutdown"


def test_a_crashed_twilio_task_ends_the_call() -> None:
    call = Driver()
    call.start()
    outputs = call.feed(TaskFailed(task="twilio", error="ValueError()", traceback="tb", action="ended_call"))
    assert call.of(EndCall, outputs) == [EndCall(reason="twilio_task_crashed", detail="ValueError()")]
    assert any(isinstance(o, LogLine) for o in outputs)


# --- assistant audio and barge-in ----------------------------------------------------------------


def test_assistant_audio_is_sent_with_a_mark_and_counted_played_from_the_echo() -> None:
    call = Driver()
    call.start()
    call.server(message_item_added("item_a"))
    outputs = call.server(delta("item_a", b"\x01" * 800))
    media, mark = call.to_caller(outputs)
    assert isinstance(media, codec.OutboundMedia) and isinstance(mark, codec.OutboundMark)
    echoed_at = call.now
    call.feed(MarkEchoed(name=mark.mark.name))
    call.feed(CallTornDown(reason="caller_hung_up"))
    [played] = call.events(AssistantAudioPlayed)
    assert (played.item_id, played.marks, played.played_bytes, played.at) == ("item_a", 1, 800, echoed_at)


def test_an_items_echoes_are_recorded_together_once_the_first_is_half_a_second_old() -> None:
    """One ``AssistantAudioPlayed`` per item and half second (engine/played_marks.py)."""
    call = Driver()
    call.start()
    call.server(message_item_added("item_a"))
    marks = [call.to_caller(call.server(delta("item_a", b"\x01" * 800)))[1].mark.name for _ in range(8)]
    for name in marks[:5]:
        call.feed(MarkEchoed(name=name), dt=0.1)
        call.feed(AudioFlushDue())  # the writer's batches: the first echo is not yet half a second old
    last_echo = call.now
    assert call.events(AssistantAudioPlayed) == []  # the first echo is 400 ms old
    call.feed(AudioFlushDue(), dt=0.15)  # 550 ms: recorded with this batch
    [played] = call.events(AssistantAudioPlayed)
    assert (played.marks, played.played_bytes, played.total_played_bytes, played.at) == (5, 4000, 4000, last_echo)
    call.feed(MarkEchoed(name=marks[5]), dt=0.1)
    call.server(message_item_added("item_b"))
    call.feed(MarkEchoed(name=call.to_caller(call.server(delta("item_b", b"\x01" * 160)))[1].mark.name))
    assert [(p.item_id, p.marks, p.total_played_bytes) for p in call.events(AssistantAudioPlayed)] == [
        ("item_a", 5, 4000),
        ("item_a", 1, 4800),  # another item's echo: item_a's are recorded first
    ]


def test_barge_in_clears_twilio_and_truncates_at_what_the_caller_heard() -> None:
    call = Driver()
    call.start()
    call.server(response_created("resp_1"))
    call.server(message_item_added("item_a"))
    marks = []
    for _ in range(5):
        outputs = call.server(delta("item_a", b"\x02" * 1600))  # 200 ms each
        marks.append(call.to_caller(outputs)[1].mark.name)
    call.feed(MarkEchoed(name=marks[0]))
    call.feed(MarkEchoed(name=marks[1]))  # 400 ms heard, 1000 ms received
    outputs = call.server(SPEECH_STARTED)
    heard = [type(e) for e in call.events() if isinstance(e, AssistantAudioPlayed | BargeInDecided)]
    assert heard == [AssistantAudioPlayed, BargeInDecided]  # the echoes held go first, gathered
    [decision] = call.events(BargeInDecided)
    assert (decision.action, decision.played_ms, decision.received_ms, decision.audio_end_ms) == (
        "truncated",
        400,
        1000,
        400,
    )
    assert [type(f) for f in call.to_caller(outputs)] == [codec.OutboundClear]
    assert call.to_model(outputs) == [
        {"type": "conversation.item.truncate", "item_id": "item_a", "content_index": 0, "audio_end_ms": 400}
    ]
    assert call.events(PlaybackCleared)[0].unplayed_bytes == 4800
    late = call.server(delta("item_a", b"\x02" * 160))  # a late delta of the interrupted item
    assert call.to_caller(late) == []
    call.feed(MarkEchoed(name=marks[2]))  # echoed because of the clear: not heard
    assert sum(p.played_bytes for p in call.events(AssistantAudioPlayed)) == 3200


def test_a_caller_who_speaks_when_nothing_plays_truncates_nothing() -> None:
    call = Driver()
    call.start()
    outputs = call.server(SPEECH_STARTED)
    assert call.events(BargeInDecided)[0].action == "skipped_nothing_playing"
    assert call.to_caller(outputs) == [] and call.to_model(outputs) == []


def test_barge_in_is_off_when_the_session_says_interrupt_response_false() -> None:
    call = Driver(session_config={"turn_detection": {"type": "server_vad", "interrupt_response": False}})
    call.start()
    call.server(message_item_added("item_a"))
    call.server(delta("item_a", b"\x02" * 1600))
    outputs = call.server(SPEECH_STARTED)
    assert call.events(BargeInDecided) == [] and call.to_caller(outputs) == []


# --- tools and the response gate -----------------------------------------------------------------


def test_a_function_call_runs_once_and_the_response_follows_the_output_and_the_end_of_the_asking_response() -> None:
    call = Driver()
    call.start()
    call.server(response_created("resp_1"))
    outputs = call.server(function_call_done("call_1"))
    assert call.of(RunTool, outputs) == [
        RunTool(tool_call_id="call_1", name="get_weather", arguments="{}", handler="backend")
    ]
    assert call.events(ToolCallRequested)[0].handler == "backend"
    outputs = call.feed(completed("call_1"))  # the output is in, but resp_1 still runs
    assert call.model_types(outputs) == ["conversation.item.create"]
    assert call.of(CancelTimer, outputs) == [CancelTimer(timer=Timer.TOOL_WAIT)]
    outputs = call.server(response_done("resp_1"))
    assert call.model_types(outputs) == ["response.create"]
    assert call.model_types(call.server(response_done("resp_1"))) == []  # nothing new to ask


def test_a_session_tool_without_a_backend_waits_for_an_operator() -> None:
    tool = {"type": "function", "name": "ask_a_person", "description": "", "parameters": {"type": "object"}}
    call = Driver(session_config={"tools": [tool]})
    call.start()
    outputs = call.server(function_call_done("call_1", name="ask_a_person"))
    assert call.of(RunTool, outputs)[0].handler == "human"
    assert call.events(ToolCallRequested)[0].handler == "human"


def test_each_tool_call_gets_exactly_one_output_whatever_settles_it() -> None:
    call = Driver()
    call.start()
    call.server(function_call_done("call_1"))
    call.feed(completed("call_1"))
    outputs = call.feed(completed("call_1", output="second"))  # a second answer is dropped, said in the log
    assert call.to_model(outputs) == [] and call.of(LogLine, outputs)
    call.feed(ToolRunnerLost(error="boom"))  # nothing pending: nothing to answer
    outputs_sent = [e for e in call.to_model() if e["type"] == "conversation.item.create"]
    assert len(outputs_sent) == 1 and len(call.events(ToolCallCompleted)) == 1


def test_a_crashed_tool_runner_still_answers_every_pending_call_with_an_error() -> None:
    call = Driver()
    call.start()
    call.server(function_call_done("call_1"))
    call.server(function_call_done("call_2"))
    outputs = call.feed(ToolRunnerLost(error="RuntimeError()"))
    items = [e["item"] for e in call.to_model(outputs) if e["type"] == "conversation.item.create"]
    assert [i["call_id"] for i in items] == ["call_1", "call_2"]
    assert all("error" in json.loads(i["output"]) for i in items)
    assert len(call.events(ToolCallFailed)) == 2


def test_a_slow_tool_is_filled_with_one_short_out_of_band_reply_once_nothing_plays() -> None:
    call = Driver()
    call.start()
    outputs = call.server(function_call_done("call_1"))
    assert call.of(StartTimer, outputs) == [StartTimer(timer=Timer.TOOL_WAIT, delay_s=2.0)]
    call.server(message_item_added("item_a"))
    call.server(delta("item_a", b"\x01" * 800))  # the assistant is still talking at the deadline
    outputs = call.feed(TimerFired(timer=Timer.TOOL_WAIT), dt=2.0)
    assert (
        call.of(StartTimer, outputs) == [StartTimer(timer=Timer.TOOL_WAIT, delay_s=0.5)]
        and call.to_model(outputs) == []
    )
    mark = call.to_caller()[-1].mark.name
    call.feed(MarkEchoed(name=mark))
    outputs = call.feed(TimerFired(timer=Timer.TOOL_WAIT), dt=0.5)
    [filler] = call.to_model(outputs)
    assert filler["type"] == "response.create" and filler["response"]["conversation"] == "none"
    assert call.to_model(call.feed(TimerFired(timer=Timer.TOOL_WAIT), dt=0.5)) == []  # once per wait


def test_the_console_can_ask_for_a_response_but_not_send_anything_else() -> None:
    call = Driver()
    call.start()
    outputs = call.feed(ClientEventRequested(event={"type": "response.create"}))
    assert call.model_types(outputs) == ["response.create"]
    outputs = call.feed(ClientEventRequested(event={"type": "response.create"}))
    assert call.model_types(outputs) == []  # one is already requested: never two at once
    outputs = call.feed(ClientEventRequested(event={"type": "session.update", "session": {}}))
    assert call.to_model(outputs) == [] and call.of(LogLine, outputs)


def test_a_session_change_is_recorded_and_sent_to_the_open_session() -> None:
    call = Driver()
    call.start()
    outputs = call.feed(SessionUpdateRequested(session={"voice": "ash"}))
    [update] = call.to_model(outputs)
    assert update["type"] == "session.update" and update["session"]["audio"]["output"]["voice"] == "ash"
    assert call.core.session_config == {"instructions": "Be brief.", "voice": "ash"}


# --- sessions lost and found ---------------------------------------------------------------------


def test_a_lost_session_is_reopened_after_a_backoff_and_reseeded_from_the_log() -> None:
    call = Driver()
    call.start()
    call.server(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "content_index": 0,
            "transcript": "I am Ada",
        }
    )
    call.server(function_call_done("call_1"))
    outputs = call.feed(ModelSessionLost(session=1, connected=True, error="closed", code=1006))
    assert call.events(ModelDisconnected)[0].code == 1006
    assert call.of(OpenModelSession, outputs) == [OpenModelSession(session=2, delay_s=0.5)]
    assert call.core.state is CallState.RECONNECTING
    call.feed(frame(1))  # the caller talks on while the bridge reconnects
    call.feed(completed("call_1"))  # and the tool answers meanwhile
    outputs = call.feed(ModelSessionOpened(session=2))
    sent = call.to_model(outputs)
    assert sent[0]["type"] == "session.update"
    seeded = [e["item"] for e in sent if e["type"] == "conversation.item.create"]
    assert seeded[0]["content"][0]["text"] == "I am Ada"
    assert seeded[-1] == {"type": "function_call_output", "call_id": "call_1", "output": '{"temperature_c": 21}'}
    assert [json.loads(o.text)["audio"] for o in outputs if getattr(o, "text", "").find("append") > 0] == [
        frame(1).payload
    ]
    connected = call.events(ModelConnected)
    assert [c.attempt for c in connected] == [0, 1] and connected[
        1
    ].seeded_items == 3  # "I am Ada", the function call and its output (once)


def test_a_model_that_stays_unreachable_is_apologised_for_then_the_call_ends() -> None:
    apology = Apology.from_ulaw(b"\xff" * 4000)
    call = Driver(apology=apology.chunks, apology_ms=apology.duration_ms)
    call.feed(CallBegan())
    for session in (1, 2, 3):
        outputs = call.feed(ModelSessionLost(session=session, connected=False, error="refused"))
    failures = call.events(ModelConnectionFailed)
    assert [f.retry_in_s for f in failures] == [0.5, 1.0, None]
    assert call.core.state is CallState.APOLOGIZING
    frames = call.to_caller(outputs)
    assert isinstance(frames[0], codec.OutboundClear) and isinstance(frames[-1], codec.OutboundMark)
    assert sum(len(base64.b64decode(f.media.payload)) for f in frames[1:-1]) == 4000
    assert call.of(StartTimer, outputs) == [StartTimer(timer=Timer.APOLOGY_PLAYED, delay_s=0.5 + 2.0)]
    assert call.of(EndCall, outputs) == []  # not before the caller heard it
    outputs = call.feed(MarkEchoed(name=frames[-1].mark.name))
    [end] = call.of(EndCall, outputs)
    assert end.reason == "model_unavailable" and "refused" in end.detail


def test_a_rejected_key_is_not_retried_and_without_an_apology_the_call_ends_at_once() -> None:
    call = Driver()
    call.feed(CallBegan())
    outputs = call.feed(
        ModelSessionLost(session=1, connected=False, error="OPENAI_API_KEY was rejected", retryable=False)
    )
    assert call.events(ModelConnectionFailed)[0].retry_in_s is None
    assert call.of(EndCall, outputs)[0].reason == "model_unavailable"
    assert any(isinstance(o, LogLine) and "unavailable" in o.message for o in outputs)


def test_an_event_from_a_session_that_is_not_the_open_one_is_a_bug_named_by_state() -> None:
    call = Driver()
    call.start()
    call.feed(ModelSessionLost(session=1, connected=True, error="closed"))
    with pytest.raises(CoreStateError, match="state 'reconnecting' cannot take ModelServerEvent"):
        call.server(SPEECH_STARTED, session=1)
    with pytest.raises(CoreStateError):
        call.feed(ModelSessionOpened(session=1))  # session 2 was asked for


def test_assistant_audio_chunks_are_recorded_losslessly() -> None:
    call = Driver()
    call.start()
    call.server(message_item_added("item_a"))
    for _ in range(6):
        call.server(delta("item_a", b"\x03" * 1000))
    call.feed(CallerHungUp())
    call.feed(CallTornDown())
    sent = call.events(AssistantAudioSent)
    assert sum(len(e.payload) for e in sent) == 6000 and [e.offset_bytes for e in sent] == [0, 4000]


def test_a_session_change_the_model_refuses_is_undone_so_later_changes_do_not_carry_it() -> None:
    call = Driver()
    call.start()
    outputs = call.feed(SessionUpdateRequested(session={"voice": "ash"}))
    [update] = call.to_model(outputs)
    call.server(
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "code": "cannot_update_voice",
                "message": "Cannot update a conversation's voice if assistant audio is present.",
                "event_id": update["event_id"],
            },
        }
    )
    assert call.core.session_config == {"instructions": "Be brief."}
    assert call.events(CallSessionConfigChanged)[-1].source == "model_refused"
    outputs = call.feed(SessionUpdateRequested(session={"instructions": "Be kind."}))
    [update] = call.to_model(outputs)
    assert update["session"]["audio"]["output"]["voice"] != "ash"  # the refused voice does not ride along
    call.server({"type": "session.updated", "session": {}})
    assert call.core.session_config == {"instructions": "Be kind."}
