"""An agent file's model options and server tools through ``callbridge serve --agent FILE``: a good file
is the ``default`` profile the API answers, a bad value or a server tool the server does not have stops
``serve`` with one line naming the key (exit 2)."""

from __future__ import annotations

from pathlib import Path

import httpx2
import trio
from serve_process import START_S, TOKEN, serve, serve_process

AGENT = """
instructions = "You answer calls for Acme Plumbing."
model = "gpt-realtime-mini"
max_output_tokens = "inf"
noise_reduction = "far_field"
speed = 1
turn_detection = { type = "server_vad", threshold = 0.6, silence_duration_ms = 700 }
server_tools = []

[[tools]]
name = "ask_a_person"
description = "Ask a human operator."
"""


async def test_an_agent_files_model_options_are_the_default_profiles(tmp_path: Path) -> None:
    agent = tmp_path / "agent.toml"
    agent.write_text(AGENT)
    async with serve(str(tmp_path / "cb.db"), tmp_path, env={"CALLBRIDGE_AGENT": str(agent)}) as served:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx2.AsyncClient(base_url=served.base_url, headers=headers) as http:
            default = (await http.get("/api/agents/default")).json()
            tools = (await http.get("/tools")).json()

    assert (default["model"], default["max_output_tokens"], default["noise_reduction"]) == (
        "gpt-realtime-mini",
        "inf",
        "far_field",
    )
    assert default["speed"] == 1.0 and default["server_tools"] == []
    assert default["turn_detection"] == {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 700}
    assert [tool["name"] for tool in tools] == ["ask_a_person"]  # none of the server's own


async def test_serve_refuses_a_bad_model_option_or_a_server_tool_it_lacks_naming_the_key(tmp_path: Path) -> None:
    agent = tmp_path / "agent.toml"
    outputs: list[tuple[int, list[str]]] = []
    for text in ("speed = 3\n", 'turn_detection = { type = "server_vad", wait = 1 }\n', 'server_tools = ["nope"]\n'):
        agent.write_text(text)
        async with serve_process(tmp_path, "--port", "0", "--agent", str(agent)) as served:
            with trio.fail_after(START_S):  # a safety net, not a timing assumption
                outputs.append((await served.exit_status(), served.lines))

    assert [status for status, _ in outputs] == [2, 2, 2]
    assert [lines for _, lines in outputs] == [
        [f"callbridge: {agent}: speed: between 0.25 and 1.5 (1 is the voice's own pace)"],
        [f"callbridge: {agent}: unknown key 'turn_detection.wait'"],
        [f"callbridge: {agent}: server_tools[0]: 'nope' is not one of the server's tools (get_weather_from_coords)"],
    ]
