"""Driving a ``CallCore`` by hand: feed inputs, read what it decided. No sockets, no trio, no clock."""

from __future__ import annotations

import base64
import json
from typing import Any

from callbridge.adapters.openai import codec as oa
from callbridge.adapters.twilio import codec
from callbridge.engine.call_core import CallConfig, CallCore
from callbridge.engine.call_io import (
    CallBegan,
    CallerMedia,
    Input,
    ModelServerEvent,
    ModelSessionOpened,
    OpenModelSession,
    Output,
    Record,
    SendToCaller,
    SendToModel,
)
from callbridge.engine.events import Event
from callbridge.engine.reconnect import ReconnectPolicy

TOOL_SCHEMA = {
    "type": "function",
    "name": "get_weather",
    "description": "weather",
    "parameters": {"type": "object", "properties": {}},
}


def config(**overrides: Any) -> CallConfig:
    values: dict[str, Any] = {
        "call_id": "CAcore",
        "stream_sid": "MZcore",
        "session_config": {"instructions": "Be brief."},
        "from_number": "+15550001",
        "to_number": "+15550002",
        "model_url": "ws://model",
        "tool_schemas": (TOOL_SCHEMA,),
        "backend_tools": frozenset({"get_weather"}),
        "reconnect": ReconnectPolicy(max_attempts=2, first_delay_s=0.5, max_delay_s=1.0),
        "tool_wait_announce_s": 2.0,
    }
    values.update(overrides)
    return CallConfig(**values)


def frame(index: int, size: int = 160) -> CallerMedia:
    return CallerMedia(
        payload=base64.b64encode(bytes([index % 256]) * size).decode(), timestamp=20 * index, chunk=index
    )


class Driver:
    def __init__(self, **overrides: Any) -> None:
        self.core = CallCore(config(**overrides))
        self.now = 1_700_000_000.0
        self.outputs: list[Output] = []

    def feed(self, given: Input, *, dt: float = 0.0) -> list[Output]:
        self.now += dt
        outputs = self.core.handle(given, self.now)
        self.outputs.extend(outputs)
        return outputs

    def start(self) -> None:
        """Begin the call and open its first session."""
        self.feed(CallBegan())
        self.feed(ModelSessionOpened(session=1))

    def server(self, event: dict[str, Any], session: int | None = None) -> list[Output]:
        raw = json.dumps({"event_id": "ev", **event})
        decoded = oa.decode_server(raw)
        return self.feed(ModelServerEvent(session=session or self.core.model.session, event=decoded, raw=raw))

    # --- reading what was decided -------------------------------------------------------------

    def events(self, kind: type | None = None) -> list[Any]:
        found = [o.event for o in self.outputs if isinstance(o, Record)]
        return [e for e in found if kind is None or isinstance(e, kind)]

    def to_model(self, outputs: list[Output] | None = None, *, audio: bool = False) -> list[dict[str, Any]]:
        source = self.outputs if outputs is None else outputs
        return [json.loads(o.text) for o in source if isinstance(o, SendToModel) and o.audio == audio]

    def model_types(self, outputs: list[Output] | None = None) -> list[str]:
        return [event["type"] for event in self.to_model(outputs)]

    def to_caller(self, outputs: list[Output] | None = None) -> list[Any]:
        source = self.outputs if outputs is None else outputs
        return [codec.decode_outbound(text) for o in source if isinstance(o, SendToCaller) for text in o.frames]

    def of(self, kind: type, outputs: list[Output] | None = None) -> list[Any]:
        source = self.outputs if outputs is None else outputs
        return [o for o in source if isinstance(o, kind)]

    def last_open(self) -> OpenModelSession:
        return self.of(OpenModelSession)[-1]


def delta(item_id: str, data: bytes, response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.output_audio.delta",
        "response_id": response_id,
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": base64.b64encode(data).decode(),
    }


def response_created(response_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "response.created", "response": {"id": response_id, "object": "realtime.response", **extra}}


def response_done(response_id: str) -> dict[str, Any]:
    return {
        "type": "response.done",
        "response": {"id": response_id, "object": "realtime.response", "status": "completed"},
    }


def message_item_added(item_id: str, response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "response_id": response_id,
        "output_index": 0,
        "item": {"id": item_id, "type": "message", "role": "assistant", "content": []},
    }


def function_call_done(call_id: str, name: str = "get_weather", response_id: str = "resp_1") -> dict[str, Any]:
    return {
        "type": "response.function_call_arguments.done",
        "response_id": response_id,
        "item_id": f"item_{call_id}",
        "output_index": 0,
        "call_id": call_id,
        "name": name,
        "arguments": "{}",
    }


SPEECH_STARTED = {"type": "input_audio_buffer.speech_started", "item_id": "user_1", "audio_start_ms": 0}


def recorded(events: list[Event], kind: type) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]
