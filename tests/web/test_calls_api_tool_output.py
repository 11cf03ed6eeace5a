"""``POST /api/calls/{call_id}/tool-output``: a program answers a tool call by hand over plain HTTP,
the same way the console's answer form does over the live feed. The model must get that answer once,
as the ``function_call_output``, and reply with it; wrong requests are refused, saying why."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx2
import trio
from bridge_harness import Bridge, running_bridge
from test_console_api import BEARER
from test_console_hand_tools import ASK_A_PERSON, function_call_outputs
from test_live_feed import is_type, open_feed

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import ModelEventReceived, ToolCallRequested

ANSWER = {"open": True, "hours": "9-17"}
SCRIPT = Script(
    turns=[
        Turn(
            transcript="Are you open on Sunday?",
            function_call=FunctionCall(name="ask_a_person", arguments={"question": "Open on Sunday?"}),
            after_tool="The operator says: {output}",
        )
    ]
)
"""The model asks a person, then says what the person answered."""
CALLER: list[Step] = [Speak(900), WaitForAssistant(timeout_s=20), HangUp()]


@asynccontextmanager
async def bridge_asking_a_person(tmp_path: Path) -> AsyncIterator[tuple[Bridge, httpx2.AsyncClient]]:
    """A bridge whose default session offers ``ask_a_person``, and an API client for it."""
    async with (
        running_bridge(tmp_path, script=SCRIPT) as bridge,
        httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http,
    ):
        saved = await http.post("/api/session", json={"session": {"tools": [ASK_A_PERSON]}})
        assert saved.status_code == 200, saved.text
        yield bridge, http


async def test_a_tool_call_answered_over_http_reaches_the_model_which_replies_with_it(tmp_path: Path) -> None:
    async with bridge_asking_a_person(tmp_path) as (bridge, http):
        with trio.fail_after(40):
            async with open_feed(bridge) as feed, trio.open_nursery() as nursery:
                nursery.start_soon(partial(place_call, bridge.base_url, script=CALLER))
                requested = await feed.until(is_type("callbridge.tool_call.requested"))
                call_id, tool_call_id = requested["call_id"], requested["tool_call_id"]
                path = f"/api/calls/{call_id}/tool-output"

                refused = {
                    "not an object": await http.post(path, json=[tool_call_id]),
                    "no output": await http.post(path, json={"tool_call_id": tool_call_id}),
                    "not pending": await http.post(path, json={"tool_call_id": "call_nope", "output": "x"}),
                    "no such call": await http.post(
                        "/api/calls/CAnope/tool-output", json={"tool_call_id": tool_call_id, "output": "x"}
                    ),
                }
                answered = await http.post(path, json={"tool_call_id": tool_call_id, "output": ANSWER})
                spoken = await feed.until(is_type("response.output_audio_transcript.done"))
                again = await http.post(path, json={"tool_call_id": tool_call_id, "output": "late"})

    assert {why: r.status_code for why, r in refused.items()} == {
        "not an object": 400,
        "no output": 400,
        "not pending": 404,
        "no such call": 404,
    }
    assert "call_nope" in refused["not pending"].json()["error"]
    assert answered.status_code == 202, answered.text
    assert answered.json() == {"call_id": call_id, "tool_call_id": tool_call_id, "accepted": "tool_output"}
    assert again.status_code == 404  # answered once: no longer pending
    text = json.dumps(ANSWER, separators=(",", ":"))
    assert function_call_outputs(bridge) == [text]
    assert spoken["transcript"] == f"The operator says: {text}"


async def test_with_no_browser_watching_a_program_still_answers_over_http(tmp_path: Path) -> None:
    """The live feed reads only what it must know while nobody listens: the pending tool call is
    among it, so the endpoint finds it without a console open."""
    async with bridge_asking_a_person(tmp_path) as (bridge, http):
        writer = bridge.server.writer
        with trio.fail_after(40):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(place_call, bridge.base_url, script=CALLER))
                await writer.wait_appended(await writer.flush(), names=["ToolCallRequested"])
                (call_id,) = bridge.server.live.calls
                requested = [e for e in await bridge.events(call_id) if isinstance(e, ToolCallRequested)]
                assert bridge.server.feed.subscriber_count == 0
                answered = await http.post(
                    f"/api/calls/{call_id}/tool-output",
                    json={"tool_call_id": requested[0].tool_call_id, "output": ANSWER},
                )
            await bridge.wait_call_ended(call_id)

    assert answered.status_code == 202, answered.text
    assert function_call_outputs(bridge) == [json.dumps(ANSWER, separators=(",", ":"))]
    spoken = [e for e in await bridge.events(call_id) if isinstance(e, ModelEventReceived)]
    assert any("The operator says:" in e.raw for e in spoken)
