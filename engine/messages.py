"""What a call's tasks say to each other.

A call is three tasks under one supervisor (see ``engine/call.py``):

- the **Twilio task** owns the caller's socket: it decodes frames, sends caller audio and mark
  echoes to the model task, and plays what the model task asks for;
- the **model task** owns the realtime model socket and the conversation: playback accounting,
  barge-in, tool calls and reconnects are decided there;
- the **tool runner** executes function calls, each with a timeout, and answers with results.

They share no state: each message is an immutable msgspec struct sent over a trio memory channel,
and each task owns the only reference to its socket. The console reaches a live call only through
``ConsoleCommand`` messages posted to that call's inbox.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every inter-task message."""


# --- Twilio task -> model task -----------------------------------------------------------------


class CallerAudio(Message, frozen=True, kw_only=True):
    """One Twilio media frame: base64 μ-law, passed through to the model unchanged."""

    payload: str
    timestamp: int


class MarkEchoed(Message, frozen=True, kw_only=True):
    """Twilio echoed a mark we sent: the audio queued before it has been played (or cleared)."""

    name: str


# --- model task -> Twilio task -----------------------------------------------------------------


class PlayAudio(Message, frozen=True, kw_only=True):
    """Send this assistant audio to the caller, followed by a mark with this name."""

    response_id: str
    item_id: str
    content_index: int
    payload: str
    mark: str


class ClearPlayback(Message, frozen=True, kw_only=True):
    """Drop everything Twilio still has buffered (the caller barged in)."""

    item_id: str | None
    unplayed_bytes: int


TwilioOutbound = PlayAudio | ClearPlayback


# --- model task <-> tool runner ----------------------------------------------------------------


class RunTool(Message, frozen=True, kw_only=True):
    tool_call_id: str
    name: str
    arguments: str
    response_id: str = ""
    item_id: str = ""


class ToolResult(Message, frozen=True, kw_only=True):
    """The string the model gets as ``function_call_output.output`` (an error result when ``ok`` is False)."""

    tool_call_id: str
    name: str
    output: str
    ok: bool


# --- the console -> a live call ----------------------------------------------------------------


class HumanToolAnswer(Message, frozen=True, kw_only=True):
    """A person answered a pending function call from the console (goes to the tool runner)."""

    tool_call_id: str
    output: str


class UpdateSession(Message, frozen=True, kw_only=True):
    """Change this call's session configuration (goes to the model task)."""

    session: dict[str, Any]


class ForwardClientEvent(Message, frozen=True, kw_only=True):
    """A client event from the console for this call's model (``conversation.item.create`` or
    ``response.create``); the model task checks and sends it."""

    event: dict[str, Any]


ConsoleCommand = HumanToolAnswer | UpdateSession | ForwardClientEvent
