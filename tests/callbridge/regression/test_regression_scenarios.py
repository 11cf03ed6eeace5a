"""Scenario files through ``callbridge test``: a caller who talks, presses a key, talks over the
agent and hangs up, against the real engine and the simulated model scripted by the file; failing
assertions say what happened instead; files with bad syntax, unknown keys or bad values are refused
(exit 2) with one line naming the file, the line and the key, before any call is placed."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
from regression_support import write

from callbridge.cli import main
from callbridge.regression.spec import parse_spec

WEATHER = """\
name = "weather, a key, goodbye"
greeting = "Hi, this is the weather line."

[[caller]]
wait_for_reply = true
[[caller]]
say = "What's the weather at the office?"
tool = "get_weather_from_coords"
arguments = { latitude = 37.77, longitude = -122.42 }
after_tool = "It is {temperature_c} degrees."
[[caller]]
wait_for_reply = true
[[caller]]
press = "5"
reply = "You pressed five."
[[caller]]
wait_for_reply = true
[[caller]]
say = "Thanks, that's all"
tool = "end_call"
arguments = { reason = "done" }
[[caller]]
wait_for_hang_up = true

[expect]
tools = [{ name = "get_weather_from_coords", arguments = '"latitude":37\\.77' }, { name = "end_call" }]
tools_not_called = ["transfer_call"]
transcript_contains = ["^agent: Hi, this is the weather line", "It is \\\\d+ degrees", "pressed five"]
transcript_not_contains = ["(?i)sorry"]
ended_by = "agent"
max_barge_ins = 0
max_dead_air_s = 5
latency_p95_ms = 5000
"""

STORY = """\
[[caller]]
say = "Tell me a story"
reply = "Once upon a time, a small wooden boat sailed across a calm blue ocean, while the sailors sang."
[[caller]]
barge_in = "Stop, stop"
after_ms = 1500
reply = "Sure, I'll stop."
[[caller]]
wait_for_reply = true
[[caller]]
hang_up = true

[expect]
transcript_contains = ["agent: Sure, I'll stop"]
transcript_not_contains = ["(?i)goodbye"]
ended_by = "agent"
max_barge_ins = 0
"""
"""Fails on purpose: the caller hangs up, and it barges in once."""


def test_scenarios_run_at_once_in_worker_processes_and_report_each_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    write(tests / "weather.toml", WEATHER)
    write(tests / "story.toml", STORY)
    junit = tmp_path / "junit.xml"
    store = str(tmp_path / "data" / "callbridge.db")
    code = main(["test", str(tests), "--store", store, "--junit", str(junit), "--processes", "2"])
    out, _ = capsys.readouterr()

    assert code == 1
    progress = [line for line in out.splitlines() if line.startswith("[")]
    assert sorted(line[:5] for line in progress) == ["[1/2]", "[2/2]"]
    assert any("PASS weather, a key, goodbye" in line for line in progress)
    assert any("FAIL story" in line for line in progress)
    assert "NOT ended by agent: the caller hung up (CallEnded: caller_hangup)" in out
    assert "NOT at most 0 barge-ins: 1 barge-in(s)" in out
    assert "ok  transcript contains /agent: Sure, I'll stop/" in out
    assert "1 passed, 1 failed, 2 test(s)" in out
    suite = ET.parse(junit).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    # the run is kept for the console
    [kept] = (tmp_path / "data" / "test-runs").glob("*.json")
    record = json.loads(kept.read_text())
    weather = next(r for r in record["results"] if r["name"] == "weather, a key, goodbye")
    assert weather["passed"] and all(check["ok"] for check in weather["checks"])
    assert [turn["caller"] for turn in weather["diff"]["turns"]] == [
        "",
        "What's the weather at the office?",
        "[pressed 5]",
        "Thanks, that's all",
    ]
    assert weather["diff"]["turns"][1]["tools_now"] == [
        'get_weather_from_coords({"latitude":37.77,"longitude":-122.42})'
    ]


BAD_STUBS = [  # a scenario's [tools.NAME] stubs, which test_regression_tool_stubs.py runs
    ('[tools.lookup_order]\noutptu = "x"\n', "{path}:4: unknown key 'tools.lookup_order.outptu'"),
    (
        '[[tools.lookup_order]]\noutput = "x"\n[[tools.lookup_order]]\narguments = "("\nerror = "no"\n',
        "{path}:6: tools.lookup_order[1]: arguments: not a regular expression "
        "(missing ), unterminated subpattern at position 0)",
    ),
    (
        '[tools.lookup_order]\narguments = "1234"\n',
        "{path}:3: tools.lookup_order: output: a stub answers (output = …) or fails (error = …); one of them",
    ),
    (
        "[tools.lookup_order]\noutput = 5\n",
        "{path}:4: tools.lookup_order.output: Expected `str | object | array | null`, got `int`",
    ),
    (
        '[tools.end_call]\noutput = "bye"\n',
        "{path}:3: tools.end_call: end_call is the engine's own (a built-in); it cannot be stubbed",
    ),
]


BAD_FILES = [
    ('[[caller]]\nsay = "hello\n', "{path}:2: not valid TOML: Illegal character '\\n'"),
    ("[[caller]]\nhang_up = true\n[[caller]]\nsay = 'hi'\nrepyl = 'oops'\n", "{path}:5: unknown key 'caller[1].repyl'"),
    ("call = 'CA1'\n\n[expect]\nended_by = 'martian'\n", "{path}:4: expect.ended_by: Invalid enum value 'martian'"),
    (
        "call = 'CA1'\n[expect]\ntools = [{ name = 'x', arguments = '(' }]\n",
        "{path}:3: expect: tools[0]: arguments: not a regular expression "
        "(missing ), unterminated subpattern at position 0)",
    ),
    (
        "[[caller]]\nhang_up = true\n\n[[caller]]\nsay = 'hi'\npress = '1'\n",
        "{path}:4: caller[1]: each step does exactly one of say, pause_ms, wait_for_reply, press, barge_in, hang_up, "
        "wait_for_hang_up (this one: ['say', 'press'])",
    ),
    (
        "name = 'nothing to do'\n",
        "{path}:1: call: a test replays a recorded call (call = 'CA…') or plays [[caller]] steps; one",
    ),
    *[("[[caller]]\nhang_up = true\n" + stub, message) for stub, message in BAD_STUBS],
]


@pytest.mark.parametrize(("text", "message"), BAD_FILES)
def test_a_bad_test_file_is_one_line_naming_the_file_line_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    code = main(["test", str(path), "--store", str(tmp_path / "callbridge.db")])
    out, err = capsys.readouterr()

    assert code == 2 and out == ""
    assert err == f"callbridge test: {message.format(path=path)}\n"
    assert not (tmp_path / "test-runs").exists()  # nothing ran


def test_the_readmes_scenario_example_is_a_valid_test_file() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text()
    section = readme.split("## Regression tests", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    spec = parse_spec(example, "README.md")
    assert [step.heard for step in spec.caller if step.heard] == [
        "Where is my order 1234?",
        "[pressed 5]",
        "Wait, one more thing",
    ]
    assert spec.expect.max_dead_air_s == 3.0 and spec.expect.ended_by == "caller"


def test_a_junit_file_in_a_missing_folder_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = write(tmp_path / "hang_up.toml", "[[caller]]\nhang_up = true\n")
    junit = tmp_path / "missing" / "junit.xml"
    assert main(["test", str(scenario), "--junit", str(junit), "--store", str(tmp_path / "x.db")]) == 2
    assert capsys.readouterr().err == f"callbridge test: --junit {junit}: its folder does not exist\n"
