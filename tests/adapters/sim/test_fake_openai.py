"""The simulated realtime model: its brain without sockets (order of events per docs/protocols.md B6,
barge-in, truncation, errors of B7), its VAD, its scripts, and its socket edge (handshake checks,
beta rejection, drops, expiry). Every server event it emits here is checked against the official
``openai`` types."""

from __future__ import annotations

import base64
import json
import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from openai_contract import assert_valid_server_event
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from callbridge.adapters.openai import codec
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG, session_update_payload
from callbridge.adapters.sim.fake_openai import FakeOpenAI, run_fake_openai_cli, serve_fake_openai
from callbridge.adapters.sim.fake_openai_conversation import Ids
from callbridge.adapters.sim.fake_openai_response import ResponseRun, split_transcript
from callbridge.adapters.sim.fake_openai_script import (
    DEFAULT_SCRIPT,
    LONG_REPLY,
    FunctionCall,
    ScriptError,
    Turn,
    parse_script,
)
from callbridge.adapters.sim.fake_openai_session import FakeRealtimeSession, Reaction
from callbridge.adapters.sim.fake_openai_vad import EnergyVad, SpeechStarted, SpeechStopped, VadSettings
from callbridge.adapters.sim.voice import rms, silence, speech

# --- helpers -----------------------------------------------------------------------------------


def checked(events: list[se.ServerEventBase]) -> list[se.ServerEventBase]:
    for event in events:
        assert_valid_server_event(codec.encode_server(event))
    return events


def types_of(events: list[se.ServerEventBase]) -> list[str]:
    return [str(event.__struct_config__.tag) for event in events]


class Driver:
    """Drives a ``FakeRealtimeSession`` like the socket layer does, collecting every event."""

    def __init__(self, config: dict[str, Any] | None = DEFAULT_SESSION_CONFIG) -> None:
        self.session = FakeRealtimeSession(script=DEFAULT_SCRIPT, ids=Ids(seed=7))
        self.events: list[se.ServerEventBase] = checked(self.session.opening())
        self.run: ResponseRun | None = None
        if config is not None:
            self.send(codec.SessionUpdate(session=session_update_payload(config)))

    def send(self, event: codec.ClientEventBase | codec.UnknownClientEvent) -> list[Any]:
        reaction: Reaction = self.session.handle(event)  # type: ignore[arg-type]
        if reaction.started is not None:
            self.run = reaction.started
        self.events += checked(reaction.events)
        return reaction.events

    def append(self, audio: bytes) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(audio), 160):
            chunk = base64.b64encode(audio[start : start + 160]).decode()
            out += self.send(codec.InputAudioBufferAppend(audio=chunk))
        return out

    def step(self) -> list[se.ServerEventBase] | None:
        assert self.run is not None
        step = self.session.advance(self.run)
        if step is None:
            return None
        self.events += checked(step[0])
        return step[0]

    def finish(self) -> list[se.ServerEventBase]:
        out: list[se.ServerEventBase] = []
        while (events := self.step()) is not None:
            out += events
        return out

    def last(self, cls: type[Any]) -> Any:
        return [e for e in self.events if isinstance(e, cls)][-1]


def utterance(ms: int = 1000) -> bytes:
    return speech(ms) + silence(700)


# --- session configuration ---------------------------------------------------------------------


def test_session_starts_with_created_and_update_answers_the_effective_config() -> None:
    driver = Driver()
    assert types_of(driver.events) == ["session.created", "session.updated"]
    session = driver.last(se.SessionUpdated).session
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "marin", "speed": 1.0}
    vad = session["audio"]["input"]["turn_detection"]
    assert vad["type"] == "server_vad" and vad["silence_duration_ms"] == 500 and vad["interrupt_response"]


def test_beta_shaped_session_update_is_refused_with_close_4000() -> None:
    session = FakeRealtimeSession(script=DEFAULT_SCRIPT)
    reaction = session.handle(codec.SessionUpdate(session={"modalities": ["audio"], "voice": "alloy"}))
    assert [e.error.code for e in reaction.events if isinstance(e, se.ErrorEvent)] == ["beta_api_shape_disabled"]
    assert reaction.close == (4000, "beta_api_shape_disabled")


def test_unknown_session_parameter_is_refused_and_changes_nothing() -> None:
    driver = Driver()
    before = driver.session.config
    payload = session_update_payload(DEFAULT_SESSION_CONFIG) | {"voice": "cedar"}
    (error,) = driver.send(codec.SessionUpdate(session=payload, event_id="evt_9"))
    assert isinstance(error, se.ErrorEvent)
    assert (error.error.code, error.error.param, error.error.event_id) == (
        "unknown_parameter",
        "session.voice",
        "evt_9",
    )
    assert driver.session.config == before


# --- a VAD turn --------------------------------------------------------------------------------


def test_vad_turn_with_function_call_follows_the_documented_order() -> None:
    driver = Driver()
    events = driver.append(silence(400) + utterance(1000))
    assert types_of(events) == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    started, stopped = events[0], events[1]
    assert isinstance(started, se.InputAudioBufferSpeechStarted)
    assert isinstance(stopped, se.InputAudioBufferSpeechStopped)
    assert started.audio_start_ms == 400 - 300  # speech began at 400 ms; 300 ms prefix padding
    assert stopped.audio_end_ms == 400 + 1000 + 500  # plus the 500 ms of silence that ended it
    assert started.item_id == stopped.item_id == driver.last(se.InputAudioBufferCommitted).item_id
    completed = driver.last(se.InputAudioTranscriptionCompleted)
    assert completed.transcript == DEFAULT_SCRIPT.turns[0].transcript
    user_done: Any = next(e for e in events if isinstance(e, se.ConversationItemDone))
    assert user_done.item.content[0].transcript == completed.transcript
    call = driver.last(se.ResponseFunctionCallArgumentsDone)
    assert call.name == "get_weather_from_coords"
    assert json.loads(call.arguments) == {"latitude": 37.77, "longitude": -122.42}
    done = driver.last(se.ResponseDone).response
    assert done.status == "completed" and done.output[0].call_id == call.call_id
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0


def keypad_message(text: str) -> codec.ConversationItemCreate:
    return codec.ConversationItemCreate(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
    )


def test_a_key_the_script_answers_gets_its_own_turn_wherever_it_is_pressed() -> None:
    offered = {**DEFAULT_SESSION_CONFIG, "tools": [{"type": "function", "name": "transfer_call", "parameters": {}}]}
    driver = Driver(offered)
    driver.send(keypad_message("(The caller pressed 0 on the keypad.)"))  # before any spoken turn
    driver.send(codec.ResponseCreate())  # a function call is answered at once
    call = driver.last(se.ResponseFunctionCallArgumentsDone)
    assert (call.name, json.loads(call.arguments)["target"]) == ("transfer_call", "sales")
    output = json.dumps({"ok": True})
    driver.send(
        codec.ConversationItemCreate(item={"type": "function_call_output", "call_id": call.call_id, "output": output})
    )
    driver.send(codec.ResponseCreate())
    driver.finish()
    assert driver.last(se.ResponseOutputAudioTranscriptDone).transcript == DEFAULT_SCRIPT.keypad["0"].after_tool

    unoffered = Driver()  # no transfer_call among its tools: the model says it cannot
    unoffered.send(keypad_message("(The caller entered 0 on the keypad.)"))
    unoffered.send(codec.ResponseCreate())
    unoffered.finish()
    transcript = unoffered.last(se.ResponseOutputAudioTranscriptDone).transcript
    assert transcript == DEFAULT_SCRIPT.keypad["0"].after_tool_error


def test_a_key_the_script_does_not_answer_is_the_next_spoken_turn() -> None:
    driver = Driver()
    driver.send(keypad_message("(The caller pressed 5 on the keypad.)"))
    driver.send(codec.ResponseCreate())
    assert driver.last(se.ResponseFunctionCallArgumentsDone).name == DEFAULT_SCRIPT.turns[0].function_call.name  # type: ignore[union-attr]
    assert DEFAULT_SCRIPT.keypad_turn("(The caller pressed 0 on the keypad.)") is not None
    assert DEFAULT_SCRIPT.keypad_turn("Press 0 for sales.") is None


def test_tool_output_then_response_create_speaks_the_result() -> None:
    driver = Driver()
    driver.append(utterance())
    call = driver.last(se.ResponseFunctionCallArgumentsDone)
    output = json.dumps({"temperature_c": 18.4, "wind_speed_kmh": 9.0})
    added = driver.send(
        codec.ConversationItemCreate(item={"type": "function_call_output", "call_id": call.call_id, "output": output})
    )
    assert types_of(added) == ["conversation.item.added", "conversation.item.done"]
    opening = driver.send(codec.ResponseCreate())
    assert types_of(opening) == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    streamed = driver.finish()
    kinds = types_of(streamed)
    assert kinds[-6:] == [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert set(kinds[:-6]) == {"response.output_audio.delta", "response.output_audio_transcript.delta"}
    transcript = "".join(e.delta for e in streamed if isinstance(e, se.ResponseOutputAudioTranscriptDelta))
    assert transcript == "It's 18 degrees in San Francisco right now."  # said like an agent, not as JSON
    assert driver.last(se.ResponseOutputAudioTranscriptDone).transcript == transcript
    audio = b"".join(base64.b64decode(e.delta) for e in streamed if isinstance(e, se.ResponseOutputAudioDelta))
    chunks = [e for e in streamed if isinstance(e, se.ResponseOutputAudioDelta)]
    assert all(len(base64.b64decode(c.delta)) <= 800 for c in chunks)
    assert len(audio) // 8 == pytest.approx(len(transcript) * 65, abs=20)  # ~65 ms per character
    assert rms(audio) > 1000  # speech-like, not silence
    done = driver.last(se.ResponseDone).response
    assert done.status == "completed"
    assert done.usage.output_token_details.audio_tokens == -(-len(audio) // 400)


def test_caller_barge_in_cancels_the_active_response() -> None:
    driver = Driver()
    driver.append(utterance())  # turn 1: function call
    driver.append(utterance())  # turn 2: the long story
    assert driver.run is not None and not driver.run.finished
    for _ in range(5):
        driver.step()
    events = driver.append(speech(200))
    assert types_of(events) == [
        "input_audio_buffer.speech_started",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    response = driver.last(se.ResponseDone).response
    assert response.status == "cancelled"
    assert (response.status_details.type, response.status_details.reason) == ("cancelled", "turn_detected")
    assert response.output[0].status == "incomplete"
    assert driver.step() is None  # the streaming task stops


def test_truncate_is_bounded_by_the_audio_generated_for_the_item() -> None:
    driver = Driver()
    driver.append(utterance())
    driver.append(utterance())
    for _ in range(5):  # 500 ms of audio generated
        driver.step()
    driver.append(speech(200))
    item_id = driver.last(se.ResponseDone).response.output[0].id
    (error,) = driver.send(codec.ConversationItemTruncate(item_id=item_id, content_index=0, audio_end_ms=900))
    assert error.error.message == "Audio content of 500ms is already shorter than 900ms"
    assert error.error.type == "invalid_request_error"
    (truncated,) = driver.send(codec.ConversationItemTruncate(item_id=item_id, content_index=0, audio_end_ms=320))
    assert isinstance(truncated, se.ConversationItemTruncated) and truncated.audio_end_ms == 320
    user_item = driver.last(se.InputAudioBufferCommitted).item_id
    (refused,) = driver.send(codec.ConversationItemTruncate(item_id=user_item, content_index=0, audio_end_ms=10))
    assert refused.error.message == "Only model output audio messages can be truncated"


def test_response_errors_of_b7() -> None:
    driver = Driver()
    (error,) = driver.send(codec.ResponseCancel())
    assert error.error.code == "response_cancel_not_active"
    driver.send(codec.ResponseCreate())  # the greeting
    (busy,) = driver.send(codec.ResponseCreate(event_id="evt_2"))
    assert busy.error.code == "conversation_already_has_active_response"
    assert driver.run is not None and driver.run.response_id in busy.error.message
    assert busy.error.event_id == "evt_2"
    cancelled = driver.send(codec.ResponseCancel())
    response = driver.last(se.ResponseDone).response
    assert types_of(cancelled)[-1] == "response.done"
    assert (response.status, response.status_details.reason) == ("cancelled", "client_cancelled")


def test_greeting_when_nothing_was_said_yet() -> None:
    driver = Driver()
    driver.send(codec.ResponseCreate())
    driver.finish()
    assert driver.last(se.ResponseOutputAudioTranscriptDone).transcript == DEFAULT_SCRIPT.greeting


def test_manual_turns_honour_commit_and_response_create() -> None:
    driver = Driver({"turn_detection": None})
    assert driver.append(utterance()) == []  # no VAD, no events
    driver.send(codec.InputAudioBufferClear())
    driver.append(silence(60))
    (too_small,) = driver.send(codec.InputAudioBufferCommit())
    assert too_small.error.code == "input_audio_buffer_commit_empty"
    assert "only has 60.00ms" in too_small.error.message
    driver.append(speech(300))
    committed = driver.send(codec.InputAudioBufferCommit())
    assert types_of(committed)[0] == "input_audio_buffer.committed"
    assert "response.created" not in types_of(committed)
    driver.send(codec.ResponseCreate())
    assert driver.last(se.ResponseFunctionCallArgumentsDone).name == "get_weather_from_coords"


def test_unknown_and_broken_client_events_get_invalid_request_errors() -> None:
    driver = Driver()
    (unknown,) = driver.send(codec.decode_client('{"type":"response.audio.delta"}'))
    assert unknown.error.type == "invalid_request_error" and unknown.error.param == "type"
    (broken,) = driver.send(codec.decode_client('{"type":"conversation.item.truncate","item_id":"x"}'))
    assert broken.error.type == "invalid_request_error" and "content_index" in broken.error.message
    (webrtc,) = driver.send(codec.OutputAudioBufferClear())
    assert isinstance(webrtc, se.ErrorEvent)


def test_items_are_checked_like_the_real_server() -> None:
    driver = Driver()
    (no_call,) = driver.send(
        codec.ConversationItemCreate(item={"type": "function_call_output", "call_id": "call_x", "output": "1"})
    )
    assert no_call.error.param == "item.call_id"
    (audio,) = driver.send(
        codec.ConversationItemCreate(
            item={"type": "message", "role": "assistant", "content": [{"type": "output_audio", "audio": ""}]}
        )
    )
    assert isinstance(audio, se.ErrorEvent)
    (not_string,) = driver.send(
        codec.ConversationItemCreate(item={"type": "function_call", "call_id": "c", "name": "n", "arguments": {"a": 1}})
    )
    assert not_string.error.param == "item.arguments"


def test_reseeded_conversation_continues_the_script() -> None:
    """After a reconnect the engine re-creates the conversation as text; the next caller turn is
    the next scripted one, not the first."""
    driver = Driver()
    seed: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather_from_coords", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
    ]
    for item in seed:
        assert types_of(driver.send(codec.ConversationItemCreate(item=item))) == [
            "conversation.item.added",
            "conversation.item.done",
        ]
    driver.append(utterance())
    assert driver.last(se.InputAudioTranscriptionCompleted).transcript == DEFAULT_SCRIPT.turns[1].transcript


def test_cached_tokens_grow_with_the_conversation() -> None:
    driver = Driver()
    driver.append(utterance())
    first = driver.last(se.ResponseDone).response.usage
    driver.send(codec.ResponseCreate())
    driver.finish()
    second = driver.last(se.ResponseDone).response.usage
    assert first.input_token_details.cached_tokens == 0
    assert second.input_token_details.cached_tokens == first.input_tokens
    assert second.input_tokens > first.input_tokens


# --- VAD and script ----------------------------------------------------------------------------


def test_vad_reports_positions_in_appended_audio_across_partial_frames() -> None:
    vad = EnergyVad(VadSettings(prefix_padding_ms=100, silence_duration_ms=200))
    audio = silence(500) + speech(600) + silence(300)
    signals = []
    for start in range(0, len(audio), 100):  # 12.5 ms pieces: frames straddle feeds
        signals += vad.feed(audio[start : start + 100])
    assert signals == [SpeechStarted(audio_start_ms=400), SpeechStopped(audio_end_ms=1300)]


@pytest.mark.parametrize(
    ("output", "spoken"),
    [
        ('{"temperature_c": 21.4, "latitude": 37.77}', "It's 21 degrees in San Francisco right now."),
        ('{"error": "weather service unreachable: ConnectError"}', "Sorry, I couldn't look that up right now."),
        ('{"wind_speed_kmh": 3}', "Sorry, I couldn't look that up right now."),  # not what was asked
        ("not json {temperature_c}", "Sorry, I couldn't look that up right now."),
    ],
)
def test_the_weather_result_is_spoken_like_an_agent_and_an_error_as_an_apology(output: str, spoken: str) -> None:
    assert DEFAULT_SCRIPT.turns[0].tool_reply(output) == spoken


def test_a_plain_output_template_keeps_braces_in_the_output_as_they_are() -> None:
    turn = Turn(transcript="?", function_call=FunctionCall(name="ask"), after_tool="The operator says: {output}")
    assert turn.tool_reply("Use {braces} freely") == "The operator says: Use {braces} freely"


def test_vad_ignores_silence_and_quiet_noise() -> None:
    vad = EnergyVad(VadSettings())
    assert vad.feed(silence(2000)) == []
    assert vad.feed(bytes([0xFE, 0x7E]) * 8000) == []  # ±1-step dither


def test_transcript_slices_cover_the_text_at_word_boundaries() -> None:
    text = "Here is what I found: it is sunny."
    slices = split_transcript(text, 7)
    assert "".join(slices) == text and len(slices) == 7
    cuts = [sum(len(piece) for piece in slices[: i + 1]) for i in range(len(slices))]
    assert all(cut == len(text) or text[cut - 1] == " " for cut in cuts)


def test_scripts_load_from_json_and_bad_ones_say_why() -> None:
    script = parse_script('[{"transcript": "hi", "reply": "hello"}]')
    assert script.turn(0).reply == "hello" and script.turn(5).reply == script.fallback_reply
    with_call = parse_script(
        '{"greeting": "Yo", "turns": [{"transcript": "t", "function_call": {"name": "f", "arguments": {"a": 1}}}]}'
    )
    call = with_call.turn(0).function_call
    assert with_call.greeting == "Yo" and call is not None and call.arguments_json == '{"a":1}'
    with pytest.raises(ScriptError, match="exactly one"):
        parse_script('[{"transcript": "t", "reply": "r", "function_call": {"name": "f"}}]')
    with pytest.raises(ScriptError, match="not valid JSON"):
        parse_script("{")


# --- the socket edge ---------------------------------------------------------------------------


@pytest.fixture
async def fake(nursery: trio.Nursery) -> AsyncIterator[FakeOpenAI]:
    handle: FakeOpenAI = await nursery.start(
        lambda task_status: serve_fake_openai(audio_speed=math.inf, task_status=task_status)
    )
    yield handle


AUTH = [(b"Authorization", b"Bearer sk-test")]


async def test_handshake_requires_a_bearer_token(fake: FakeOpenAI) -> None:
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(fake.url):
            pass
    assert rejected.value.status_code == 401
    assert b"invalid_api_key" in (rejected.value.body or b"")
    assert fake.sessions == []


async def test_beta_header_gets_the_beta_error_then_close_4000(fake: FakeOpenAI) -> None:
    async with open_websocket_url(fake.url, extra_headers=[*AUTH, (b"OpenAI-Beta", b"realtime=v1")]) as ws:
        error = json.loads(await ws.get_message())
        assert error["type"] == "error" and error["error"]["code"] == "beta_api_shape_disabled"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 4000


async def test_a_turn_over_the_socket_is_recorded_and_valid(fake: FakeOpenAI) -> None:
    async with open_websocket_url(fake.url, extra_headers=AUTH, max_message_size=2**24) as ws:
        await ws.send_message(codec.encode_client(codec.SessionUpdate(session=session_update_payload({}))))
        audio = utterance()
        for start in range(0, len(audio), 800):
            await ws.send_message(codec.encode_append(base64.b64encode(audio[start : start + 800]).decode()))
        received: list[dict[str, Any]] = []
        while not received or received[-1]["type"] != "response.done":
            received.append(json.loads(await ws.get_message()))
    record = fake.sessions[0]
    assert record.headers["authorization"] == "Bearer <redacted>"
    assert "openai-beta" not in record.headers
    assert record.client_types()[0] == "session.update"
    assert record.client_types().count("input_audio_buffer.append") == -(-len(audio) // 800)
    assert [e["type"] for e in received] == record.server_types()[: len(received)]
    assert all(a.at <= b.at for a, b in zip(record.client_events, record.client_events[1:], strict=False))
    for event in received:
        assert_valid_server_event(event)


async def test_drop_all_cuts_connections_without_a_close_frame(fake: FakeOpenAI) -> None:
    async with open_websocket_url(fake.url, extra_headers=AUTH) as ws:
        await ws.get_message()  # session.created
        await fake.drop_all()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1006
    await fake.sessions[0].closed.wait()


async def test_session_expiry_sends_session_expired_then_closes_1001(nursery: trio.Nursery) -> None:
    fake: FakeOpenAI = await nursery.start(
        lambda task_status: serve_fake_openai(expire_after_s=0.05, task_status=task_status)
    )
    async with open_websocket_url(fake.url, extra_headers=AUTH) as ws:
        assert json.loads(await ws.get_message())["type"] == "session.created"
        error = json.loads(await ws.get_message())
        assert error["error"]["code"] == "session_expired"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
    assert closed.value.reason is not None
    assert closed.value.reason.code == 1001


async def test_barge_in_over_the_socket_stops_the_paced_stream(nursery: trio.Nursery) -> None:
    """At the default 2x real-time pace a 6 s reply streams for ~3 s; caller speech after the first
    chunk must cut it: speech_started, then the cancelled response, and no later audio."""
    story = parse_script(json.dumps([{"transcript": "A story please.", "reply": LONG_REPLY}]))
    fake: FakeOpenAI = await nursery.start(lambda task_status: serve_fake_openai(script=story, task_status=task_status))

    async def append(ws: Any, audio: bytes) -> None:
        for start in range(0, len(audio), 800):
            await ws.send_message(codec.encode_append(base64.b64encode(audio[start : start + 800]).decode()))

    async with open_websocket_url(fake.url, extra_headers=AUTH) as ws:
        await ws.send_message(codec.encode_client(codec.SessionUpdate(session=session_update_payload({}))))
        await append(ws, utterance())
        while json.loads(await ws.get_message())["type"] != "response.output_audio.delta":
            pass
        await append(ws, speech(200))
        after: list[str] = []
        while not after or after[-1] != "response.done":
            after.append(json.loads(await ws.get_message())["type"])
    assert "input_audio_buffer.speech_started" in after
    cut = after.index("input_audio_buffer.speech_started")
    assert "response.output_audio.delta" not in after[cut:]
    done = json.loads((await fake.sessions[0].wait_for_server("response.done")).raw)
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}


def test_cli_runner_reports_bad_scripts_and_busy_ports(tmp_path: Any) -> None:
    bad = tmp_path / "script.json"
    bad.write_text('[{"transcript": "no reply"}]')
    assert run_fake_openai_cli("127.0.0.1", 0, str(bad)) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert run_fake_openai_cli("127.0.0.1", busy.getsockname()[1]) == 1
