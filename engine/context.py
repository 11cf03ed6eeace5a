"""What one call is given to run with, and its recorder.

There is no module-level call state anywhere in the engine: everything a call touches (its clock,
its recorder, its configuration, its tools, how to reach the model) arrives in a ``CallContext``
built for that call alone, so two calls never see each other's audio, config or tools.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from callbridge.engine.conversation import ConversationMemory
from callbridge.engine.events import Event
from callbridge.engine.tools import ToolRegistry


class CallClock:
    """Wall-clock seconds that never go backwards within a call: the wall time at the start plus
    trio's monotonic time since (so tests with a MockClock get deterministic timestamps too)."""

    def __init__(self, start_wall: float | None = None) -> None:
        self.start_wall = time.time() if start_wall is None else start_wall
        self.start_mono = trio.current_time()

    def now(self) -> float:
        return self.start_wall + (trio.current_time() - self.start_mono)

    def elapsed_ms(self) -> int:
        return int((trio.current_time() - self.start_mono) * 1000)


class CallRecorder:
    """The call's one way to record a fact: hands it to the store's writer and folds it into the
    call's conversation memory (what a re-seeded model session is told)."""

    def __init__(self, call_id: str, clock: CallClock, sink: Callable[[Event], None]) -> None:
        self.call_id = call_id
        self.clock = clock
        self._sink = sink
        self.memory = ConversationMemory()
        self.count = 0

    def __call__(self, event: Event) -> None:
        self._sink(event)
        self.memory.apply(event)
        self.count += 1


class MessageSocket(Protocol):
    """A text-message socket (the Twilio media stream). ``get_message`` raises ``PeerClosed`` when
    the peer is gone; the web layer adapts its socket library to this."""

    async def get_message(self) -> str | bytes: ...

    async def send_message(self, message: str) -> None: ...

    async def send_messages(self, messages: list[str]) -> None:
        """Several messages in order, in one write (a ``media`` and its ``mark``)."""
        ...

    async def aclose(self, code: int = 1000, reason: str = "") -> None: ...


class PeerClosed(Exception):
    """The peer's socket closed or dropped."""

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        super().__init__(f"socket closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


class ModelLinkError(Exception):
    """The model socket could not be opened, or closed under us (``code``/``reason`` when known).
    Openers and connections raise it for every network-level failure; anything else is a bug."""

    def __init__(self, message: str, code: int | None = None, reason: str = "", *, retryable: bool = True) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.retryable = retryable
        """False when trying again cannot help (the key was rejected, the URL is malformed)."""


class ModelConnection(Protocol):
    """An open realtime-model session (``adapters/openai/client.py`` provides the real one)."""

    async def send_raw(self, text: str) -> None: ...

    async def receive_raw(self) -> str: ...


ModelOpener = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens one model session: ``async with opener() as conn``. Raises on failure to connect."""


@dataclass(frozen=True)
class ReconnectPolicy:
    """Bounded backoff for the model socket: ``max_attempts`` consecutive failures end the call."""

    max_attempts: int = 5
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def delay(self, failures: int) -> float:
        return float(min(self.max_delay_s, self.first_delay_s * (2 ** max(0, failures - 1))))


@dataclass
class CallSettings:
    """What the server hands to every call (shared, read-only) — the per-call context copies it."""

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


@dataclass
class CallContext:
    call_id: str
    stream_sid: str
    settings: CallSettings
    session_config: dict[str, Any]
    clock: CallClock
    record: CallRecorder
