"""The golden call-control logs (``engine/synthetic_call_control.py``) are what the engine really
records: for each scenario — a greeting and the agent's goodbye heard before its hang-up, a cold
transfer, keys pressed by the caller and by the agent, a silent caller re-prompted then hung up on,
the duration limit, a session recycle — the real engine runs it over real sockets (the simulated
caller, model and Twilio) and its call-control events must be the builder's, type by type, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import trio
from phone_harness import phone_bridge

from callbridge.adapters.sim.caller import Dtmf, Murmur, Speak, Step, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine import synthetic_call_control as golden
from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.events import Event
from callbridge.engine.synthetic import CallLog

GREETING = "Hello, Acme Plumbing."
SALES = TransferTarget(label="sales", to="+15557654321")


def calls(name: str, **arguments: Any) -> Script:
    return Script(turns=[Turn(transcript="Please.", function_call=FunctionCall(name=name, arguments=arguments))])


def recycling() -> Agent:
    agent = Agent(greeting=GREETING)
    msgspec.structs.force_setattr(agent, "session_recycle_s", 3.0)  # far below the 60 s a file may set
    return agent


ASK_THEN_WAIT: list[Step] = [WaitForAssistant(timeout_s=10), Speak(800), WaitForHangUp(timeout_s=20)]

SCENARIOS: dict[str, tuple[Agent, Script | None, list[Step], Callable[[CallLog], CallLog]]] = {
    "end_call heard": (
        Agent(greeting=GREETING),
        calls("end_call", reason="done"),
        ASK_THEN_WAIT,
        lambda log: golden.hung_up_by_the_agent(golden.greeted(log, GREETING).caller_says("Please."), "done"),
    ),
    "cold transfer": (
        Agent(greeting=GREETING, transfer_targets=[SALES]),
        calls("transfer_call", target="sales", reason="boiler"),
        ASK_THEN_WAIT,
        lambda log: golden.transferred(golden.greeted(log, GREETING).caller_says("Please."), "sales", SALES.to),
    ),
    "keys in": (
        Agent(greeting=GREETING, dtmf="model"),
        None,
        [WaitForAssistant(timeout_s=10), Dtmf("4"), WaitForAssistant(timeout_s=10)],
        lambda log: golden.caller_pressed(golden.greeted(log, GREETING), "4").end(),
    ),
    "keys out": (
        Agent(greeting=GREETING),
        calls("send_dtmf", digits="12#"),
        [WaitForAssistant(timeout_s=10), Speak(800), WaitForAssistant(timeout_s=10)],
        lambda log: golden.agent_pressed(golden.greeted(log, GREETING).caller_says("Please."), "12#").end(),
    ),
    "silence": (
        Agent(greeting=GREETING, silence_reprompt_s=2.0, silence_hangup_s=2.0),
        None,
        [WaitForHangUp(timeout_s=30)],
        lambda log: golden.silent_caller_hung_up_on(golden.greeted(log, GREETING)),
    ),
    "duration limit": (
        Agent(greeting=GREETING, max_duration_s=12, max_duration_warning_s=4),
        None,
        [WaitForHangUp(timeout_s=30)],
        lambda log: golden.duration_limit_reached(golden.greeted(log, GREETING), limit_s=12, warning_s=4),
    ),
    "recycle": (
        recycling(),
        None,
        [WaitForAssistant(timeout_s=10), Murmur(2000)],  # hung up ~1.5 s before a second recycle
        lambda log: golden.session_recycled(golden.greeted(log, GREETING)).end(),
    ),
}


def control_types(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events if type(e) in golden.CALL_CONTROL_TYPES]


async def real_run(tmp_path: Path, agent: Agent, script: Script | None, steps: list[Step]) -> list[Event]:
    async with phone_bridge(tmp_path, agent=agent, script=script) as phone:
        with trio.fail_after(45):
            call = await phone.twilio.calls.place_inbound(phone.base_url, script=steps)
            await phone.bridge.wait_call_ended(call.sid)
        assert call.report is not None and call.report.errors == [], call.report
        return await phone.events(call.sid)


async def test_each_golden_call_control_log_has_the_real_engines_events_in_its_order(tmp_path: Path) -> None:
    real: dict[str, list[str]] = {}

    async def run(name: str, agent: Agent, script: Script | None, steps: list[Step]) -> None:
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        real[name] = control_types(await real_run(folder, agent, script, steps))

    async with trio.open_nursery() as nursery:  # side by side: the longest sets the pace
        for name, (agent, script, steps, _) in SCENARIOS.items():
            nursery.start_soon(run, name, agent, script, steps)

    built = {name: control_types(build(CallLog(f"CA{index:032d}").start()).events)
             for index, (name, (*_, build)) in enumerate(SCENARIOS.items())}  # fmt: skip
    assert built == real
