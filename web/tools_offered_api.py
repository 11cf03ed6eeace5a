"""What the model of a call really gets as tools, over HTTP, behind the API token: the console's tools
editor shows this list, built by the code that builds a call's ``session.update``
(``engine/offered_tools.py``), so it cannot leave out a built-in or an agent's tool.

- ``GET /api/tools/offered`` — a call of the ``default`` agent with the saved default session;
- ``POST /api/tools/offered`` ``{"tools": [...], "call_id"?}`` — the same call if the default session's
  tools were these (the editor's text, before it is saved; nothing is saved); with ``call_id``, that
  call, answered by the agent version it recorded (404 for a call not started). A bad tool list: 400.

The answer: ``{"agent": NAME, "version": N, "tools": [{type, name, description, parameters,
handler: builtin|backend|human, source: built-in|server|agent|session, schema_from_session}]}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio
from quart import Blueprint, Response

from callbridge.adapters.openai.session import SessionConfigError, normalize_session_config
from callbridge.engine.agent import DEFAULT_PROFILE
from callbridge.engine.events import CallStarted
from callbridge.engine.offered_tools import offered_tools
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import require_token
from callbridge.web.console_api import json_object

if TYPE_CHECKING:
    from callbridge.server import Server


def tools_offered_blueprint(server: Server) -> Blueprint:
    api = Blueprint("tools_offered", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))

    def answer(session_tools: Any) -> Response:
        current = server.agents.book.current(DEFAULT_PROFILE)
        tools = offered_tools(server.agent_registry, server.agent, session_tools)
        return json_response({"agent": DEFAULT_PROFILE, "version": current.version if current else 0, "tools": tools})

    def call_answer(call_id: str, session_tools: Any) -> Response | None:
        """Blocking (reads the log): the tools of call ``call_id``, or None when it has not started."""
        started = next((r.event for r in server.store.read_call(call_id) if isinstance(r.event, CallStarted)), None)
        if started is None:
            return None
        name, version = started.agent_name or DEFAULT_PROFILE, started.agent_version
        agent = server.agents.agent_at(name, version) if version else None
        if agent is None:  # recorded before profiles, or unreadable here: the default answered it
            name, agent = DEFAULT_PROFILE, server.agent
            current = server.agents.book.current(DEFAULT_PROFILE)
            version = current.version if current else 0
        registry = server.agents.registry_for(name, version, agent)
        tools = offered_tools(registry, agent, session_tools)
        return json_response({"agent": name, "version": version, "call_id": call_id, "tools": tools})

    @api.get("/api/tools/offered")
    async def saved() -> Response:
        return answer(server.default_session.get("tools"))

    @api.post("/api/tools/offered")
    async def proposed() -> Response:
        body = await json_object()
        if body is None or set(body) - {"tools", "call_id"} or "tools" not in body:
            return error_response(400, 'the request body must be {"tools": [function tools], "call_id"?}')
        try:
            tools = normalize_session_config({"tools": body["tools"]})["tools"]
        except SessionConfigError as error:
            return error_response(400, str(error), key="tools")
        call_id = body.get("call_id")
        if call_id is None:
            return answer(tools)
        if not isinstance(call_id, str) or not call_id:
            return error_response(400, "'call_id' must be the id of a call", key="call_id")
        await server.fresh.events()  # a call this engine just started is in the log
        found = await trio.to_thread.run_sync(call_answer, call_id, tools, limiter=server.db_threads)
        return found or error_response(404, f"no call {call_id!r} has started", key="call_id")

    return api
