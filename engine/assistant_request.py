"""The assistant request: ``/twiml`` asks the operator's endpoint which agent answers this call.

``POST`` to the routing's ``assistant_request.url``, signed with Standard Webhooks headers
(``adapters/standard_webhooks.py``; ``webhook-id`` is ``assistant-request-<CallSid>``)::

    {"type": "assistant_request",
     "call": {"call_id": "CA…", "from": "+1…", "to": "+1…", "direction": "inbound"},
     "agents": ["default", "sales", "support"]}

The answer (2xx, JSON, at most 64 KiB) names an agent, replaces some of its keys for this call only,
or both::

    {"agent": "sales"}
    {"agent": "support", "overrides": {"greeting": "Hi Ada!", "instructions": "…"}}
    {"overrides": {"greeting": "…"}}          # the rules choose the agent

Why it is built so: Twilio waits for ``/twiml``, so the whole request (connection included) has a
hard deadline (``timeout_s``, at most 1.5 s); anything that goes wrong — too slow, unreachable, a
4xx/5xx, a redirect, an answer that is not such an object, an agent that does not exist — is an
:class:`AssistantRequestFailed` whose message becomes the recorded reason (``fallback after timeout:
…``), and the rules decide. Nothing here raises anything else.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio

from callbridge.adapters.http import HttpClient, HttpError, HttpRedirected, HttpStatusError, HttpTimeout
from callbridge.adapters.standard_webhooks import signed_headers
from callbridge.engine.routing import AssistantRequestSettings, CallFacts

MAX_ANSWER_BYTES = 64 * 1024
ANSWER_KEYS = frozenset({"agent", "overrides"})

_encode = msgspec.json.Encoder()


class AssistantRequestFailed(Exception):
    """No usable answer; the message says why (it is recorded as the routing's reason)."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class AssistantAnswer:
    agent: str | None
    overrides: dict[str, Any] = field(default_factory=dict)
    took_ms: float = 0.0


def request_body(call: CallFacts, agents: list[str]) -> bytes:
    return _encode.encode(
        {
            "type": "assistant_request",
            "call": {
                "call_id": call.call_id,
                "from": call.from_number,
                "to": call.to_number,
                "direction": call.direction,
            },
            "agents": agents,
        }
    )


async def ask_assistant(
    http: HttpClient,
    settings: AssistantRequestSettings,
    call: CallFacts,
    agents: list[str],
    *,
    environ: Mapping[str, str] | None = None,
) -> AssistantAnswer:
    """Ask the endpoint; the answer, or :class:`AssistantRequestFailed` saying why not."""
    secret = (os.environ if environ is None else environ).get(settings.secret_env)
    if not secret:
        raise AssistantRequestFailed(
            f"not sent: the environment variable {settings.secret_env} (its secret) is not set"
        )
    body = request_body(call, agents)
    headers = signed_headers(secret, f"assistant-request-{call.call_id}", int(time.time()), body)
    began = trio.current_time()
    answer: bytes | None = None
    with trio.move_on_after(settings.timeout_s):
        try:
            _, answer = await http.post_json(settings.url, body, headers, settings.timeout_s, MAX_ANSWER_BYTES)
        except HttpTimeout:
            answer = None
        except HttpStatusError as error:
            raise AssistantRequestFailed(f"the endpoint answered HTTP {error.status}") from None
        except HttpRedirected as error:
            raise AssistantRequestFailed(f"the endpoint redirected ({error}); redirects are not followed") from None
        except HttpError as error:
            raise AssistantRequestFailed(f"the endpoint failed: {error}") from None
    took_ms = round((trio.current_time() - began) * 1000, 1)
    if answer is None:
        raise AssistantRequestFailed(f"no answer within {settings.timeout_s:g} s", timed_out=True)
    agent, overrides = parse_answer(answer)
    return AssistantAnswer(agent, overrides, took_ms)


def parse_answer(answer: bytes) -> tuple[str | None, dict[str, Any]]:
    """``{"agent"?, "overrides"?}`` checked for shape (the agent's existence and the overrides'
    values are checked against the profiles by the caller)."""
    try:
        data = json.loads(answer)
    except ValueError:
        raise AssistantRequestFailed("the answer is not JSON") from None
    if not isinstance(data, dict):
        raise AssistantRequestFailed('the answer is not a JSON object like {"agent": "sales"}')
    unknown = sorted(set(data) - ANSWER_KEYS)
    if unknown:
        raise AssistantRequestFailed(f"the answer has an unknown key {unknown[0]!r} (agent, overrides)")
    agent = data.get("agent")
    if agent is not None and not isinstance(agent, str):
        raise AssistantRequestFailed("the answer's 'agent' is not a string")
    overrides = data.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise AssistantRequestFailed("the answer's 'overrides' is not an object of agent keys")
    if "name" in overrides:
        raise AssistantRequestFailed("the answer's 'overrides' cannot rename the agent (name)")
    if agent is None and not overrides:
        raise AssistantRequestFailed("the answer names no agent and no overrides")
    return agent, overrides
