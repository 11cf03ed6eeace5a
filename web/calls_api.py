"""Call control over HTTP: place an outbound call, hang up or transfer a live one, read the agent.

Behind the API token like the rest of ``/api`` (bearer header or console cookie):

- ``POST /api/calls`` ``{"to": E.164, "from"?: E.164, "greeting"?: str, "metadata"?: {…}}`` → 201
  ``{"call_id": CallSid, "status", "to", "from"}`` once Twilio accepted the call
  (:mod:`web.outbound` says what each refusal answers: 400, 429 with ``Retry-After``, 502);
- ``POST /api/calls/{call_id}/hangup`` ``{"reason"?}`` → 202: the phone call is hung up at once
  (through Twilio's REST API, or by ending the stream); a call a warm transfer holds (live on no
  engine) is ended through Twilio, the caller's leg and the person's (``web/held_calls.py``), 202
  with ``"held": true`` — 502 when Twilio refused, saying why; 404 when the call is not live;
- ``POST /api/calls/{call_id}/transfer`` ``{"target": label, "reason"?}`` → 202: the agent announces
  the transfer, then the caller is dialled through to the target; 400 for a label the agent does not
  have (the answer names the labels), 404 when the call is not live here;
- ``POST /api/calls/{call_id}/tool-output`` ``{"tool_call_id", "output"}`` → 202: answers the call's
  pending tool call (one answered by hand, or a backend tool still running: the person wins), as the
  console's answer form does over ``WS /logs``; a non-string ``output`` is sent as its JSON text.
  404 when the call is not live or has no such pending tool call, 409 when it is ending;
- ``GET /api/agent[?call_id=…]`` → what the agent does (greeting, hang-up, keypad, limits) and its
  transfer targets, for the console's buttons: the agent profile that answers that call, else the
  ``default`` one.

A command is *accepted* (202) when the call's own task has it; what happened is in the call's log
(``CallEndRequested``, ``PhoneHangUpSent``, ``TransferRequested``/``TransferDialed``) and on the
live feed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
import trio
from quart import Blueprint, Response, request

from callbridge.engine.agent import Agent
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import require_token
from callbridge.web.console_api import json_object, request_error
from callbridge.web.held_calls import HangUpFailed, hang_up_held
from callbridge.web.live_commands import CommandError, answer_tool_call
from callbridge.web.outbound import CallRequest, OutboundRefused

if TYPE_CHECKING:
    from callbridge.web.server import Server

MAX_REASON_CHARS = 200
TOOL_OUTPUT_CATCH_UP_S = 2.0
"""How long a tool answer waits for this process's live feed to reach the log's head, when the feed
does not know the tool call yet (it was recorded a moment ago, perhaps by another engine)."""
_TOOL_OUTPUT_STATUS = {"unknown_call": 404, "unknown_tool_call": 404, "call_busy": 409}


def agent_view(agent: Agent) -> dict[str, Any]:
    """The agent as the console shows it (nothing here is a secret)."""
    return {
        "greeting": agent.greeting,
        "end_call": agent.end_call,
        "dtmf": agent.dtmf,
        "silence_reprompt_s": agent.silence_reprompt_s,
        "silence_hangup_s": agent.silence_hangup_s,
        "max_duration_s": agent.max_duration_s,
        "voicemail_message": agent.voicemail_message,
        "transfer_no_answer_message": agent.transfer_no_answer_message,
        "transfer_targets": [
            {"label": target.label, "to": target.to, "mode": target.mode, "timeout_s": target.timeout_s}
            for target in agent.transfer_targets
        ],
    }


def _reason(body: dict[str, Any]) -> str | None:
    """The optional ``reason`` (None when it is not a short string)."""
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > MAX_REASON_CHARS:
        return None
    return reason


def calls_api_blueprint(server: Server) -> Blueprint:
    api = Blueprint("calls_api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))

    @api.post("/api/calls")
    async def place_call() -> Response:
        body = await request.get_data()
        try:
            wanted = msgspec.json.decode(body or b"null", type=CallRequest)
        except msgspec.ValidationError as error:
            return error_response(400, request_error(error))
        except msgspec.DecodeError:
            return error_response(400, 'the request body must be a JSON object like {"to": "+15551234567"}')
        try:
            placed = await server.outbound.place(wanted)
        except OutboundRefused as refused:
            response = error_response(refused.status, str(refused), **refused.extra)
            if "retry_after" in refused.extra:
                response.headers["Retry-After"] = str(refused.extra["retry_after"])
            return response
        answer = {
            "call_id": placed.call_id,
            "status": placed.status,
            "to": placed.to_number,
            "from": placed.from_number,
        }
        return json_response(answer, 201)

    async def command(
        call_id: str, body: dict[str, Any], kind: str, payload: dict[str, Any], **answer: Any
    ) -> Response:
        """Check ``reason`` and send the command to the call, on whichever engine carries it: 202, or
        why not (404: no engine carries it; 409: it is ending)."""
        reason = _reason(body)
        if reason is None:
            return error_response(400, f"'reason': a string of at most {MAX_REASON_CHARS} characters")
        result = await server.commands.send(call_id, kind, {**payload, "reason": reason})
        if not result.ok and not result.engine_id:
            return error_response(404, f"no live call {call_id!r} (it ended, or never started): {result.detail}")
        if not result.ok:
            return error_response(409, "the call is ending and takes no more commands")
        return json_response({"call_id": call_id, **answer, "engine_id": result.engine_id}, 202)

    @api.post("/api/calls/<call_id>/hangup")
    async def hang_up(call_id: str) -> Response:
        body = await json_object()
        if body is None:
            return error_response(400, "the request body must be a JSON object (or empty)")
        if _reason(body) == "":
            body = {**body, "reason": "hung up from the API"}
        reason = _reason(body)
        if reason is not None and server.live.get(call_id) is None:  # held for a warm transfer?
            try:
                if await hang_up_held(server, call_id, reason):
                    return json_response({"call_id": call_id, "accepted": "hangup", "held": True}, 202)
            except HangUpFailed as error:
                return error_response(502, str(error))
        return await command(call_id, body, "hang_up", {}, accepted="hangup")

    @api.post("/api/calls/<call_id>/transfer")
    async def transfer(call_id: str) -> Response:
        body = await json_object()
        if body is None:
            return error_response(400, 'the request body must be a JSON object like {"target": "sales"}')
        label = body.get("target")
        agent = await server.routing.agent_of_call(call_id)  # the call's own agent profile
        if not isinstance(label, str) or agent.target(label) is None:
            labels = ", ".join(target.label for target in agent.transfer_targets)
            known = labels or "none (add transfer_targets to the agent's profile or the agent file)"
            return error_response(400, f"'target': {label!r} is not a transfer target; the targets are: {known}")
        return await command(call_id, body, "transfer", {"label": label}, accepted="transfer", target=label)

    @api.post("/api/calls/<call_id>/tool-output")
    async def tool_output(call_id: str) -> Response:
        body = await json_object()
        tool_call_id = body.get("tool_call_id") if body is not None else None
        if body is None or not isinstance(tool_call_id, str) or not tool_call_id or body.get("output") is None:
            return error_response(400, 'the request body must be a JSON object like {"tool_call_id": "…", "output": …}')
        projection = server.feed.projection
        if not projection.is_pending(call_id, tool_call_id):  # recorded a moment ago? let the feed catch up
            head = await trio.to_thread.run_sync(server.store.head, limiter=server.db_threads)
            with trio.move_on_after(TOOL_OUTPUT_CATCH_UP_S):
                await server.feed.wait_for_position(head)
        try:
            await answer_tool_call(server, projection, call_id, tool_call_id, body["output"])
        except CommandError as error:
            return error_response(_TOOL_OUTPUT_STATUS.get(error.code, 400), error.message)
        return json_response({"call_id": call_id, "tool_call_id": tool_call_id, "accepted": "tool_output"}, 202)

    @api.get("/api/agent")
    async def agent() -> Response:
        call_id = request.args.get("call_id")  # the agent that answers that call; else the default
        return json_response(agent_view(await server.routing.agent_of_call(call_id) if call_id else server.agent))

    return api
