"""The function tools a call offers its model, and who answers each — pure, in one place.

A call's ``session.update`` (``engine/call_model.py``) lists the tools of its registry (the server's
own, then its agent's: HTTP tools and tools a person answers), then the built-ins its agent allows
(``end_call``, ``transfer_call`` with targets, ``send_dtmf``), then the session's tools: a session tool
with a name already listed replaces that schema (whoever answered it still does), another one is
answered by a person. The console's tools editor (``GET/POST /api/tools/offered``) shows the list this
module builds, so what it says is what the model gets.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from callbridge.engine.agent import Agent
from callbridge.engine.builtin_tools import builtin_schemas
from callbridge.engine.tools import ToolRegistry

Handler = Literal["builtin", "backend", "human"]
Source = Literal["built-in", "server", "agent", "session"]


def merged_tools(
    registry_schemas: Iterable[dict[str, Any]], builtins: Iterable[dict[str, Any]], session_tools: Any
) -> list[dict[str, Any]]:
    """The ``tools`` of a call's ``session.update``: the registry's, the built-ins, then the session's
    (one with a name already there replaces that schema in its place)."""
    tools = {tool["name"]: tool for tool in (*registry_schemas, *builtins)}
    for tool in session_tools or []:
        if isinstance(tool, dict) and tool.get("name"):
            tools[tool["name"]] = tool
    return list(tools.values())


def handler_of(name: str, *, builtin_names: Iterable[str], backend_names: Iterable[str]) -> Handler:
    """Who answers a call of tool ``name``: the call core (a built-in), a backend, or a person."""
    if name in builtin_names:
        return "builtin"
    return "backend" if name in backend_names else "human"


def offered_tools(registry: ToolRegistry, agent: Agent, session_tools: Any) -> list[dict[str, Any]]:
    """What a call answered by ``agent`` (its tools in ``registry``) with ``session_tools`` offers its
    model: each schema as sent, with ``handler`` (who answers it), ``source`` (where it comes from) and
    ``schema_from_session`` (a session tool replaced its schema)."""
    builtins = builtin_schemas(agent)
    builtin_names = {tool["name"] for tool in builtins}
    backend_names = registry.backend_names()
    own = {tool.name for tool in agent.tools}
    replaced = {tool.get("name") for tool in session_tools or [] if isinstance(tool, dict)}
    offered = []
    for tool in merged_tools(registry.schemas(), builtins, session_tools):
        name = tool["name"]
        source: Source = (
            "built-in"
            if name in builtin_names
            else "agent"
            if name in own
            else "server"
            if registry.get(name) is not None
            else "session"
        )
        offered.append(
            {
                **tool,
                "handler": handler_of(name, builtin_names=builtin_names, backend_names=backend_names),
                "source": source,
                "schema_from_session": source != "session" and name in replaced,
            }
        )
    return offered
