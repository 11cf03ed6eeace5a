"""The console's "ask_a_person (answered by hand)" template, end to end through the console's own
path: saved as a session tool with ``POST /api/session``, called by the model during a call, and
answered over the live feed exactly as the browser's answer form does (the function output, then
``response.create``). The model must get that answer, once, as the ``function_call_output``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import trio
from bridge_harness import Bridge, running_bridge
from test_console_api import BEARER
from test_live_feed import is_type, open_feed

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn

ASK_A_PERSON = {  # web/static/tools_editor.js HUMAN_TOOL_TEMPLATE, as the console saves it
    "type": "function",
    "name": "ask_a_person",
    "description": "Ask a human operator; they answer from the console.",
    "parameters": {
        "type": "object",
        "properties": {"question": {"type": "string", "description": "What to ask"}},
        "required": ["question"],
    },
}
ANSWER = "Yes, we open at nine on Sundays."


def function_call_outputs(bridge: Bridge) -> list[str]:
    """Every ``function_call_output`` the simulated model was sent, in every session, in order."""
    items = [
        json.loads(event.raw)["item"]
        for session in bridge.fake.sessions
        for event in session.client_events
        if event.type == "conversation.item.create"
    ]
    return [item["output"] for item in items if item["type"] == "function_call_output"]


async def test_a_session_tool_from_the_template_is_answered_by_hand_and_the_model_gets_the_answer(
    tmp_path: Path,
) -> None:
    script = Script(
        turns=[
            Turn(
                transcript="Are you open on Sunday?",
                function_call=FunctionCall(name="ask_a_person", arguments={"question": "Open on Sunday?"}),
                after_tool="The operator says: {output}",
            )
        ]
    )
    async with running_bridge(tmp_path, script=script) as bridge:  # the default registry: no ask_a_person
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            saved = await http.post("/api/session", json={"session": {"tools": [ASK_A_PERSON]}})
            assert saved.status_code == 200, saved.text
        with trio.fail_after(40):
            async with open_feed(bridge) as feed, trio.open_nursery() as nursery:

                async def call() -> None:
                    await place_call(bridge.base_url, script=[Speak(900), WaitForAssistant(timeout_s=20), HangUp()])

                nursery.start_soon(call)
                requested = await feed.until(is_type("callbridge.tool_call.requested"))
                call_id, tool_call_id = requested["call_id"], requested["tool_call_id"]
                item = {"type": "function_call_output", "call_id": tool_call_id, "output": ANSWER}
                await feed.send({"type": "conversation.item.create", "call_id": call_id, "item": item})
                await feed.send({"type": "response.create", "call_id": call_id})
                spoken = await feed.until(is_type("response.output_audio_transcript.done"))

    assert function_call_outputs(bridge) == [ANSWER]
    assert requested["handler"] == "human" and requested["name"] == "ask_a_person"
    assert spoken["transcript"] == f"The operator says: {ANSWER}"
