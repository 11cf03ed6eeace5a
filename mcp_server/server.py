"""The callbridge MCP server: phone calls and their conversations, for AI assistants.

One :class:`CallbridgeMCP` serves both transports: ``callbridge mcp`` runs it over stdio
(:mod:`mcp_server.stdio`), ``callbridge serve`` mounts it at ``/mcp`` over streamable HTTP
(:mod:`mcp_server.http`). What differs is only where the data comes from (:mod:`mcp_server.data`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from mcp.server.mcpserver import MCPServer
from mcp_types import Resource as MCPResource

from callbridge.mcp_server.data import CallData
from callbridge.mcp_server.resources import RECENT_RESOURCES, register_resources, resource_for
from callbridge.mcp_server.tools import register_tools
from callbridge.projections.conversations_query import list_conversations

INSTRUCTIONS = (
    "callbridge answers phone calls with a voice assistant and records everything. These tools read "
    "those records (never change them): list_conversations to find calls (by number or date), "
    "get_conversation for a call's transcript and tool calls, search_conversations for words said in "
    "any call, get_call_timeline for a readable account of one call (who said what when, tools, "
    "barge-ins, errors), get_call_events for its raw event log a page at a time, get_call_metrics for "
    "latency, barge-ins, tokens and cost. Calls in progress are included. Call ids are Twilio CallSids (CA...)."
)


def _version() -> str:
    try:
        return version("callbridge")
    except PackageNotFoundError:
        return "0"


class CallbridgeMCP(MCPServer):
    """The MCP server over ``data``: read-only tools, conversation resources, a summary prompt."""

    def __init__(self, data: CallData) -> None:
        # log_level: MCPServer calls logging.basicConfig; WARNING keeps it from turning on INFO
        # logging of every HTTP request where the program has not configured logging itself.
        super().__init__(name="callbridge", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING")
        self.data = data
        register_tools(self, data)
        register_resources(self, data)

    async def list_resources(self) -> list[MCPResource]:
        """The registered resources plus ``conversation://{call_id}`` for the most recent calls."""
        listed = await super().list_resources()
        recent = await self.data.views(lambda db: list_conversations(db, limit=RECENT_RESOURCES))
        return listed + [resource_for(summary) for summary in recent]
