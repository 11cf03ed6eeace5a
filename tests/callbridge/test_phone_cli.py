"""The command line for call control: ``callbridge call`` against a running server, and
``callbridge serve --agent FILE`` (or ``CALLBRIDGE_AGENT``) refusing a bad agent with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import trio
from phone_harness import OUR_NUMBER, of_type, phone_bridge
from serve_process import CLEAN_ENV, serve_process

from callbridge.adapters.sim.caller import WaitForAssistant
from callbridge.adapters.sim.fake_twilio_calls import Answer
from callbridge.engine.agent import Agent
from callbridge.engine.events import CallStarted, OutboundCallPlaced


async def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "callbridge", *args],
        env={**CLEAN_ENV, **env},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_callbridge_call_places_an_outbound_call_through_the_running_server(tmp_path: Path) -> None:
    person = "+15551230077"
    async with phone_bridge(tmp_path, agent=Agent(greeting="Hi from Acme.")) as phone:
        phone.twilio.calls.script_number(person, Answer(script=[WaitForAssistant(timeout_s=10)]))
        env = {"CALLBRIDGE_API_TOKEN": "test-token"}
        done = await run_cli("call", person, "--greeting", "Your order is ready.", "--url", phone.base_url, env=env)
        assert done.returncode == 0, done.stderr
        (call_id,) = phone.twilio.calls.calls
        assert done.stdout.decode() == f"calling {person} from {OUR_NUMBER}: call {call_id} queued\n"
        with trio.fail_after(30):
            await phone.twilio.calls.calls[call_id].done.wait()
        placed = of_type(await phone.events(call_id), OutboundCallPlaced)
        assert [(p.to_number, p.greeting) for p in placed] == [(person, "Your order is ready.")]

        refused = await run_cli("call", "12345", "--url", phone.base_url, env=env)
        assert refused.returncode == 1
        assert "HTTP 400" in refused.stderr.decode() and "'to'" in refused.stderr.decode()

        no_token = await run_cli(
            "call", person, "--url", phone.base_url, "--store", str(tmp_path / "none" / "x.db"), env={}
        )
        assert no_token.returncode == 2 and "CALLBRIDGE_API_TOKEN" in no_token.stderr.decode()
    assert len(phone.twilio.calls.calls) == 1


async def test_callbridge_call_from_calls_out_from_the_number_given(tmp_path: Path) -> None:
    person, sales_line = "+15551230078", "+15005550002"
    async with phone_bridge(tmp_path, agent=Agent(greeting="Hi from Acme sales.")) as phone:
        phone.twilio.add_number(sales_line, friendly_name="Sales line")
        phone.twilio.calls.script_number(person, Answer(script=[WaitForAssistant(timeout_s=10)]))
        env = {"CALLBRIDGE_API_TOKEN": "test-token"}
        done = await run_cli("call", person, "--from", sales_line, "--url", phone.base_url, env=env)
        assert done.returncode == 0, done.stderr
        (call_id,) = phone.twilio.calls.calls
        call = phone.twilio.calls.calls[call_id]
        assert done.stdout.decode() == f"calling {person} from {sales_line}: call {call_id} queued\n"
        with trio.fail_after(30):
            await call.done.wait()
        events = await phone.events(call_id)

        refused = await run_cli("call", person, "--from", "sales", "--url", phone.base_url, env=env)
        assert refused.returncode == 1
        assert "HTTP 400" in refused.stderr.decode() and "'from'" in refused.stderr.decode()

    assert call.from_ == sales_line and call.to == person  # what Twilio was asked to place
    assert [(p.from_number, p.to_number) for p in of_type(events, OutboundCallPlaced)] == [(sales_line, person)]
    assert of_type(events, CallStarted)[0].from_number == sales_line
    assert len(phone.twilio.calls.calls) == 1


async def test_serve_refuses_an_agent_file_with_an_unknown_key_in_one_line_naming_it(tmp_path: Path) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text('greeting = "Hello"\n\n[[transfer_targets]]\nlabel = "sales"\nto = "+15551234567"\nring = 3\n')
    async with serve_process(tmp_path, "--port", "0", "--agent", str(agent)) as served:
        with trio.fail_after(30):
            status = await served.process.wait()
            await served.ended.wait()
    assert status == 2
    assert served.lines == [f"callbridge: {agent}: unknown key 'transfer_targets[0].ring'"]

    agent.write_text('dtmf = "maybe"\n')
    async with serve_process(tmp_path, "--port", "0", env={"CALLBRIDGE_AGENT": str(agent)}) as served:
        with trio.fail_after(30):
            status = await served.process.wait()
            await served.ended.wait()
    assert status == 2 and len(served.lines) == 1 and "dtmf" in served.lines[0]
