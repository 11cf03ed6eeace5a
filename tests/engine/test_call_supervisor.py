"""The call's shell and supervisor (engine/call.py), with in-memory peers: what a crash or a lost model means.

No sockets here: the Twilio side is a memory channel of frames, the model is a scripted in-memory
connection, and trio's MockClock skips the reconnect backoff.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from memory_sockets import memory_socket_pair

from callbridge.adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from callbridge.adapters.twilio import codec
from callbridge.adapters.websocket import WebSocketClosed
from callbridge.engine.call import run_call
from callbridge.engine.context import CallSettings
from callbridge.engine.events import (
    CallEnded,
    CallerAudioDropped,
    CallerAudioReceived,
    CallStarted,
    Event,
    ModelConnected,
    ModelConnectionFailed,
    TaskCrashed,
    ToolCallFailed,
    ToolCallRequested,
)
from callbridge.engine.live_calls import LiveCalls
from callbridge.engine.model_link import UPLINK_MAX_FRAMES
from callbridge.engine.reconnect import ReconnectPolicy
from callbridge.engine.tools import Tool, ToolRegistry


class MemoryTwilio:
    """The caller's side: the engine gets ``socket`` (held to the real WebSocket's contract,
    tests/adapters/test_message_socket_conformance.py); the test talks through ``phone``."""

    def __init__(self) -> None:
        self.socket, self.phone = memory_socket_pair()

    async def send(self, frame: str) -> None:
        await self.phone.send_message(frame)

    @property
    def closed(self) -> WebSocketClosed | None:
        return self.socket.closed


class MemoryModel:
    """A model connection: records what the bridge sends; ``incoming`` feeds server events."""

    def __init__(self, fail_on_send: str | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self.unstalled: trio.Event | None = None
        """While set to an unset event, sends wait for it (a model that stopped reading)."""
        self.incoming_send, self.incoming = trio.open_memory_channel[str](100)
        self.fail_on_send = fail_on_send
        self.configured = trio.Event()
        self._changed = trio.Event()

    async def wait_sent(self, kind: str, count: int) -> None:
        while sum(event["type"] == kind for event in self.sent) < count:
            await self._changed.wait()

    async def send_raw_many(self, texts: list[str]) -> None:
        if self.unstalled is not None:
            await self.unstalled.wait()
        for text in texts:
            event = json.loads(text)
            if event["type"] == self.fail_on_send:
                self.fail_on_send = None
                raise ValueError("a bug while sending")
            self.sent.append(event)
        self.configured.set()
        self._changed.set()
        self._changed = trio.Event()

    async def receive_raw(self) -> str:
        try:
            return await self.incoming.receive()
        except trio.EndOfChannel:
            raise RealtimeConnectionClosed(1006, "closed") from None


def start_frame(call_sid: str = "CAsup") -> codec.Start:
    return codec.Start(
        sequence_number="1",
        stream_sid="MZsup",
        start=codec.StartInfo(stream_sid="MZsup", call_sid=call_sid, custom_parameters={"From": "+1", "To": "+2"}),
    )


def settings_for(opener: Any, registry: ToolRegistry | None = None, **kwargs: Any) -> CallSettings:
    return CallSettings(
        open_model=opener,
        model_kind="sim",
        model_url="memory://model",
        registry=registry or ToolRegistry(),
        tool_context_http=None,
        reconnect=ReconnectPolicy(max_attempts=2, first_delay_s=0.5, max_delay_s=1.0),
        **kwargs,
    )


def stop_frame() -> str:
    return codec.encode_inbound(codec.Stop(sequence_number="9", stream_sid="MZsup", stop=codec.StopInfo()))


async def test_a_model_that_cannot_be_reached_ends_the_call_cleanly(autojump_clock: trio.testing.MockClock) -> None:
    attempts = 0

    @asynccontextmanager
    async def unreachable() -> AsyncIterator[MemoryModel]:
        nonlocal attempts
        attempts += 1
        raise RealtimeConnectError("connection refused")
        yield MemoryModel()  # pragma: no cover

    events: list[Event] = []
    twilio = MemoryTwilio()
    reason = await run_call(
        twilio.socket, start_frame(), settings=settings_for(unreachable), session_config={}, sink=events.append
    )
    assert reason == "model_unavailable"
    assert attempts == 3  # the first try and two retries
    failures = [e for e in events if isinstance(e, ModelConnectionFailed)]
    assert [f.retry_in_s is None for f in failures] == [False, False, True]
    assert isinstance(events[0], CallStarted) and isinstance(events[-1], CallEnded)
    assert events[-1].reason == "model_unavailable"
    assert twilio.closed is not None  # the caller is hung up on, not left in silence


async def test_a_crashing_model_task_is_restarted_and_the_conversation_reseeded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    models = [MemoryModel(fail_on_send="session.update"), MemoryModel()]
    opened: list[MemoryModel] = []

    @asynccontextmanager
    async def opener() -> AsyncIterator[MemoryModel]:
        model = models[len(opened)]
        opened.append(model)
        yield model

    events: list[Event] = []
    twilio = MemoryTwilio()
    live = LiveCalls()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_call(
                twilio.socket,
                start_frame(),
                settings=settings_for(opener),
                session_config={},
                sink=events.append,
                live=live,
            )
        )
        await models[1].configured.wait()
        await twilio.send(stop_frame())
    crashes = [e for e in events if isinstance(e, TaskCrashed)]
    assert [(c.task, c.action) for c in crashes] == [("model", "restarted")]
    assert "a bug while sending" in crashes[0].traceback
    # the session was configured before the bug struck: the next one is a reconnect, re-seeded
    assert [e.attempt for e in events if isinstance(e, ModelConnected)] == [0, 1]
    assert opened[1].sent[0]["type"] == "session.update"
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "caller_hangup"
    assert len(live) == 0


async def test_a_task_that_keeps_crashing_ends_the_call(autojump_clock: trio.testing.MockClock) -> None:
    @asynccontextmanager
    async def always_buggy() -> AsyncIterator[MemoryModel]:
        yield MemoryModel(fail_on_send="session.update")

    events: list[Event] = []
    reason = await run_call(
        MemoryTwilio().socket,
        start_frame(),
        settings=settings_for(always_buggy, max_task_restarts=2),
        session_config={},
        sink=events.append,
    )
    assert reason == "supervisor_gave_up"
    assert [c.action for c in events if isinstance(c, TaskCrashed)] == ["restarted", "restarted", "ended_call"]
    assert isinstance(events[-1], CallEnded)


async def test_a_tool_call_pending_at_hangup_is_recorded_as_failed(autojump_clock: trio.testing.MockClock) -> None:
    model = MemoryModel()

    @asynccontextmanager
    async def opener() -> AsyncIterator[MemoryModel]:
        yield model

    registry = ToolRegistry()
    registry.register(Tool(name="ask_a_human", description="", parameters={"type": "object"}, handler=None))
    events: list[Event] = []
    requested = trio.Event()

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, ToolCallRequested):
            requested.set()

    twilio = MemoryTwilio()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_call(
                twilio.socket, start_frame(), settings=settings_for(opener, registry), session_config={}, sink=sink
            )
        )
        done = {
            "type": "response.function_call_arguments.done",
            "event_id": "e1",
            "response_id": "r1",
            "item_id": "i1",
            "output_index": 0,
            "call_id": "call_1",
            "name": "ask_a_human",
            "arguments": "{}",
        }
        await model.incoming_send.send(json.dumps(done))
        await requested.wait()
        await twilio.send(stop_frame())
    failed = [e for e in events if isinstance(e, ToolCallFailed)]
    assert [f.tool_call_id for f in failed] == ["call_1"]
    assert isinstance(events[-1], CallEnded) and events[-1].reason == "caller_hangup"


def media_frame(index: int) -> str:
    payload = base64.b64encode(bytes([index]) * 160).decode()
    media = codec.MediaChunk(chunk=str(index), timestamp=str(20 * index), payload=payload)
    return codec.encode_inbound(codec.Media(sequence_number=str(index + 1), stream_sid="MZsup", media=media))


async def test_an_utterance_cut_by_a_lost_session_is_sent_again_to_the_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    models = [MemoryModel(), MemoryModel()]
    opened: list[MemoryModel] = []

    @asynccontextmanager
    async def opener() -> AsyncIterator[MemoryModel]:
        model = models[len(opened)]
        opened.append(model)
        yield model

    events: list[Event] = []
    twilio = MemoryTwilio()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_call(
                twilio.socket, start_frame(), settings=settings_for(opener), session_config={}, sink=events.append
            )
        )
        first, second = models
        for index in range(1, 4):
            await twilio.send(media_frame(index))
        await first.wait_sent("input_audio_buffer.append", 3)
        started = {"type": "input_audio_buffer.speech_started", "event_id": "e1", "item_id": "u1", "audio_start_ms": 20}
        await first.incoming_send.send(json.dumps(started))
        for index in range(4, 6):
            await twilio.send(media_frame(index))
        await first.wait_sent("input_audio_buffer.append", 5)
        await first.incoming_send.aclose()  # the session is lost mid-utterance
        for index in range(6, 8):  # the caller goes on talking while the bridge reconnects
            await twilio.send(media_frame(index))
        await second.wait_sent("input_audio_buffer.append", 7)
        await twilio.send(stop_frame())
    first_audio = [e["audio"] for e in first.sent if e["type"] == "input_audio_buffer.append"]
    second_audio = [e["audio"] for e in second.sent if e["type"] == "input_audio_buffer.append"]
    assert second_audio[:5] == first_audio  # the whole utterance so far, in order
    assert len(second_audio) == 7 and len(set(second_audio)) == 7  # then what came while offline, once each
    assert second.sent[0]["type"] == "session.update"


async def call_with_a_stalled_model(*, catches_up: bool) -> tuple[MemoryModel, list[Event]]:
    """A call whose model stops reading while the caller sends 51 frames (the writer stuck on the
    first); with ``catches_up`` the model reads again before the caller hangs up."""
    model = MemoryModel()

    @asynccontextmanager
    async def opener() -> AsyncIterator[MemoryModel]:
        yield model

    events: list[Event] = []
    twilio = MemoryTwilio()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_call(
                twilio.socket, start_frame(), settings=settings_for(opener), session_config={}, sink=events.append
            )
        )
        await model.configured.wait()
        model.unstalled = trio.Event()  # the model stops reading
        await twilio.send(media_frame(0))
        await trio.testing.wait_all_tasks_blocked()  # the writer is stuck sending frame 0
        for index in range(1, 51):
            await twilio.send(media_frame(index))
        await trio.testing.wait_all_tasks_blocked()
        if catches_up:
            model.unstalled.set()
            await model.wait_sent("input_audio_buffer.append", 1 + UPLINK_MAX_FRAMES)
            await trio.testing.wait_all_tasks_blocked()
        await twilio.send(stop_frame())
    return model, events


async def test_a_stalled_model_socket_drops_the_oldest_caller_frames_and_records_it_instead_of_queueing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model, events = await call_with_a_stalled_model(catches_up=True)
    appended = [e["audio"] for e in model.sent if e["type"] == "input_audio_buffer.append"]
    newest = [json.loads(media_frame(i))["media"]["payload"] for i in range(51 - UPLINK_MAX_FRAMES, 51)]
    assert appended[1:] == newest  # the model hears the latest 100 ms, not 1 s-old audio
    dropped = [e for e in events if isinstance(e, CallerAudioDropped)]
    assert sum(d.count for d in dropped) == 50 - UPLINK_MAX_FRAMES and "uplink" in dropped[0].reason
    stored = sum(len(e.frame_sizes) for e in events if isinstance(e, CallerAudioReceived))
    assert stored == 51  # the store still has every frame the caller sent


async def test_frames_dropped_for_a_model_that_never_caught_up_are_recorded_when_the_call_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The uplink reports its drops after each write; a write that never finished (the model stopped
    reading for good) reported none. The call's end records them, before ``CallEnded``."""
    _, events = await call_with_a_stalled_model(catches_up=False)  # the writer stays stuck for good
    dropped = [e for e in events if isinstance(e, CallerAudioDropped)]
    assert sum(d.count for d in dropped) == 50 - UPLINK_MAX_FRAMES and "uplink" in dropped[0].reason
    ended = next(i for i, e in enumerate(events) if isinstance(e, CallEnded))
    assert all(events.index(d) < ended for d in dropped)
