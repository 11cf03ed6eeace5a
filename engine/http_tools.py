"""Tools whose handler is the operator's own HTTPS endpoint.

An agent lists them (``[[tools]]`` with a ``url``, ``engine/agent.py``). When the model calls one,
the tool runner POSTs to the URL::

    {"tool": "lookup_order", "tool_call_id": "call_…", "arguments": {…},
     "call": {"call_id": "CA…", "from": "+1…", "to": "+1…", "direction": "inbound", "agent": "default"}}

signed with Standard Webhooks headers (``adapters/standard_webhooks.py``; ``webhook-id`` is the tool
call id, the same on every retry) when the tool has a secret. A 2xx JSON answer is the
``function_call_output``. Everything else the endpoint can do wrong becomes an error result the
model can say something sensible about, and never stalls the call: a timeout per attempt, retries
(with backoff) only for an ``idempotent`` tool and only after a timeout, a dropped connection or a
5xx, a 4xx at once, no redirects followed, an answer larger than ``MAX_ANSWER_BYTES`` refused, an
answer that is not JSON refused.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import msgspec
import trio

from callbridge.adapters.http import (
    HttpError,
    HttpRedirected,
    HttpStatusError,
    HttpTimeout,
    HttpTooLarge,
    HttpUnreachable,
)
from callbridge.adapters.standard_webhooks import signed_headers
from callbridge.engine.agent import Agent, AgentTool
from callbridge.engine.backoff import Backoff
from callbridge.engine.tools import Tool, ToolContext, ToolError, ToolRegistry

MAX_ANSWER_BYTES = 64 * 1024
"""What the model is given back at most (an answer is conversation context, not a file)."""
RETRY = Backoff(first=0.25, maximum=2.0)

_encode = msgspec.json.Encoder()


class HttpToolError(ValueError):
    """An HTTP tool that cannot be built (its secret's environment variable is not set)."""


def http_tool(spec: AgentTool, *, agent: str = "default", environ: dict[str, str] | None = None) -> Tool:
    """The ``Tool`` for an agent's ``[[tools]]`` entry with a ``url``."""
    assert spec.url is not None
    env = os.environ if environ is None else environ
    secret: str | None = None
    if spec.secret_env:
        secret = env.get(spec.secret_env)
        if not secret:
            raise HttpToolError(
                f"tool {spec.name!r}: the environment variable {spec.secret_env} (its secret) is not set"
            )
    url, attempts = spec.url, 1 + (spec.retries if spec.idempotent else 0)

    async def handler(arguments: dict[str, Any], ctx: ToolContext) -> str:
        body = _encode.encode(
            {
                "tool": spec.name,
                "tool_call_id": ctx.tool_call_id,
                "arguments": arguments,
                "call": {**ctx.call, "call_id": ctx.call_id, "agent": agent},
            }
        )
        failure = "no attempt was made"
        for attempt in range(1, attempts + 1):
            headers = signed_headers(secret, ctx.tool_call_id or ctx.call_id, int(time.time()), body)
            try:
                _, answer = await ctx.http.post_json(url, body, headers, spec.timeout_s, MAX_ANSWER_BYTES)
            except HttpStatusError as error:
                failure = f"the tool's service answered HTTP {error.status}"
                if error.status < 500:
                    break
            except HttpTimeout:
                failure = f"the tool's service did not answer within {spec.timeout_s:g} s"
            except HttpTooLarge:
                raise ToolError(f"the tool's answer was larger than {MAX_ANSWER_BYTES // 1024} KiB") from None
            except HttpRedirected as error:
                raise ToolError(
                    f"the tool's service redirected elsewhere ({error}); redirects are not followed"
                ) from None
            except HttpUnreachable as error:
                failure = f"the tool's service could not be reached ({error})"
            except HttpError as error:
                failure = f"the tool's service failed: {error}"
                break
            else:
                return _json_answer(answer)
            if attempt < attempts:
                await trio.sleep(RETRY.delay(attempt))
        raise ToolError(
            f"{failure}; try again later or tell the caller" + (f" (after {attempts} tries)" if attempts > 1 else "")
        )

    return Tool(
        name=spec.name,
        description=spec.description,
        parameters=spec.parameters,
        handler=handler,
        timeout_s=attempts * spec.timeout_s + RETRY.maximum * (attempts - 1) + 1.0,
    )


def _json_answer(answer: bytes) -> str:
    try:
        json.loads(answer)
    except ValueError:
        raise ToolError("the tool's service answered something that is not JSON") from None
    return answer.decode("utf-8")


def check_server_tools(base: ToolRegistry, agent: Agent) -> None:
    """``HttpToolError`` (``server_tools[i]: …``) for a name in ``agent.server_tools`` that is not one of
    the server's tools."""
    for index, name in enumerate(agent.server_tools or []):
        if base.get(name) is None:
            known = ", ".join(base.names()) or "none"
            raise HttpToolError(f"server_tools[{index}]: {name!r} is not one of the server's tools ({known})")


def agent_registry(
    base: ToolRegistry, agent: Agent, *, name: str = "default", environ: dict[str, str] | None = None
) -> ToolRegistry:
    """The server's tools (those ``server_tools`` names, or all) plus the agent's own: HTTP tools (with
    a ``url``) and tools a person answers (without). Raises ``HttpToolError`` for a tool whose secret
    is missing, or a ``server_tools`` name the server has no tool for."""
    if agent.server_tools is not None:
        check_server_tools(base, agent)
        base = base.only(agent.server_tools)
    tools = [
        http_tool(spec, agent=name, environ=environ)
        if spec.url is not None
        else Tool(name=spec.name, description=spec.description, parameters=spec.parameters, handler=None)
        for spec in agent.tools
    ]
    return base.with_tools(tools)
