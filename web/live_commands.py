"""What a browser may send on ``WS /logs``, checked before anything reaches a call or the log.

Accepted (one JSON object per message; anything else gets an ``error`` message back and changes
nothing):

- ``{"type": "session.update", "session": {...}}`` — the default for new calls: merged over the
  current default, checked (``normalize_session_config``), recorded as ``DefaultSessionConfigSaved``
  (so it survives restarts) and made the server's default;
- ``{"type": "session.update", "call_id": CALL, "session": {...}}`` — that live call only (checked,
  then ``LiveCall.update_session``: the call records ``CallSessionConfigChanged``);
- ``{"type": "conversation.item.create", "call_id": CALL, "item": {"type": "function_call_output",
  "call_id": TOOL_CALL_ID, "output": "..."}}`` — answers a pending tool call of that call (the tool
  runner records it and sends it to the model); a non-string ``output`` is sent as its JSON text;
- ``{"type": "response.create", "call_id": CALL}`` — asks that call's model for a response (through
  the call's response gate, so never over a running one).

``POST /api/calls/{call_id}/tool-output`` (``web/calls_api.py``) answers a tool call through
:func:`answer_tool_call`, the same checks and path, for programs that are not a browser.

Why this is synchronous and separate from the socket: every check and hand-off is non-blocking
(channels with ``send_nowait``, the writer's ``record``), so a browser can never stall a call, and
the rules are testable without one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from callbridge.adapters.openai.session import SessionConfigError
from callbridge.projections.live import LiveProjection, Message, envelope
from callbridge.web.console_api import (
    CallNotLive,
    CallNotTakingCommands,
    raise_unless_delivered,
    save_default_session,
    update_call_session,
)

if TYPE_CHECKING:
    from callbridge.server import Server

COMMANDS = ("session.update", "conversation.item.create", "response.create")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


class CommandError(Exception):
    """A refused command: ``code`` for programs, ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_message(
    code: str, message: str, *, call_id: str | None = None, stream_sid: str | None = None, event_type: str | None = None
) -> Message:
    """The ``error`` message sent back to the one browser whose command was refused."""
    error = {"type": "feed_error", "code": code, "message": message, "event_type": event_type}
    return envelope("error", call_id, stream_sid, error=error)


async def handle_command(server: Server, projection: LiveProjection, data: str | bytes) -> Message | None:
    """Carry out one browser message; returns the error message to send back, or None."""
    try:
        command = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        return error_message("invalid_json", f"not JSON: {exc}")
    except RecursionError:
        return error_message("invalid_json", "JSON nested too deeply: send one flat command object")
    if not isinstance(command, dict):
        return error_message("invalid_event", "a feed message must be a JSON object with a 'type'")
    kind = command.get("type")
    call_id = command.get("call_id")
    call_id = call_id if isinstance(call_id, str) and call_id else None
    try:
        if kind not in COMMANDS:
            raise CommandError("unknown_event", f"unsupported type {kind!r}: send one of {', '.join(COMMANDS)}")
        if kind == "session.update" and call_id is None:
            _save_default(server, command)
        else:
            await _to_call(server, projection, command, call_id)
    except CommandError as error:
        return error_message(
            error.code,
            error.message,
            call_id=call_id,
            stream_sid=projection.stream_sid(call_id),
            event_type=kind if isinstance(kind, str) else None,
        )
    return None


async def answer_tool_call(
    server: Server, projection: LiveProjection, call_id: str, tool_call_id: Any, output: Any
) -> None:
    """Answer a live call's pending tool call (``POST /api/calls/{call_id}/tool-output``), by the same
    checks and path as the feed's ``conversation.item.create``; raises :class:`CommandError`."""
    item = {"type": "function_call_output", "call_id": tool_call_id, "output": output}
    await _to_call(server, projection, {"type": "conversation.item.create", "item": item}, call_id)


def _session(command: dict[str, Any]) -> dict[str, Any]:
    session = command.get("session")
    if not isinstance(session, dict):
        raise CommandError("invalid_session", "'session' must be an object of session settings")
    return session


def _save_default(server: Server, command: dict[str, Any]) -> None:
    try:
        save_default_session(server, _session(command))
    except SessionConfigError as exc:
        raise CommandError("invalid_session", str(exc)) from None


async def _to_call(server: Server, projection: LiveProjection, command: dict[str, Any], call_id: str | None) -> None:
    """A command for one live call, wherever it is carried (``server.commands``: at once when it is
    live here, else through the log to the engine that carries it)."""
    kind = command["type"]
    if call_id is None:
        raise CommandError("missing_call_id", f"{kind} needs the 'call_id' of a live call")
    if not await server.commands.may_be_live(call_id):
        raise CommandError("unknown_call", f"no live call {call_id!r}")
    try:
        if kind == "session.update":
            await update_call_session(server, call_id, _session(command))
            return
        if kind == "response.create":
            event: dict[str, Any] = {"type": "response.create"}
        else:
            item = _function_call_output(command)
            if not projection.is_pending(call_id, item["call_id"]):
                raise CommandError(
                    "unknown_tool_call", f"call {call_id!r} has no pending tool call {item['call_id']!r}"
                )
            event = {"type": "conversation.item.create", "item": item}
        result = await server.commands.send(call_id, "client_event", {"event": event})
        raise_unless_delivered(result, call_id)
    except SessionConfigError as exc:
        raise CommandError("invalid_session", str(exc)) from None
    except CallNotLive as exc:
        raise CommandError("unknown_call", str(exc)) from None
    except CallNotTakingCommands as exc:
        raise CommandError("call_busy", str(exc)) from None


def _function_call_output(command: dict[str, Any]) -> dict[str, Any]:
    item = command.get("item")
    if not isinstance(item, dict) or item.get("type") != "function_call_output":
        raise CommandError("invalid_item", "only an item of type 'function_call_output' can be created")
    tool_call_id = item.get("call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise CommandError("invalid_item", "item.call_id must be the id of the pending tool call")
    output = item.get("output")
    if output is None:
        raise CommandError("invalid_item", "item.output is missing")
    text = output if isinstance(output, str) else _encoder.encode(output).decode()
    return {"type": "function_call_output", "call_id": tool_call_id, "output": text}
