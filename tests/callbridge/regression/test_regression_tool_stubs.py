"""Tool stubbing in ``callbridge test``, through the CLI entry point, over real sockets, with the
agent's HTTP tool pointing at a local endpoint that counts its hits: a recorded call replayed never
calls the endpoint (its tool answers what it answered then, marked stubbed), unless ``--live-tools``
(also through worker processes); a model that asks for something the recording never answered gets
an error result and the run says so; a scenario's ``[tools.NAME]`` stubs answer (or fail) while its
other tools run for real. (A bad stub is a bad test file: ``test_regression_scenarios.BAD_STUBS``.)"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import httpx2
import pytest
import trio
from bridge_harness import running_bridge
from regression_support import write
from webhook_endpoint import Endpoint, webhook_endpoint

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai import serve_fake_openai
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.cli import main
from callbridge.engine.agent import load_agent

PARAMETERS = '{ type = "object", properties = { order = { type = "string" } }, required = ["order"] }'


def agent_toml(url: str) -> str:
    """The agent: its lookup_order and book_table tools are the endpoint at ``url``."""
    return f"""\
greeting = "Acme orders, how can I help?"

[[tools]]
name = "lookup_order"
description = "Where an order is."
url = "{url}"
parameters = {PARAMETERS}

[[tools]]
name = "book_table"
description = "Book a table."
url = "{url}"
"""


LOOKUP = FunctionCall(name="lookup_order", arguments={"order": "1234"})
RECORDED_SCRIPT = Script(
    turns=[
        Turn(transcript="Where is order 1234?", function_call=LOOKUP, after_tool="It is {status}."),
        Turn(transcript="Thanks, bye", reply="Goodbye!"),
    ]
)
CALLER: list[Step] = [
    WaitForAssistant(timeout_s=10),
    Speak(900),
    WaitForAssistant(timeout_s=10),
    Silence(300),
    Speak(800),
    WaitForAssistant(timeout_s=10),
    HangUp(),
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A call whose model asked lookup_order about order 1234; the endpoint answered "shipped"."""
    folder = tmp_path_factory.mktemp("recorded")

    async def run() -> str:
        async with webhook_endpoint(answer_body=b'{"status": "shipped"}') as endpoint:
            agent = load_agent(write(folder / "agent.toml", agent_toml(endpoint.url)))
            async with running_bridge(folder, script=RECORDED_SCRIPT, agent=agent) as bridge:
                with trio.fail_after(40):
                    report = await place_call(bridge.base_url, script=CALLER)
                    await bridge.wait_call_ended(report.call_sid)
            assert report.errors == [], report.errors
            assert [r.message["tool"] for r in endpoint.received] == ["lookup_order"]
            return report.call_sid

    return folder, trio.run(run)


async def cli(argv: Sequence[str]) -> int:
    """``callbridge test …`` as typed (it runs its own trio loop: in a thread, beside the endpoint)."""
    return await trio.to_thread.run_sync(main, list(argv))


def today_agent(folder: Path, endpoint: Endpoint) -> Path:
    return write(folder / "today.toml", agent_toml(endpoint.url))


async def test_a_recorded_calls_tools_answer_from_the_recording_and_only_live_tools_calls_the_endpoint(
    recorded: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, call_id = recorded
    store = str(folder / "callbridge.db")
    async with webhook_endpoint(answer_body=b'{"status": "lost"}') as endpoint:
        agent = today_agent(tmp_path, endpoint)
        stubbed = await cli(["test", call_id, "--store", store, "--agent", str(agent), "--json"])
        out, err = capsys.readouterr()
        hits_when_stubbed = len(endpoint.received)

        test_file = write(
            tmp_path / "lookup.toml", f'call = "{call_id}"\n\n[expect]\ntools = [{{ name = "lookup_order" }}]\n'
        )
        argv = ["test", call_id, str(test_file), "--store", store, "--agent", str(agent), "--live-tools"]
        live = await cli([*argv, "--processes", "2", "--json"])  # through worker processes
        live_out, live_err = capsys.readouterr()

    assert stubbed == 0, out + err
    assert hits_when_stubbed == 0
    [result] = json.loads(out)["results"]
    assert result["passed"] and result["notes"] == []
    turns = result["diff"]["turns"]
    assert turns[1]["tools_now"] == turns[1]["tools_then"] == ['lookup_order({"order":"1234"})']
    assert turns[1]["tools_now_stubbed"] == [True] and all(turn["changed"] == [] for turn in turns)

    assert live == 0, live_out + live_err
    assert [r.message["tool"] for r in endpoint.received] == ["lookup_order", "lookup_order"]
    assert [r.message["arguments"] for r in endpoint.received] == [{"order": "1234"}] * 2
    results = json.loads(live_out)["results"]
    assert [r["passed"] for r in results] == [True, True]
    assert [r["diff"]["turns"][1]["tools_now_stubbed"] for r in results] == [[False], [False]]


async def test_a_model_answering_afresh_gets_the_recorded_output_and_an_error_for_what_was_never_recorded(
    recorded: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``OPENAI_API_KEY`` the model answers on its own (here a simulated one with its own script,
    whose words after a tool say the tool's output): it hears the recorded output, and a lookup the
    recorded call never made gets an error result, with a note."""
    folder, call_id = recorded
    fresh = Script(
        turns=[
            Turn(transcript="Where is order 1234?", function_call=LOOKUP, after_tool="It is {status}."),
            Turn(
                transcript="Thanks, bye",
                function_call=FunctionCall(name="lookup_order", arguments={"order": "9999"}),
                after_tool="Order 9999 is {status}.",
                after_tool_error="That lookup failed.",
            ),
        ]
    )
    test_file = write(
        tmp_path / "fresh.toml",
        f'call = "{call_id}"\n\n[expect]\n'
        'transcript_contains = ["agent: It is shipped", "agent: That lookup failed"]\n',
    )
    async with trio.open_nursery() as nursery, webhook_endpoint(answer_body=b'{"status": "lost"}') as endpoint:
        fake = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0, script=fresh, api_key="sk-test-key"))
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
        monkeypatch.setenv("OPENAI_REALTIME_URL", fake.url)
        agent = today_agent(tmp_path, endpoint)
        code = await cli(["test", str(test_file), "--store", str(folder / "callbridge.db"), "--agent", str(agent)])
        nursery.cancel_scope.cancel()
    out, err = capsys.readouterr()

    assert code == 0, out + err
    assert endpoint.received == []
    assert "ok  transcript contains /agent: It is shipped/" in out
    assert (
        'note: tool lookup_order was called with {"order":"9999"}, and the recorded call '
        f"{call_id} has no answer for it (its 1 answer(s) of lookup_order were used up): it got an error result; "
        "--live-tools runs the tools for real"
    ) in out
    assert 'tool: lookup_order({"order":"9999"})  [stub]' in out


SCENARIO = """\
name = "stubbed lookups, a real booking"
agent = "agent.toml"

[[caller]]
wait_for_reply = true
[[caller]]
say = "Where is order 1234?"
tool = "lookup_order"
arguments = { order = "1234" }
after_tool = "It is {status}."
[[caller]]
wait_for_reply = true
[[caller]]
say = "And order 9?"
tool = "lookup_order"
arguments = { order = "9" }
after_tool = "Order 9 is {status}."
[[caller]]
wait_for_reply = true
[[caller]]
say = "Book me a table"
tool = "book_table"
arguments = { guests = 2 }
after_tool = "Booked: {booked}."
[[caller]]
wait_for_reply = true
[[caller]]
hang_up = true

[expect]
transcript_contains = ["agent: It is shipped", "agent: Sorry, I couldn't look that up", "agent: Booked: yes"]

[[tools.lookup_order]]
arguments = '"order":"9"'
error = "no such order"
[[tools.lookup_order]]
output = { status = "shipped" }
"""


async def test_a_scenarios_stubs_answer_and_fail_as_written_and_its_other_tools_run_for_real(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with webhook_endpoint(answer_body=b'{"booked": "yes"}') as endpoint:
        write(tmp_path / "agent.toml", agent_toml(endpoint.url))
        scenario = write(tmp_path / "scenario.toml", SCENARIO)
        code = await cli(["test", str(scenario), "--store", str(tmp_path / "data" / "callbridge.db"), "--json"])
    out, err = capsys.readouterr()

    assert code == 0, out + err
    assert [r.message["tool"] for r in endpoint.received] == ["book_table"]  # the stubbed lookups never went out
    [result] = json.loads(out)["results"]
    assert result["passed"]
    tools = [(turn["tools_now"], turn["tools_now_stubbed"]) for turn in result["diff"]["turns"] if turn["tools_now"]]
    assert tools == [
        (['lookup_order({"order":"1234"})'], [True]),
        (['lookup_order({"order":"9"})'], [True]),
        (['book_table({"guests":2})'], [False]),
    ]


async def test_a_rerun_with_stubbed_tools_needs_no_secret_but_live_tools_do(
    recorded: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI reruns recorded calls against a changed prompt with no production secrets: a tool answered
    from the recording never signs a request, so its unset ``secret_env`` is no error; with
    ``--live-tools`` it would sign one, so the run stops at once naming the variable."""
    folder, call_id = recorded
    store = str(folder / "callbridge.db")
    monkeypatch.delenv("ACME_TOOLS_SECRET", raising=False)
    async with webhook_endpoint(answer_body=b'{"status": "lost"}') as endpoint:
        toml = agent_toml(endpoint.url).replace("url = ", 'secret_env = "ACME_TOOLS_SECRET"\nurl = ')
        agent = write(tmp_path / "signed.toml", toml)
        stubbed = await cli(["test", call_id, "--store", store, "--agent", str(agent), "--json"])
        out, err = capsys.readouterr()
        live = await cli(["test", call_id, "--store", store, "--agent", str(agent), "--live-tools"])
        live_out, live_err = capsys.readouterr()

    assert stubbed == 0, out + err
    [result] = json.loads(out)["results"]
    assert result["passed"], result
    assert len(endpoint.received) == 0
    assert live == 2, live_out + live_err
    assert "ACME_TOOLS_SECRET" in live_err


ASK_A_PERSON = {  # a session tool, as the console saves it: a person answers it in a live call
    "type": "function",
    "name": "ask_a_person",
    "description": "Ask a human operator.",
    "parameters": {"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]},
}


async def test_a_session_tool_the_recording_never_called_gets_an_error_not_a_wait_for_an_operator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No operator watches a test run: a person's tool the model calls afresh is answered like any
    tool the recording has no answer for (an error result and a note), at once."""
    folder = tmp_path / "recorded"
    folder.mkdir()
    async with (
        running_bridge(folder, script=Script(turns=[Turn(transcript="Hello", reply="Hi there!")])) as bridge,
        httpx2.AsyncClient(base_url=bridge.base_url, headers={"Authorization": "Bearer test-token"}) as http,
    ):
        saved = await http.post("/api/session", json={"session": {"tools": [ASK_A_PERSON]}})
        assert saved.status_code == 200, saved.text
        with trio.fail_after(30):
            report = await place_call(bridge.base_url, script=[Speak(900), WaitForAssistant(timeout_s=10), HangUp()])
            await bridge.wait_call_ended(report.call_sid)
    fresh = Script(
        turns=[
            Turn(
                transcript="Hello",
                function_call=FunctionCall(name="ask_a_person", arguments={"question": "Who is calling?"}),
                after_tool="A person says {output}.",
                after_tool_error="Nobody could answer.",
            )
        ]
    )
    test_file = write(
        tmp_path / "asks.toml",
        f'call = "{report.call_sid}"\n\n[expect]\ntranscript_contains = ["agent: Nobody could answer."]\n',
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            fake = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0, script=fresh, api_key="sk-test-key"))
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
            monkeypatch.setenv("OPENAI_REALTIME_URL", fake.url)
            code = await cli(["test", str(test_file), "--store", str(folder / "callbridge.db")])
            nursery.cancel_scope.cancel()
    out, err = capsys.readouterr()

    assert code == 0, out + err
    assert "note: tool ask_a_person was called with" in out
