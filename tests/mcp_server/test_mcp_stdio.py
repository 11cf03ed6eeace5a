"""``callbridge mcp``: the MCP server as a subprocess over stdio, driven by the official client.

The subprocess shares only the event store with the test (as it would with ``callbridge serve``):
it must answer from the store, keep views of its own, and see calls stored after it started.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from mcp import Client, StdioServerParameters
from test_mcp_support import DAY, T0, TOOL_NAMES, call_ids, fill_store, structured, synthetic_calls, tool_error

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog


def mcp_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "callbridge", "mcp", *args]


async def test_callbridge_mcp_over_stdio_answers_from_the_shared_store_and_sees_new_calls_at_once(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    store_url = str(data_dir / "callbridge.db")
    fill_store(store_url, synthetic_calls())
    command, *args = mcp_command("--store", store_url)
    params = StdioServerParameters(command=command, args=args, cwd=str(tmp_path))
    with trio.fail_after(30):
        async with Client(params, mode="legacy") as client:  # the initialize handshake, as Claude Desktop does
            assert client.server_info is not None and client.server_info.name == "callbridge"
            assert {tool.name for tool in (await client.list_tools()).tools} == TOOL_NAMES
            assert await call_ids(client) == ["CAhello", "CAplumber", "CAweather"]
            weather = await structured(client, "get_conversation", {"call_id": "CAweather"})
            assert weather["items"][-1]["text"] == "It is eighteen degrees in Paris."
            assert "call_id: unknown call 'CAnope'" in await tool_error(
                client, "get_conversation", {"call_id": "CAnope"}
            )
            assert "since:" in await tool_error(client, "list_conversations", {"since": "last week"})

            # the server, another process, stores a call in progress: visible at the next question
            live = CallLog("CAlive", start_at=T0 + 3 * DAY).start().caller_says("Can you hear me?")
            writer = EventStore(store_url)
            try:
                writer.append(live.events)
            finally:
                writer.close()
            with trio.fail_after(1):
                listed = (await structured(client, "list_conversations", {"limit": 1}))["conversations"]
            assert (listed[0]["call_id"], listed[0]["status"]) == ("CAlive", "in_progress")
            (content,) = (await client.read_resource("conversation://CAlive")).contents
            assert "Can you hear me?" in getattr(content, "text", "")

    # its views are its own: the server's views.db was never created or written by it
    assert (data_dir / "views-mcp.db").exists()
    assert not (data_dir / "views.db").exists()


@pytest.mark.parametrize(
    ("store", "views", "status", "message"),
    [
        ("blocker/callbridge.db", None, 2, "callbridge mcp: cannot open the event store"),
        ("data/callbridge.db", "blocker/views.db", 1, "callbridge mcp: cannot use the views database"),
    ],
)
def test_callbridge_mcp_explains_a_store_or_views_file_it_cannot_use_and_exits(
    tmp_path: Path, store: str, views: str | None, status: int, message: str
) -> None:
    (tmp_path / "blocker").write_text("")  # a file where a folder should be
    if views:
        EventStore(str(tmp_path / store)).close()  # mcp only reads: the store must exist already
    args = ["--store", str(tmp_path / store)] + (["--views", str(tmp_path / views)] if views else [])
    done = subprocess.run(mcp_command(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert done.returncode == status
    assert done.stdout == ""  # stdout is the protocol's: never anything else
    assert message in done.stderr
