"""What the server hands every call: its settings, its clock, and the shapes of its two sockets.

There is no module-level call state anywhere in the engine: everything a call touches (its clock,
its configuration, its tools, how to reach the model) is built for that call alone or shared
read-only, so two calls never see each other's audio, config or tools.

Both sockets signal a closed or lost peer the same way: ``adapters.websocket.WebSocketClosed`` (the
realtime client's ``RealtimeConnectionClosed`` is one), and a model session that cannot be opened
raises ``adapters.openai.errors.RealtimeConnectError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from callbridge.adapters.twilio.rest_errors import TelephonyError as TelephonyError  # the Telephony's failure
from callbridge.engine.agent import DEFAULT_AGENT, Agent
from callbridge.engine.apology import Apology
from callbridge.engine.reconnect import ReconnectPolicy
from callbridge.engine.tools import ToolRegistry


class CallClock:
    """Wall-clock seconds that never go backwards within a call: the wall time at the start plus
    trio's monotonic time since (so tests with a MockClock get deterministic timestamps too)."""

    def __init__(self, start_wall: float | None = None) -> None:
        self.start_wall = time.time() if start_wall is None else start_wall
        self.start_mono = trio.current_time()

    def now(self) -> float:
        return self.start_wall + (trio.current_time() - self.start_mono)


class MessageSocket(Protocol):
    """A text-message socket (the Twilio media stream; ``adapters.websocket.WebSocket`` is one).
    ``get_message`` raises ``WebSocketClosed`` once the peer is gone."""

    async def get_message(self) -> str | bytes: ...

    async def send_messages(self, messages: list[str]) -> None:
        """Several messages in order, in one write (a ``media`` and its ``mark``)."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None: ...


class Telephony(Protocol):
    """The phone call itself, beyond its media stream (Twilio's REST API: ``adapters/twilio/rest.py``).
    Each raises ``TelephonyError`` when Twilio refuses or cannot be reached."""

    async def hang_up(self, call_sid: str) -> None: ...

    async def redirect(self, call_sid: str, twiml: str) -> None: ...

    async def hold_for_transfer(
        self,
        call_sid: str,
        *,
        room: str,
        label: str,
        to: str,
        caller_id: str | None,
        timeout_s: int,
        summary: str,
        person_called: Callable[[str], None] | None = None,
    ) -> None:
        """A warm transfer: hold the caller in ``room`` and call ``to``, who hears ``summary`` first;
        ``person_called`` is told the person's CallSid as soon as their call is placed."""
        ...


class ModelConnection(Protocol):
    """An open realtime-model session (``adapters/openai/client.py`` provides the real one)."""

    async def send_raw_many(self, texts: list[str]) -> None: ...

    async def receive_raw(self) -> str: ...


ModelOpener = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens one model session: ``async with opener() as conn``; raises ``RealtimeConnectError``."""


@dataclass
class CallSettings:
    """What the server hands to every call (shared, read-only)."""

    open_model: ModelOpener
    model_kind: str
    model_url: str
    """For the record: the realtime URL without secrets."""
    registry: ToolRegistry
    tool_context_http: Any
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    human_tool_timeout_s: float = 60.0
    tool_wait_announce_s: float | None = 2.0
    """Say "one moment" when tool outputs are awaited this long in silence (None: never)."""
    max_task_restarts: int = 3
    apology: Apology = field(default_factory=Apology.none)
    """What the caller hears when the model cannot be reached, before the call ends."""
    agent: Agent = DEFAULT_AGENT
    """Greeting, hang-up, transfers, keypad, silence and duration limits (``engine/agent.py``)."""
    before_each_batch: Callable[[Callable[[], None]], Callable[[], None]] | None = None
    """The store writer's hook (``EventWriter.before_each_batch``): each call hands over the audio it
    holds in partial chunks before every batch, so a crash loses at most one batch window of audio."""
    telephony: Telephony | None = None
    """Twilio's REST API for hang-ups and transfers; None (no credentials): the stream is ended and
    its ``<Connect action>`` answers with what was decided (and warm transfers are cold)."""
    resumed_history: tuple[Any, ...] | None = None
    """Per call: a call held for a warm transfer nobody took, coming back to the agent on a new
    stream, and its stored events so far (the conversation carries on from them)."""
