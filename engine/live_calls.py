"""The calls this process is carrying now, and how the console and the server reach one.

A ``LiveCall`` is the handle the server keeps while a call runs: operator commands (a session
change, a client event for the model, a hang-up) are posted to the call's operator inbox, where the
call's own task feeds them to its core; an answer to a pending function call goes to its tool
runner. Posting never waits: a full or closed inbox answers False.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from callbridge.engine.call_io import (
    ClientEventRequested,
    HangUpRequested,
    Input,
    MachineDetectionReported,
    SessionUpdateRequested,
    TransferOrdered,
)
from callbridge.engine.messages import HumanToolAnswer
from callbridge.engine.tool_runner import ToolMessage

HANG_UP_GRACE_S = 3.0
"""A hang-up is carried out by the call itself; this is how long it may take before it is forced."""


@dataclass
class LiveCall:
    call_id: str
    stream_sid: str
    started_at: float
    from_number: str
    to_number: str
    _operator: trio.MemorySendChannel[Input]
    _tools: trio.MemorySendChannel[ToolMessage]
    _scope: trio.CancelScope

    def update_session(self, session: dict[str, Any]) -> bool:
        return self._post(self._operator, SessionUpdateRequested(session=session))

    def forward_client_event(self, event: dict[str, Any]) -> bool:
        """A console event for this call. A ``function_call_output`` answers the pending tool call
        through the tool runner, so the model gets exactly one output per call."""
        item = event.get("item") or {}
        if event.get("type") == "conversation.item.create" and item.get("type") == "function_call_output":
            answer = HumanToolAnswer(tool_call_id=str(item.get("call_id", "")), output=str(item.get("output", "")))
            return self._post(self._tools, answer)
        return self._post(self._operator, ClientEventRequested(event=event))

    def hang_up_phone(self, reason: str = "") -> bool:
        """An operator hangs up: the phone call itself is ended (through Twilio), at once."""
        return self._post(self._operator, HangUpRequested(reason=reason, by="operator"))

    def transfer(self, label: str, reason: str = "") -> bool:
        """An operator hands the caller to the configured target ``label`` (announced first)."""
        return self._post(self._operator, TransferOrdered(label=label, reason=reason))

    def machine_detected(self, answered_by: str, detection_ms: int | None = None) -> bool:
        """Twilio's answering-machine detection result for this outbound call."""
        return self._post(self._operator, MachineDetectionReported(answered_by=answered_by, detection_ms=detection_ms))

    def hang_up(self, reason: str) -> None:
        """End the call (it records why); forced after ``HANG_UP_GRACE_S`` if it does not end itself."""
        if not self._post(self._operator, HangUpRequested(reason=reason)):
            self._scope.cancel()
            return
        self._scope.deadline = min(self._scope.deadline, trio.current_time() + HANG_UP_GRACE_S)

    @staticmethod
    def _post(channel: trio.MemorySendChannel[Any], message: Any) -> bool:
        try:
            channel.send_nowait(message)
        except (trio.WouldBlock, trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True


@dataclass
class LiveCalls:
    """The calls this process is carrying now (owned by the server, never module-level)."""

    calls: dict[str, LiveCall] = field(default_factory=dict)
    _emptied: trio.Event = field(default_factory=trio.Event)
    _added: trio.Event = field(default_factory=trio.Event)

    def add(self, call: LiveCall) -> None:
        self.calls[call.call_id] = call
        self._added.set()  # every waiter is woken; later waiters get a new event
        self._added = trio.Event()

    async def wait_added(self) -> None:
        """Until the next call is added."""
        await self._added.wait()

    def remove(self, call_id: str) -> None:
        self.calls.pop(call_id, None)
        if not self.calls:
            self._emptied.set()  # every waiter is woken; later waiters get a new event
            self._emptied = trio.Event()

    async def wait_empty(self) -> None:
        while self.calls:
            await self._emptied.wait()

    def get(self, call_id: str) -> LiveCall | None:
        return self.calls.get(call_id)

    def hang_up_all(self, reason: str) -> None:
        for call in list(self.calls.values()):
            call.hang_up(reason)

    def __len__(self) -> int:
        return len(self.calls)
