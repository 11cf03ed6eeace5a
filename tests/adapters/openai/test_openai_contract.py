"""Every client event shape callbridge can produce is a valid GA event for the official SDK types,
with no unknown keys; beta shapes are refused (docs/protocols.md B8)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai_contract import ContractViolation, assert_valid_client_event, assert_valid_server_event

from callbridge.adapters.openai import codec
from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG, session_update_payload

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather_from_coords",
    "description": "Current weather at a latitude/longitude.",
    "parameters": {
        "type": "object",
        "properties": {"latitude": {"type": "number"}, "longitude": {"type": "number"}},
        "required": ["latitude", "longitude"],
    },
}

TOOLS_SEMANTIC_CONFIG: dict[str, Any] = {
    **DEFAULT_SESSION_CONFIG,
    "voice": "cedar",
    "turn_detection": {"type": "semantic_vad", "eagerness": "high", "interrupt_response": True},
    "tools": [WEATHER_TOOL],
    "tool_choice": "required",
    "noise_reduction": "near_field",
    "speed": 1.1,
    "max_output_tokens": 1024,
}

MANUAL_CONFIG: dict[str, Any] = {"turn_detection": None, "input_transcription_model": None}

SERVER_VAD_SETTINGS_CONFIG: dict[str, Any] = {
    "turn_detection": {
        "type": "server_vad",
        "threshold": 0.6,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 400,
        "idle_timeout_ms": None,
        "create_response": False,
        "interrupt_response": False,
    }
}

REPRESENTATIVE_EVENTS: dict[str, codec.ClientEventBase] = {
    "session.update default": codec.SessionUpdate(session=session_update_payload(DEFAULT_SESSION_CONFIG)),
    "session.update tools+semantic_vad": codec.SessionUpdate(
        session=session_update_payload(TOOLS_SEMANTIC_CONFIG), event_id="evt_1"
    ),
    "session.update manual turns": codec.SessionUpdate(session=session_update_payload(MANUAL_CONFIG)),
    "session.update server_vad settings": codec.SessionUpdate(
        session=session_update_payload(SERVER_VAD_SETTINGS_CONFIG)
    ),
    "append": codec.InputAudioBufferAppend(audio="//////////8="),
    "commit": codec.InputAudioBufferCommit(),
    "clear": codec.InputAudioBufferClear(),
    "truncate": codec.ConversationItemTruncate(item_id="item_1", content_index=0, audio_end_ms=1234),
    "delete": codec.ConversationItemDelete(item_id="item_1"),
    "function_call_output": codec.ConversationItemCreate(
        item={"type": "function_call_output", "call_id": "call_1", "output": json.dumps({"temp_c": 18})}
    ),
    "seed user text": codec.ConversationItemCreate(
        item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]}
    ),
    "seed assistant text": codec.ConversationItemCreate(
        item={
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Hello! How can I help?"}],
        },
        previous_item_id="item_0",
    ),
    "seed function_call": codec.ConversationItemCreate(
        item={
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather_from_coords",
            "arguments": '{"latitude":1,"longitude":2}',
        }
    ),
    "seed system": codec.ConversationItemCreate(
        item={"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be brief."}]},
        previous_item_id="root",
    ),
    "response.create": codec.ResponseCreate(),
    "response.create with options": codec.ResponseCreate(
        response={"instructions": "Greet the caller.", "metadata": {"call": "CA1"}}
    ),
    "response.cancel": codec.ResponseCancel(),
    "response.cancel by id": codec.ResponseCancel(response_id="resp_1"),
}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVE_EVENTS))
def test_every_client_event_shape_is_a_valid_ga_event(name: str) -> None:
    event = REPRESENTATIVE_EVENTS[name]
    model = assert_valid_client_event(codec.encode_client(event))
    assert model.type == type(event).__struct_config__.tag  # type: ignore[attr-defined]


def test_session_payload_is_ga_shaped_pcmu_audio_only() -> None:
    model = assert_valid_client_event(codec.encode_client(REPRESENTATIVE_EVENTS["session.update default"]))
    session = model.session  # type: ignore[attr-defined]
    assert session.type == "realtime"
    assert session.output_modalities == ["audio"]
    assert session.audio.input.format.type == "audio/pcmu"
    assert session.audio.output.format.type == "audio/pcmu"
    assert session.audio.output.voice == "marin"
    assert session.audio.input.turn_detection.type == "server_vad"
    assert session.audio.input.transcription.model == "gpt-4o-mini-transcribe"


def test_tools_and_semantic_vad_survive_the_mapping() -> None:
    model = assert_valid_client_event(codec.encode_client(REPRESENTATIVE_EVENTS["session.update tools+semantic_vad"]))
    session = model.session  # type: ignore[attr-defined]
    assert [tool.name for tool in session.tools] == ["get_weather_from_coords"]
    assert session.tools[0].parameters == WEATHER_TOOL["parameters"]
    assert session.audio.input.turn_detection.eagerness == "high"
    assert session.audio.input.noise_reduction.type == "near_field"
    assert session.max_output_tokens == 1024


def test_beta_shaped_session_update_fails_validation() -> None:
    beta = {
        "type": "session.update",
        "session": {
            "modalities": ["text", "audio"],
            "voice": "alloy",
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "turn_detection": {"type": "server_vad"},
        },
    }
    with pytest.raises(ContractViolation):
        assert_valid_client_event(beta)


def test_unknown_keys_are_rejected_even_where_the_sdk_allows_extras() -> None:
    misplaced_voice = session_update_payload(DEFAULT_SESSION_CONFIG) | {"voice": "marin"}
    with pytest.raises(ContractViolation, match=r"\$\.session\.voice"):
        assert_valid_client_event({"type": "session.update", "session": misplaced_voice})
    with pytest.raises(ContractViolation, match="audoi"):
        assert_valid_client_event({"type": "input_audio_buffer.append", "audio": "", "audoi": "x"})


def test_beta_event_names_are_rejected() -> None:
    with pytest.raises(ContractViolation, match="does not match any of the expected tags"):
        assert_valid_server_event(
            {
                "type": "response.audio.delta",
                "event_id": "e",
                "response_id": "r",
                "item_id": "i",
                "output_index": 0,
                "content_index": 0,
                "delta": "",
            }
        )
