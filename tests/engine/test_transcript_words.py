"""The core records a transcript's words one event per item and writer window (engine/transcript_words.py).

The model's delta events are still recorded verbatim, each as it comes; the ``TranscriptDelta``
facts beside them are held until the writer's next batch (``AudioFlushDue``) or until anything else
about the conversation is recorded, so no reader ever sees an item's words after what ends it.
"""

from __future__ import annotations

from typing import Any

from core_driver import Driver, message_item_added, response_created

from callbridge.engine.call_io import AudioFlushDue, CallTornDown
from callbridge.engine.events import (
    AssistantSaid,
    CallEnded,
    ModelEventReceived,
    ResponseFinished,
    TranscriptDelta,
)


def piece(text: str, item_id: str = "item_1") -> dict[str, Any]:
    return {
        "type": "response.output_audio_transcript.delta",
        "response_id": "resp_1",
        "item_id": item_id,
        "output_index": 0,
        "content_index": 0,
        "delta": text,
    }


def answering() -> Driver:
    d = Driver()
    d.start()
    d.server(response_created("resp_1"))
    d.server(message_item_added("item_1"))
    return d


def kinds(d: Driver) -> list[str]:
    return [
        e.type if isinstance(e, ModelEventReceived) else type(e).__name__
        for e in d.events()
        if isinstance(e, ModelEventReceived | TranscriptDelta | AssistantSaid | ResponseFinished | CallEnded)
    ]


def test_the_words_of_one_window_are_one_event_after_every_verbatim_piece() -> None:
    d = answering()
    started = d.now
    for text in ("We", " are", " open"):
        d.server(piece(text))
        d.now += 0.02
    assert d.events(TranscriptDelta) == []  # held until the window closes
    d.feed(AudioFlushDue())
    [words] = d.events(TranscriptDelta)
    assert (words.delta, words.item_id, words.role, words.response_id, words.at) == (
        "We are open",
        "item_1",
        "assistant",
        "resp_1",
        started,
    )
    deltas = [e for e in d.events(ModelEventReceived) if e.type.endswith("transcript.delta")]
    assert len(deltas) == 3  # the model's own events stay one per piece


def test_each_window_records_its_own_words() -> None:
    d = answering()
    d.server(piece("We"))
    d.feed(AudioFlushDue(), dt=0.1)
    d.feed(AudioFlushDue(), dt=0.1)  # nothing held: nothing recorded
    d.server(piece(" are"))
    d.server(piece(" open"))
    d.feed(AudioFlushDue(), dt=0.1)
    assert [e.delta for e in d.events(TranscriptDelta)] == ["We", " are open"]


def test_words_come_before_whatever_is_recorded_next_about_the_conversation() -> None:
    d = answering()
    d.server(piece("Open"))
    d.server(piece(" daily"))
    d.server({**piece(""), "type": "response.output_audio_transcript.done", "transcript": "Open daily"})
    assert kinds(d)[-5:] == [
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.delta",
        "TranscriptDelta",
        "response.output_audio_transcript.done",
        "AssistantSaid",
    ]


def test_items_speaking_in_one_window_keep_their_own_words() -> None:
    d = answering()
    d.server(piece("Yes", "item_1"))
    d.server(
        {
            "type": "conversation.item.input_audio_transcription.delta",
            "item_id": "user_1",
            "content_index": 0,
            "delta": "Hello",
        }
    )
    d.server(piece(" sure", "item_1"))
    d.feed(AudioFlushDue())
    assert [(e.item_id, e.role, e.delta) for e in d.events(TranscriptDelta)] == [
        ("item_1", "assistant", "Yes sure"),
        ("user_1", "user", "Hello"),
    ]


def test_the_words_held_when_the_call_ends_are_recorded_before_its_end() -> None:
    d = answering()
    d.server(piece("Good"))
    d.feed(CallTornDown(reason="caller_hangup"))
    assert kinds(d)[-2:] == ["TranscriptDelta", "CallEnded"]
