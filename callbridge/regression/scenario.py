"""A scenario file as a test: its ``[[caller]]`` steps as the simulated caller's script, and what the
simulated model hears and answers in each turn (every ``say``, ``barge_in`` and ``press`` is one)."""

from __future__ import annotations

import base64

import msgspec

from callbridge.adapters.sim.caller_script import (
    BargeIn,
    Dtmf,
    HangUp,
    Play,
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForHangUp,
)
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.adapters.sim.voice import FRAME_MS, silence
from callbridge.engine.agent import Agent
from callbridge.regression.spec import CallerStep, TestSpec

KEY_PRESSED = base64.b64encode(silence(FRAME_MS)).decode()
"""After a key press, one quiet frame marked as the caller's turn: a following ``wait_for_reply``
waits for the answer to the key (not a reply already heard), and reply latency counts from it."""
MS_PER_LETTER = 70
SHORTEST_SAY_MS = 600


def spoken_ms(step: CallerStep, words: str) -> int:
    return step.ms if step.ms is not None else max(SHORTEST_SAY_MS, MS_PER_LETTER * len(words))


def scenario_caller(spec: TestSpec) -> list[Step]:
    steps: list[Step] = []
    for step in spec.caller:
        if step.say is not None:
            steps.append(Speak(spoken_ms(step, step.say)))
        elif step.barge_in is not None:
            steps.append(
                BargeIn(after_ms=step.after_ms, speak_ms=spoken_ms(step, step.barge_in), timeout_s=step.timeout_s)
            )
        elif step.pause_ms is not None:
            steps.append(Silence(step.pause_ms))
        elif step.wait_for_reply:
            steps.append(WaitForAssistant(timeout_s=step.timeout_s))
        elif step.press is not None:
            steps += [Dtmf(step.press), Play(frames=[KEY_PRESSED], speech=True)]
        elif step.wait_for_hang_up:
            steps.append(WaitForHangUp(timeout_s=step.timeout_s))
        elif step.hang_up:
            steps.append(HangUp())
            break
    return steps


def scenario_script(spec: TestSpec) -> Script:
    turns: list[Turn] = []
    for step in spec.caller:
        heard = step.heard
        if heard is None:
            continue
        if step.tool is not None:
            call = FunctionCall(name=step.tool, arguments=step.arguments)
            extra = {"after_tool": step.after_tool} if step.after_tool is not None else {}
            turns.append(Turn(transcript=heard, function_call=call, **extra))
        else:
            turns.append(Turn(transcript=heard, reply=step.reply or "Okay."))
    return Script(turns=turns)


def scenario_agent(spec: TestSpec, agent: Agent) -> Agent:
    """The agent, greeting with the scenario's ``greeting`` when it has one."""
    return msgspec.structs.replace(agent, greeting=spec.greeting) if spec.greeting else agent
