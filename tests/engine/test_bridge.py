"""The bridge end to end, over real sockets: simulated caller → server → simulated model.

Each test is a specification of what a phone agent must do: answer a turn, run a tool and speak
its result, stop talking when the caller barges in (and tell the model what was really heard),
keep simultaneous calls apart, survive a dropped model socket, and refuse unsigned Twilio traffic.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx2
import pytest
import trio
import trio_websocket
from bridge_harness import of_type, running_bridge
from openai_contract import assert_valid_client_event

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import BargeIn, HangUp, Silence, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.twilio import codec, signature
from callbridge.engine.apology import Apology
from callbridge.engine.events import (
    AgentRouted,
    AssistantAudioPlayed,
    AssistantAudioSent,
    BargeInDecided,
    CallEnded,
    CallerAudioReceived,
    CallStarted,
    ModelConnected,
    ModelConnectionFailed,
    ModelDisconnected,
    ModelEventReceived,
    PlaybackCleared,
    ToolCallCompleted,
    ToolCallRequested,
    TwilioEventIgnored,
    TwilioFrameRejected,
)
from callbridge.engine.tools import Tool, ToolContext, ToolRegistry

GREETING_SCRIPT = Script(turns=[Turn(transcript="Hi there", reply="Hello! How can I help you today?")])
LONG_SCRIPT = Script(
    turns=[
        Turn(
            transcript="Tell me a story",
            reply="Once upon a time, a small wooden boat sailed across a calm blue ocean, while the sailors sang.",
        )
    ]
)
ONE_TURN = [Speak(900), WaitForAssistant(timeout_s=15), HangUp()]


def assert_client_events_valid(fake_session: object) -> None:
    for received in fake_session.client_events:  # type: ignore[attr-defined]
        assert_valid_client_event(received.raw)


async def test_a_plain_turn_is_bridged_and_every_event_recorded(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=GREETING_SCRIPT) as bridge:
        report = await place_call(bridge.base_url, script=ONE_TURN)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)

    assert report.ok, report.errors
    assert report.assistant_bytes_received > 8000  # over a second of the assistant's voice
    started = of_type(events, CallStarted)[0]
    assert (started.call_id, started.stream_sid) == (report.call_sid, report.stream_sid)
    assert of_type(events, ModelConnected)[0].attempt == 0
    transcripts = [json.loads(e.raw) for e in of_type(events, ModelEventReceived)]
    assert any(t.get("transcript") == "Hello! How can I help you today?" for t in transcripts)
    # assistant audio is stored losslessly: every byte the caller received is in the log
    assert sum(len(e.payload) for e in of_type(events, AssistantAudioSent)) == report.assistant_bytes_received
    played = of_type(events, AssistantAudioPlayed)
    assert played and played[-1].total_played_bytes <= report.assistant_bytes_received
    # caller audio too, frame by frame
    assert sum(len(e.frame_sizes) for e in of_type(events, CallerAudioReceived)) == report.frames_sent
    ended = of_type(events, CallEnded)
    assert [e.reason for e in ended] == ["caller_hangup"] and events[-1] is ended[0]
    assert_client_events_valid(bridge.fake.sessions[0])


class WeatherStub:
    def __init__(self) -> None:
        self.calls: list[dict[str, object]] = []

    async def __call__(self, args: dict[str, object], ctx: ToolContext) -> dict[str, object]:
        self.calls.append(args)
        return {"temperature_c": 21.5, "latitude": args["latitude"], "longitude": args["longitude"]}


async def test_a_function_call_runs_the_tool_once_and_the_model_speaks_its_result(tmp_path: Path) -> None:
    stub = WeatherStub()
    registry = ToolRegistry()
    registry.register(
        Tool(
            name="get_weather_from_coords",
            description="Weather at coordinates",
            parameters={
                "type": "object",
                "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
                "required": ["latitude", "longitude"],
            },
            handler=stub,
        )
    )
    script = Script(
        turns=[
            Turn(
                transcript="Weather in Berlin?",
                function_call=FunctionCall(
                    name="get_weather_from_coords", arguments={"latitude": 52.52, "longitude": 13.41}
                ),
            )
        ]
    )
    async with running_bridge(tmp_path, script=script, registry=registry) as bridge:
        report = await place_call(bridge.base_url, script=ONE_TURN)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
        session = bridge.fake.sessions[0]

    assert report.ok, report.errors
    assert stub.calls == [{"latitude": 52.52, "longitude": 13.41}]
    requested = of_type(events, ToolCallRequested)
    completed = of_type(events, ToolCallCompleted)
    assert [r.name for r in requested] == ["get_weather_from_coords"] and requested[0].handler == "backend"
    assert json.loads(completed[0].output)["temperature_c"] == 21.5

    outputs = [r for r in session.client_events if r.type == "conversation.item.create"]
    assert len(outputs) == 1
    item = json.loads(outputs[0].raw)["item"]
    assert item["type"] == "function_call_output" and item["call_id"] == requested[0].tool_call_id
    assert isinstance(item["output"], str) and json.loads(item["output"])["temperature_c"] == 21.5  # not double-encoded
    # response.create only after the response that asked for the tool has finished
    first_done = next(s.at for s in session.server_events if s.type == "response.done")
    creates = [r.at for r in session.client_events if r.type == "response.create"]
    assert len(creates) == 1 and creates[0] > first_done
    assert "error" not in session.server_types()
    assert report.assistant_bytes_received > 0  # the model spoke the result
    assert_client_events_valid(session)


async def test_barge_in_clears_twilio_and_truncates_at_what_the_caller_heard(tmp_path: Path) -> None:
    caller_script = [Speak(900), BargeIn(after_ms=1500, speak_ms=900), Silence(600), HangUp()]
    async with running_bridge(tmp_path, script=LONG_SCRIPT) as bridge:
        report = await place_call(bridge.base_url, script=caller_script)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
        session = bridge.fake.sessions[0]

    assert report.ok, report.errors
    assert report.clears_received == 1
    decisions = [d for d in of_type(events, BargeInDecided) if d.action == "truncated"]
    assert len(decisions) == 1
    decision = decisions[0]
    assert decision.audio_end_ms == decision.played_ms <= decision.received_ms
    # played is counted from mark echoes: what the caller's playback really reached, to within one chunk
    heard_ms = report.heard[0].byte_count / 8  # the interrupted reply, as the caller's playback heard it
    assert heard_ms - 150 <= decision.played_ms <= heard_ms
    assert 1000 <= decision.played_ms <= 2500  # about 1.5 s in, not the whole (much longer) reply
    truncates = [json.loads(r.raw) for r in session.client_events if r.type == "conversation.item.truncate"]
    assert truncates == [
        {
            "type": "conversation.item.truncate",
            "item_id": decision.item_id,
            "content_index": 0,
            "audio_end_ms": decision.audio_end_ms,
        }
    ]
    assert "conversation.item.truncated" in session.server_types()
    assert len(of_type(events, PlaybackCleared)) == 1
    # nothing of the interrupted item was sent after the clear
    cleared_at = of_type(events, PlaybackCleared)[0].at
    late = [e for e in of_type(events, AssistantAudioSent) if e.item_id == decision.item_id and e.at > cleared_at]
    assert late == []


async def test_two_simultaneous_calls_are_kept_apart(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=GREETING_SCRIPT) as bridge:
        reports = {}

        async def call(number: str) -> None:
            reports[number] = await place_call(bridge.base_url, script=ONE_TURN, from_number=number)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "+15550000001")
            nursery.start_soon(call, "+15550000002")
        logs = {}
        for number, report in reports.items():
            await bridge.wait_call_ended(report.call_sid)
            logs[number] = await bridge.events(report.call_sid)
        sessions = bridge.fake.sessions

    first, second = reports["+15550000001"], reports["+15550000002"]
    assert first.call_sid != second.call_sid and first.ok and second.ok
    assert len(sessions) == 2
    for number, report in reports.items():
        events = logs[number]
        assert {e.call_id for e in events} == {report.call_sid}
        assert of_type(events, CallStarted)[0].from_number == number
        assert sum(len(e.payload) for e in of_type(events, AssistantAudioSent)) == report.assistant_bytes_received
        assert sum(len(e.frame_sizes) for e in of_type(events, CallerAudioReceived)) == report.frames_sent
    items = [{e.item_id for e in of_type(logs[n], AssistantAudioSent)} for n in reports]
    assert items[0] and items[1] and not (items[0] & items[1])


async def test_a_dropped_model_socket_is_reconnected_and_the_call_goes_on(tmp_path: Path) -> None:
    script = Script(
        turns=[
            Turn(transcript="My name is Ada", reply="Nice to meet you, Ada."),
            Turn(transcript="What is my name?", reply="Your name is Ada."),
        ]
    )
    caller_script = [
        Speak(900),
        WaitForAssistant(timeout_s=15),
        Silence(1500),
        Speak(900),
        WaitForAssistant(15),
        HangUp(),
    ]
    async with running_bridge(tmp_path, script=script) as bridge:
        async with trio.open_nursery() as nursery:
            reports = []

            async def call() -> None:
                reports.append(await place_call(bridge.base_url, script=caller_script))

            nursery.start_soon(call)
            first = await bridge.fake.wait_for_session(1)
            await first.wait_for_server("response.done")
            await bridge.fake.drop_all()
        report = reports[0]
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
        second = bridge.fake.sessions[1]

    assert report.ok, report.errors
    assert report.ended_by == "caller"
    assert len(of_type(events, ModelDisconnected)) == 1
    connected = of_type(events, ModelConnected)
    assert [c.attempt for c in connected] == [0, 1] and connected[1].seeded_items >= 2
    # the new session was told the conversation so far
    seeded = [json.loads(r.raw)["item"] for r in second.client_events if r.type == "conversation.item.create"]
    texts = [part.get("text") for item in seeded for part in item.get("content", [])]
    assert "My name is Ada" in texts and "Nice to meet you, Ada." in texts
    transcripts = [json.loads(e.raw).get("transcript") for e in of_type(events, ModelEventReceived)]
    assert "Your name is Ada." in transcripts
    assert of_type(events, CallEnded)[0].reason == "caller_hangup"
    assert_client_events_valid(second)


async def test_unsigned_twilio_requests_are_refused_and_start_nothing(tmp_path: Path) -> None:
    token = "twilio-secret-token"
    async with running_bridge(tmp_path, script=GREETING_SCRIPT, env={"TWILIO_AUTH_TOKEN": token}) as bridge:
        async with httpx2.AsyncClient() as http:
            unsigned = await http.post(f"{bridge.base_url}/twiml", data={"CallSid": "CA1", "From": "+1"})
            wrong = await http.post(
                f"{bridge.base_url}/twiml", data={"CallSid": "CA1"}, headers={"X-Twilio-Signature": "bm90IGl0"}
            )
        assert (unsigned.status_code, wrong.status_code) == (403, 403)
        ws_url = signature.stream_url(bridge.server.settings.public_url)
        for headers in ([], [(b"X-Twilio-Signature", b"d3Jvbmc=")]):
            with pytest.raises(trio_websocket.ConnectionRejected) as rejected:
                async with trio_websocket.open_websocket_url(ws_url, extra_headers=headers):
                    pass
            assert rejected.value.status_code == 403
        assert len(bridge.server.live) == 0 and bridge.fake.sessions == []
        # correctly signed, the same call goes through
        report = await place_call(bridge.base_url, script=ONE_TURN, auth_token=token)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
    assert report.ok, report.errors
    started = of_type(events, CallStarted)[0]
    assert "callbridge_token" not in started.custom_parameters  # the per-call token is not stored
    assert token not in json.dumps([str(e) for e in events])


async def test_malformed_and_unknown_twilio_frames_are_recorded_and_the_call_goes_on(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=GREETING_SCRIPT) as bridge:
        url = signature.stream_url(bridge.server.settings.public_url)
        async with trio_websocket.open_websocket_url(url) as ws:
            start = codec.Start(
                sequence_number="1",
                stream_sid="MZtest",
                start=codec.StartInfo(stream_sid="MZtest", call_sid="CAmalformed", custom_parameters={"From": "+1"}),
            )
            await ws.send_message(codec.encode_inbound(codec.Connected()))
            await ws.send_message(codec.encode_inbound(start))
            await ws.send_message("{not json")
            await ws.send_message('{"event": "media", "streamSid": "MZtest"}')
            await ws.send_message('{"event": "telepathy", "streamSid": "MZtest"}')
            frame = codec.Media(
                sequence_number="2",
                stream_sid="MZtest",
                media=codec.MediaChunk(chunk="1", timestamp="0", payload="/////w=="),
            )
            await ws.send_message(codec.encode_inbound(frame))
            await bridge.fake.wait_for_session(1)
            stop = codec.Stop(sequence_number="3", stream_sid="MZtest", stop=codec.StopInfo(call_sid="CAmalformed"))
            await ws.send_message(codec.encode_inbound(stop))
            await bridge.wait_call_ended("CAmalformed")
        events = await bridge.events("CAmalformed")
    rejected = of_type(events, TwilioFrameRejected)
    assert len(rejected) == 2 and "media" in rejected[1].error
    assert [e.event for e in of_type(events, TwilioEventIgnored)] == ["telepathy"]
    assert sum(len(e.payload) for e in of_type(events, CallerAudioReceived)) == 4
    assert of_type(events, CallEnded)[0].reason == "caller_hangup"


async def test_shutdown_ends_live_calls_cleanly_and_flushes_their_events(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=GREETING_SCRIPT) as bridge:
        async with trio.open_nursery() as nursery:
            reports = []

            async def call() -> None:
                reports.append(await place_call(bridge.base_url, script=[Speak(900), Silence(20_000), HangUp()]))

            nursery.start_soon(call)
            session = await bridge.fake.wait_for_session(1)
            await session.wait_for_client("input_audio_buffer.append", count=10)
            bridge.server.shutdown.set()
            await bridge.server.stopped.wait()
        store = bridge.server.store
        call_id = reports[0].call_sid
        events = [r.event for r in store.read_call(call_id)]
    assert reports[0].ended_by == "server"
    assert of_type(events, CallEnded)[0].reason == "server_shutdown"
    assert isinstance(events[-1], CallEnded)


@pytest.mark.postgres
async def test_a_call_is_recorded_in_postgresql_when_the_store_scales_out(
    tmp_path: Path, postgres_store_url: str
) -> None:
    env = {"CALLBRIDGE_STORE": postgres_store_url}
    async with running_bridge(tmp_path, script=GREETING_SCRIPT, env=env) as bridge:
        assert bridge.server.store.description.startswith("postgresql://")
        report = await place_call(bridge.base_url, script=ONE_TURN)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
    assert report.ok, report.errors
    # /twiml's routing decision comes first, then the call itself
    assert isinstance(events[0], AgentRouted) and isinstance(events[1], CallStarted)
    assert isinstance(events[-1], CallEnded)
    assert sum(len(e.payload) for e in of_type(events, AssistantAudioSent)) == report.assistant_bytes_received


async def test_a_call_outlives_the_model_sessions_time_limit(tmp_path: Path) -> None:
    """The real API ends a session after 60 minutes (``session_expired``, close 1001); here after 4.5 s,
    while the caller waits. The caller stays on the line, a new session is opened and told the
    conversation so far. (An utterance cut by a lost session: tests/engine/test_call_supervisor.py.)"""
    script = Script(
        turns=[
            Turn(transcript="My name is Ada", reply="Nice to meet you, Ada."),
            Turn(transcript="What is my name?", reply="Your name is Ada."),
        ]
    )
    caller_script = [Speak(900), WaitForAssistant(15), Silence(2500), Speak(900), WaitForAssistant(15), HangUp()]
    async with running_bridge(tmp_path, script=script, fake_options={"expire_after_s": 4.5}) as bridge:
        report = await place_call(bridge.base_url, script=caller_script)
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)
        first = bridge.fake.sessions[0]

    assert report.ok, report.errors
    assert "session_expired" in [
        json.loads(e.raw).get("error", {}).get("code") for e in of_type(events, ModelEventReceived)
    ]
    assert [d.code for d in of_type(events, ModelDisconnected)][:1] == [1001]
    assert first.closed.is_set()
    connected = of_type(events, ModelConnected)
    assert len(connected) >= 2 and connected[1].seeded_items >= 2
    transcripts = [json.loads(e.raw).get("transcript") for e in of_type(events, ModelEventReceived)]
    assert "Your name is Ada." in transcripts
    assert of_type(events, CallEnded)[0].reason == "caller_hangup"


async def test_a_slow_tool_is_filled_with_a_short_out_of_band_reply_not_silence(tmp_path: Path) -> None:
    release = trio.Event()

    async def slow_lookup(args: dict[str, object], ctx: ToolContext) -> dict[str, object]:
        await release.wait()
        return {"status": "found"}

    registry = ToolRegistry()
    registry.register(
        Tool(name="lookup_order", description="slow backend", parameters={"type": "object"}, handler=slow_lookup)
    )
    script = Script(
        turns=[Turn(transcript="Where is my order?", function_call=FunctionCall(name="lookup_order", arguments={}))]
    )
    async with running_bridge(tmp_path, script=script, registry=registry) as bridge:
        async with trio.open_nursery() as nursery:
            reports = []

            heard = trio.Event()

            async def call() -> None:
                script = [Speak(900), WaitForAssistant(15), WaitForAssistant(15), HangUp()]
                reports.append(
                    await place_call(bridge.base_url, script=script, on_media_received=lambda *_: heard.set())
                )

            nursery.start_soon(call)
            session = await bridge.fake.wait_for_session(1)
            filler = await session.wait_for_client("response.create")  # while the tool is still running
            await heard.wait()  # the caller hears the filler before the tool answers
            release.set()
        report = reports[0]
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)

    assert report.ok, report.errors
    assert json.loads(filler.raw)["response"]["conversation"] == "none"
    creates = [json.loads(r.raw) for r in session.client_events if r.type == "response.create"]
    assert len(creates) == 2 and "response" not in creates[1]  # then the real answer, once
    outputs = [r.at for r in session.client_events if r.type == "conversation.item.create"]
    assert filler.at < outputs[0]
    transcripts = [json.loads(e.raw).get("transcript") for e in of_type(events, ModelEventReceived)]
    assert "One moment, I'm still working on that." in transcripts
    assert "Here is what I found: " + json.dumps({"status": "found"}) in transcripts
    assert "error" not in session.server_types()
    answered_at = of_type(events, ToolCallCompleted)[0].at
    assert of_type(events, AssistantAudioSent)[0].at < answered_at  # the caller heard something meanwhile
    assert_client_events_valid(session)


async def test_a_model_that_rejects_the_key_is_logged_and_the_caller_hears_the_apology_before_the_hang_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    apology = Apology.bundled()
    async with running_bridge(tmp_path, script=GREETING_SCRIPT, fake_options={"api_key": "not-what-we-send"}) as bridge:
        bridge.server.apology = apology
        report = await place_call(bridge.base_url, script=[Silence(20_000), HangUp()])
        await bridge.wait_call_ended(report.call_sid)
        events = await bridge.events(report.call_sid)

    assert report.ended_by == "server"
    apology_bytes = sum(len(base64.b64decode(chunk)) for chunk in apology.chunks)
    assert report.assistant_bytes_received == apology_bytes  # every byte of it reached the caller
    assert report.assistant_bytes_played == report.assistant_bytes_received  # and was played before the hang-up
    [failed] = of_type(events, ModelConnectionFailed)
    assert failed.retry_in_s is None and "OPENAI_API_KEY was rejected" in failed.error  # a rejected key: no retry
    ended = of_type(events, CallEnded)[0]
    assert ended.reason == "model_unavailable" and "rejected" in ended.detail
    logged = [r for r in caplog.records if r.levelname == "ERROR" and "realtime model is unavailable" in r.getMessage()]
    assert logged and report.call_sid in logged[0].getMessage()
