"""The call core records what the model's events say about the conversation as typed facts.

Readers (the views, the timeline, the console) fold these and never the model's JSON, so each fact
must be recorded with the model event it comes from — right after it, at the same time — and carry
everything a reader needs (engine/model_facts.py).
"""

from __future__ import annotations

from typing import Any

from core_driver import SPEECH_STARTED, Driver, message_item_added, response_created

from callbridge.engine.events import (
    AssistantSaid,
    CallerAudioCommitted,
    CallerSaid,
    CallerSpeechDetected,
    CallerTranscriptionFailed,
    ModelEventReceived,
    ResponseFinished,
    ResponseItemAdded,
    ResponseStarted,
    TranscriptDelta,
)
from callbridge.engine.model_facts import FACTS


def content(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "response_id": "resp_1", "item_id": "item_1", "output_index": 0, "content_index": 0, **fields}


def test_each_model_event_is_followed_by_the_facts_it_states() -> None:
    d = Driver()
    d.start()
    d.server(SPEECH_STARTED)
    d.server({"type": "input_audio_buffer.speech_stopped", "item_id": "user_1", "audio_end_ms": 1200})
    d.server({"type": "input_audio_buffer.committed", "item_id": "user_1", "previous_item_id": None})
    transcription = {"item_id": "user_1", "content_index": 0}
    d.server({"type": "conversation.item.input_audio_transcription.delta", **transcription, "delta": "Hi"})
    d.server({"type": "conversation.item.input_audio_transcription.completed", **transcription, "transcript": "Hi"})
    error = {"type": "server_error", "code": "audio_unintelligible", "message": "could not transcribe"}
    d.server({"type": "conversation.item.input_audio_transcription.failed", **transcription, "error": error})
    d.server(response_created("resp_1", metadata={"callbridge": "greeting"}))
    d.server(message_item_added("item_1"))
    d.server(content("response.output_audio_transcript.delta", delta="Hello"))
    d.server(content("response.output_audio_transcript.done", transcript="Hello there"))
    failed = {"type": "failed", "error": {"type": "server_error", "code": "boom", "message": "the model failed"}}
    usage = {"input_tokens": 10, "output_tokens": 4, "output_token_details": {"text_tokens": 1, "audio_tokens": 3}}
    response = {"id": "resp_1", "status": "failed", "status_details": failed, "usage": usage}
    d.server({"type": "response.done", "response": response})

    facts = [e for e in d.events() if isinstance(e, FACTS)]
    assert [type(e) for e in facts] == [
        CallerSpeechDetected,
        CallerSpeechDetected,
        CallerAudioCommitted,
        TranscriptDelta,
        CallerSaid,
        CallerTranscriptionFailed,
        ResponseStarted,
        ResponseItemAdded,
        TranscriptDelta,
        AssistantSaid,
        ResponseFinished,
    ]
    assert (facts[0].started, facts[1].started, facts[1].audio_ms) == (True, False, 1200)
    assert (facts[3].role, facts[3].delta, facts[4].text, facts[5].error) == (
        "user",
        "Hi",
        "Hi",
        "could not transcribe",
    )
    assert (facts[6].response_id, facts[6].purpose) == ("resp_1", "greeting")
    assert (facts[7].item_id, facts[7].item_type, facts[7].role) == ("item_1", "message", "assistant")
    assert (facts[8].role, facts[8].delta, facts[8].response_id) == ("assistant", "Hello", "resp_1")
    assert (facts[9].text, facts[9].purpose) == ("Hello there", "greeting")
    finished = facts[10]
    assert (finished.status, finished.error, finished.purpose) == ("failed", "the model failed", "greeting")
    assert finished.tokens["output_audio"] == 3 and finished.tokens["output_text"] == 1

    # each fact right after its model event, at its time
    events = d.events()
    for fact in facts:
        before = events[events.index(fact) - 1]
        while isinstance(before, FACTS):
            before = events[events.index(before) - 1]
        assert isinstance(before, ModelEventReceived) and before.at == fact.at


def test_a_function_call_item_names_its_tool_and_call() -> None:
    d = Driver()
    d.start()
    d.server(response_created("resp_2"))
    item = {"id": "item_f", "type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": ""}
    d.server({"type": "response.output_item.added", "response_id": "resp_2", "output_index": 0, "item": item})
    [added] = d.events(ResponseItemAdded)
    assert (added.item_type, added.name, added.tool_call_id, added.response_id) == (
        "function_call",
        "get_weather",
        "call_1",
        "resp_2",
    )
    [started] = d.events(ResponseStarted)
    assert (started.response_id, started.purpose, started.out_of_band) == ("resp_2", "", False)
