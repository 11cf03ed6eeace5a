"""Which answer a rerun's tool call gets: the recorded call's answers picked by name and arguments
(then in order), recorded failures failing again, a call with no counterpart a miss that says so,
the test file's stubs first; built-ins never answered here."""

from __future__ import annotations

import json

from callbridge.engine.events import ToolCallCompleted, ToolCallFailed, ToolCallRequested
from callbridge.regression.stub_spec import ToolStub
from callbridge.regression.tool_answers import Answer, Miss, ToolAnswers, ToolStubs, recorded_answers


def requested(
    tool_call_id: str, name: str, arguments: dict[str, object], handler: str = "backend"
) -> ToolCallRequested:
    return ToolCallRequested(
        call_id="CA1", at=1.0, tool_call_id=tool_call_id, name=name, arguments=json.dumps(arguments), handler=handler
    )


def completed(tool_call_id: str, name: str, output: str) -> ToolCallCompleted:
    return ToolCallCompleted(call_id="CA1", at=2.0, tool_call_id=tool_call_id, name=name, output=output, duration_ms=5)


EVENTS = [
    requested("t1", "lookup", {"order": "1"}),
    requested("t2", "lookup", {"order": "2"}),
    completed("t2", "lookup", '{"status":"lost"}'),  # answered first, asked second
    completed("t1", "lookup", '{"status":"shipped"}'),
    requested("t3", "book", {"guests": 4}),
    ToolCallFailed(
        call_id="CA1",
        at=3.0,
        tool_call_id="t3",
        name="book",
        error="fully booked",
        output='{"error":"x"}',
        duration_ms=1,
    ),
    requested("t4", "end_call", {"reason": "done"}, handler="builtin"),
    requested("t5", "slow", {}),  # the call ended before it answered
]


def test_recorded_answers_are_each_tools_answered_calls_in_the_order_asked() -> None:
    answers = recorded_answers(EVENTS)

    assert list(answers) == ["lookup", "book"]
    assert [(a.arguments, a.output) for a in answers["lookup"]] == [
        ('{"order": "1"}', '{"status":"shipped"}'),
        ('{"order": "2"}', '{"status":"lost"}'),
    ]
    assert answers["book"][0].error == "fully booked"


def test_the_same_arguments_answer_first_then_the_next_unused_then_the_same_again_else_a_miss() -> None:
    answers = ToolAnswers(ToolStubs(recorded=recorded_answers(EVENTS), call_id="CA1"))

    assert answers.answer("lookup", {"order": "2"}) == Answer('{"status":"lost"}')
    assert answers.answer("lookup", {"order": "9"}) == Answer('{"status":"shipped"}')  # the next unused
    assert answers.answer("lookup", {"order": "2"}) == Answer('{"status":"lost"}')  # asked again: same answer
    missed = answers.answer("lookup", {"order": "9"})
    assert isinstance(missed, Miss)
    assert "no recorded answer for lookup" in missed.message
    assert missed.note.startswith('tool lookup was called with {"order":"9"}, and the recorded call CA1 has no answer')
    assert "used up" in missed.note and "--live-tools" in missed.note
    assert answers.answer("book", {"guests": 4}) == Answer('{"error":"x"}', "fully booked")
    never = answers.answer("weather", {})
    assert isinstance(never, Miss) and "it never called weather" in never.note


def test_the_test_files_stubs_answer_first_by_arguments_and_builtins_are_never_stubbed() -> None:
    given = {
        "lookup": (ToolStub(arguments='"order":"9"', error="no such order"), ToolStub(output={"status": "here"})),
        "greet": (ToolStub(arguments="nobody", output="hi"),),
    }
    stubs = ToolStubs(given=given, recorded=recorded_answers(EVENTS), call_id="CA1")
    answers = ToolAnswers(stubs)

    assert answers.answer("lookup", {"order": "9"}) == Answer("", "no such order")
    assert answers.answer("lookup", {"order": "1"}) == Answer('{"status": "here"}')
    unmatched = answers.answer("greet", {"name": "Ann"})
    assert isinstance(unmatched, Miss) and "none of its [tools.greet] stubs matches" in unmatched.note
    assert stubs.stubs("book") and not stubs.stubs("end_call") and stubs.names() == {"lookup", "greet", "book"}
    scenario = ToolStubs(given=given)
    assert scenario.stubs("lookup") and not scenario.stubs("book")  # a scenario's unlisted tools run
