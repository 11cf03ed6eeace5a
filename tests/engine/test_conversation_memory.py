"""What a re-seeded model session is told (engine/conversation.py), folded from a call's events."""

import json

from callbridge.engine.conversation import ConversationMemory
from callbridge.engine.events import ModelEventReceived
from callbridge.engine.synthetic import CallLog


def memory_of(log: CallLog) -> ConversationMemory:
    memory = ConversationMemory()
    for event in log.events:
        memory.apply(event)
    return memory


def test_seed_items_retell_the_conversation_in_order() -> None:
    log = CallLog().start().caller_says("Weather at the office?")
    log.tool_call("get_weather_from_coords", {"latitude": 1, "longitude": 2}, {"temperature_c": 20})
    log.assistant_says("It is twenty degrees.").end()
    seeds = memory_of(log).seed_items()
    assert [(s["type"], s.get("role")) for s in seeds] == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
    ]
    assert seeds[0]["content"] == [{"type": "input_text", "text": "Weather at the office?"}]
    assert seeds[1]["call_id"] == seeds[2]["call_id"] and json.loads(seeds[2]["output"]) == {"temperature_c": 20}
    assert seeds[3]["content"][0] == {"type": "output_text", "text": "It is twenty degrees."}


def test_an_interrupted_reply_is_remembered_only_as_far_as_it_was_heard() -> None:
    log = CallLog().start().caller_says("Tell me a story")
    log.assistant_says("Once upon a time there was a boat on the sea", ms=4000, interrupted_at_ms=1000)
    assistant = memory_of(log).seed_items()[-1]
    text = assistant["content"][0]["text"]
    assert text.endswith("—") and len(text) < len("Once upon a time there was a boat on the sea") / 2


def test_the_items_a_reseed_creates_are_not_remembered_twice() -> None:
    memory = memory_of(CallLog().start().caller_says("Hi").assistant_says("Hello"))
    before = memory.seed_items()
    for index, item in enumerate(before):  # the new session echoes each seeded item under a new id
        echoed = {"type": "conversation.item.done", "item": {**item, "id": f"new{index}"}}
        memory.apply(ModelEventReceived(call_id="CA", at=0.0, type=echoed["type"], raw=json.dumps(echoed)))
    assert memory.seed_items() == before
