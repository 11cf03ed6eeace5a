"""The realtime codec: typed round trips, the decode policy (unknown → recorded, not raised), and
fuzzing that proves only ``RealtimeProtocolError`` can escape a decoder."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.adapters.openai import codec
from callbridge.adapters.openai import server_events as se
from callbridge.adapters.openai.client_events import CLIENT_EVENT_TYPES

SERVER_EVENT_TYPES: list[type[se.ServerEventBase]] = list(typing.get_args(se.ServerEvent))
SERVER_TAGS = [cls.__struct_config__.tag for cls in SERVER_EVENT_TYPES]
CLIENT_TAGS = [cls.__struct_config__.tag for cls in CLIENT_EVENT_TYPES]

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


def strategy_for(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of a struct field's type, nested structs included (for round-trip tests)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([strategy_for(arg) for arg in typing.get_args(annotation)])
    if origin is list:
        return st.lists(strategy_for(typing.get_args(annotation)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    if annotation is type(None):
        return st.none()
    if annotation is str:
        return st.text(max_size=30)
    if annotation is int:
        return st.integers(-(2**53), 2**53)
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if annotation is bool:
        return st.booleans()
    if annotation is Any:
        return json_values
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return struct_strategy(annotation)
    raise NotImplementedError(annotation)


def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {f.name: strategy_for(hints[f.name]) for f in msgspec.structs.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


any_server_event = st.one_of([struct_strategy(cls) for cls in SERVER_EVENT_TYPES])


# --- round trips -------------------------------------------------------------------------------


@settings(max_examples=300)
@given(any_server_event)
def test_every_server_event_round_trips(event: se.ServerEventBase) -> None:
    text = codec.encode_server(event)
    assert json.loads(text)["type"] == event.__struct_config__.tag
    assert codec.decode_server(text) == event
    assert codec.decode_server(text.encode()) == event


def test_every_b5_server_event_has_a_struct() -> None:
    b5 = {
        "session.created", "session.updated", "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "input_audio_buffer.cleared",
        "input_audio_buffer.timeout_triggered", "conversation.item.added", "conversation.item.done",
        "conversation.item.created", "conversation.item.truncated", "conversation.item.deleted",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed", "response.created",
        "response.output_item.added", "response.output_item.done", "response.content_part.added",
        "response.content_part.done", "response.output_audio.delta", "response.output_audio.done",
        "response.output_audio_transcript.delta", "response.output_audio_transcript.done",
        "response.output_text.delta", "response.output_text.done",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.done", "rate_limits.updated", "error",
    }  # fmt: skip
    assert b5 <= set(SERVER_TAGS)


client_events = st.one_of(
    st.builds(codec.SessionUpdate, session=st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
    st.builds(codec.InputAudioBufferAppend, audio=st.text(max_size=50), event_id=st.none() | st.text(max_size=8)),
    st.builds(codec.InputAudioBufferCommit),
    st.builds(codec.InputAudioBufferClear, event_id=st.none() | st.text(max_size=8)),
    st.builds(
        codec.ConversationItemCreate,
        item=st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        previous_item_id=st.none() | st.text(max_size=8),
    ),
    st.builds(
        codec.ConversationItemTruncate,
        item_id=st.text(max_size=8),
        content_index=st.integers(0, 3),
        audio_end_ms=st.integers(0, 10**7),
    ),
    st.builds(codec.ConversationItemDelete, item_id=st.text(max_size=8)),
    st.builds(codec.ConversationItemRetrieve, item_id=st.text(max_size=8)),
    st.builds(codec.ResponseCreate, response=st.none() | st.dictionaries(st.text(max_size=8), json_values)),
    st.builds(codec.ResponseCancel, response_id=st.none() | st.text(max_size=8)),
    st.builds(codec.OutputAudioBufferClear),
)


@given(client_events)
def test_every_client_event_round_trips(event: codec.ClientEventBase) -> None:
    text = codec.encode_client(event)
    assert codec.decode_client(text) == event
    assert codec.client_event_from_dict(json.loads(text)) == event


# --- encoding ----------------------------------------------------------------------------------


def test_unset_optional_fields_are_omitted_and_type_comes_first() -> None:
    assert codec.encode_client(codec.ResponseCreate()) == '{"type":"response.create"}'
    assert codec.encode_client(codec.ResponseCancel()) == '{"type":"response.cancel"}'
    created = json.loads(codec.encode_client(codec.ConversationItemCreate(item={"type": "message"})))
    assert created == {"type": "conversation.item.create", "item": {"type": "message"}}
    with_id = codec.encode_client(codec.InputAudioBufferCommit(event_id="evt_7"))
    assert with_id == '{"type":"input_audio_buffer.commit","event_id":"evt_7"}'


def test_truncate_always_carries_content_index_even_when_zero() -> None:
    text = codec.encode_client(codec.ConversationItemTruncate(item_id="item_1", content_index=0, audio_end_ms=0))
    assert json.loads(text) == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 0,
    }


@given(st.text(max_size=200))
def test_append_is_valid_json_whatever_the_audio_text(audio: str) -> None:
    assert json.loads(codec.encode_append(audio)) == {"type": "input_audio_buffer.append", "audio": audio}


# --- decoding policy ---------------------------------------------------------------------------


def test_audio_delta_decodes_typed_even_with_type_last() -> None:
    raw = (
        '{"event_id":"e1","response_id":"resp_1","item_id":"item_1","output_index":0,'
        '"content_index":0,"delta":"//8=","type":"response.output_audio.delta"}'
    )
    event = codec.decode_server(raw)
    assert isinstance(event, se.ResponseOutputAudioDelta)
    assert (event.item_id, event.response_id, event.delta) == ("item_1", "resp_1", "//8=")


def test_a_real_shaped_response_done_decodes_with_nulls_and_usage() -> None:
    raw = json.dumps(
        {
            "type": "response.done",
            "event_id": "event_1",
            "response": {
                "object": "realtime.response",
                "id": "resp_1",
                "status": "cancelled",
                "status_details": {"type": "cancelled", "reason": "turn_detected", "error": None},
                "output": [
                    {
                        "id": "item_2",
                        "type": "message",
                        "status": "incomplete",
                        "role": "assistant",
                        "content": [{"type": "output_audio", "transcript": "Hello th"}],
                    }
                ],
                "conversation_id": "conv_1",
                "output_modalities": ["audio"],
                "max_output_tokens": "inf",
                "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}},
                "usage": {
                    "total_tokens": 300,
                    "input_tokens": 250,
                    "output_tokens": 50,
                    "input_token_details": {
                        "text_tokens": 200,
                        "audio_tokens": 50,
                        "image_tokens": 0,
                        "cached_tokens": 192,
                        "cached_tokens_details": {"text_tokens": 192, "audio_tokens": 0, "image_tokens": 0},
                    },
                    "output_token_details": {"text_tokens": 10, "audio_tokens": 40},
                },
                "metadata": None,
                "brand_new_field": {"x": 1},
            },
        }
    )
    event = codec.decode_server(raw)
    assert isinstance(event, se.ResponseDone)
    response = event.response
    assert response.status == "cancelled"
    assert response.status_details is not None and response.status_details.reason == "turn_detected"
    assert response.usage is not None and response.usage.input_token_details is not None
    assert response.usage.input_token_details.cached_tokens == 192
    assert response.output is not None and response.output[0].content is not None
    assert response.output[0].content[0].transcript == "Hello th"
    assert response.max_output_tokens == "inf"


def test_error_event_exposes_code_message_type_and_param() -> None:
    raw = (
        '{"type":"error","event_id":"e","error":{"type":"invalid_request_error",'
        '"code":"conversation_already_has_active_response","message":"busy","param":null,"event_id":"c1"}}'
    )
    event = codec.decode_server(raw)
    assert isinstance(event, se.ErrorEvent)
    assert event.error.code == "conversation_already_has_active_response"
    assert (event.error.type, event.error.message, event.error.param, event.error.event_id) == (
        "invalid_request_error",
        "busy",
        None,
        "c1",
    )


def test_unknown_type_becomes_unknown_event_with_raw_text() -> None:
    raw = '{"type":"output_audio_buffer.something_new","event_id":"e"}'
    event = codec.decode_server(raw)
    assert isinstance(event, codec.UnknownServerEvent)
    assert event.type == "output_audio_buffer.something_new"
    assert event.raw == raw
    assert "unknown server event type" in event.error


def test_known_type_with_broken_body_becomes_unknown_event_naming_the_field() -> None:
    event = codec.decode_server(b'{"type":"response.output_audio.delta","delta":5}')
    assert isinstance(event, codec.UnknownServerEvent)
    assert event.type == "response.output_audio.delta"
    assert "delta" in event.error or "response_id" in event.error


@pytest.mark.parametrize("frame", ["", "not json", "[1,2]", "42", '{"no_type":1}', '{"type":7}', b"\xff\xfe"])
def test_frames_that_are_not_events_raise_the_codec_error(frame: str | bytes) -> None:
    with pytest.raises(codec.RealtimeProtocolError):
        codec.decode_server(frame)
    with pytest.raises(codec.RealtimeProtocolError):
        codec.decode_client(frame)


def test_client_decoding_rejects_unknown_fields_like_the_real_server() -> None:
    event = codec.decode_client('{"type":"input_audio_buffer.append","audio":"","audoi":"x"}')
    assert isinstance(event, codec.UnknownClientEvent)
    assert "audoi" in event.error


def test_client_event_from_dict_checks_the_shape() -> None:
    assert codec.client_event_from_dict({"type": "response.create"}) == codec.ResponseCreate()
    assert isinstance(codec.client_event_from_dict({"type": "response.create", "x": 1}), codec.UnknownClientEvent)
    with pytest.raises(codec.RealtimeProtocolError):
        codec.client_event_from_dict({"item": {}})


# --- fuzzing: only the codec's own error may escape --------------------------------------------


def _decode_all(frame: str | bytes) -> None:
    for decode in (codec.decode_server, codec.decode_client):
        try:
            result = decode(frame)
        except codec.RealtimeProtocolError:
            continue
        assert isinstance(result, msgspec.Struct)


@settings(max_examples=300)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzz_arbitrary_frames(frame: str | bytes) -> None:
    _decode_all(frame)


@settings(max_examples=300)
@given(json_values)
def test_fuzz_arbitrary_json(value: Any) -> None:
    _decode_all(json.dumps(value))


@settings(max_examples=500)
@given(
    st.sampled_from(SERVER_TAGS + CLIENT_TAGS),
    st.dictionaries(
        st.sampled_from(["event_id", "item_id", "delta", "response", "item", "error", "session", "audio",
                         "content_index", "output_index", "response_id", "call_id", "transcript", "part"]),
        json_values,
        max_size=6,
    ),
)  # fmt: skip
def test_fuzz_known_types_with_random_bodies(tag: str, body: dict[str, Any]) -> None:
    frame = json.dumps({"type": tag, **body})
    _decode_all(frame)
    result = codec.decode_server(frame)
    if isinstance(result, codec.UnknownServerEvent):
        assert result.type == tag
    else:
        assert result.__struct_config__.tag == tag
