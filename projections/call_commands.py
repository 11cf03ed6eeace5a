"""Reaching a live call from any engine, through the log itself.

Several engines may share one store behind one public URL (or one machine's workers behind one
port): the console's request to hang up, transfer, change the session or answer a tool may land on
an engine that does not carry the call. :meth:`CallCommands.send` then records the command in the
log (``CallCommandIssued``, in the issuing engine's own stream, so no two engines ever append to one
stream); every engine follows those commands (woken by this process's writes, PostgreSQL's NOTIFY,
or polling for SQLite), the one that carries the call carries it out and records the answer in the
call's own stream (``CallCommandAnswered``), which the issuer is waiting for. No session affinity is
needed, and every command is on the call's record. A call live on the engine asked is reached at
once, without the log.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from callbridge.engine.backoff import Backoff
from callbridge.engine.engine_id import EngineIdentity
from callbridge.engine.events import CallCommandAnswered, CallCommandIssued, CallEnded
from callbridge.engine.live_calls import LiveCall, LiveCalls
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.appends import Waiters
from callbridge.projections.follower import Follower, Progress
from callbridge.projections.lost_calls import engine_stream
from callbridge.projections.source import LogSource

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 5.0
UNSEEN_CALL_WAIT_S = 0.5
"""A call with nothing in the log yet may have just started on another engine: look once more."""
PAGE = 500
COMMAND_EVENTS = ("CallCommandIssued", "CallCommandAnswered")
"""What the follower reads (and the only batches of this process that wake it: ``AppendSignal.waiter``)."""
KINDS = frozenset({"update_session", "client_event", "hang_up", "transfer", "machine_detected"})


class UnknownCommand(ValueError):
    """A command kind this engine does not know."""


@dataclass(frozen=True)
class CommandResult:
    ok: bool
    detail: str
    engine_id: str = ""
    """The engine that carries the call (empty when none answered)."""


def execute(call: LiveCall, kind: str, payload: dict[str, Any]) -> bool:
    """Hand a command to a call live here; False when the call is ending or its inbox is full."""
    if kind == "update_session":
        return call.update_session(dict(payload.get("session") or {}))
    if kind == "client_event":
        return call.forward_client_event(dict(payload.get("event") or {}))
    if kind == "hang_up":
        return call.hang_up_phone(str(payload.get("reason") or ""))
    if kind == "transfer":
        return call.transfer(str(payload.get("label") or ""), str(payload.get("reason") or ""))
    if kind == "machine_detected":
        detection = payload.get("detection_ms")
        return call.machine_detected(str(payload.get("answered_by") or ""), int(detection) if detection else None)
    raise UnknownCommand(f"unknown call command {kind!r}")


class CallCommands:
    def __init__(
        self,
        live: LiveCalls,
        identity: EngineIdentity,
        store: EventStore,
        writer: EventWriter,
        waiter: Waiters,
        *,
        clock: Callable[[], float],
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        self.live = live
        self.identity = identity
        self.writer = writer
        self.clock = clock
        self.answer_timeout_s = answer_timeout_s
        self._store = store
        self._source = LogSource(store, COMMAND_EVENTS)
        wait = waiter(names=COMMAND_EVENTS)  # only batches holding a command wake it
        self._follower = Follower("call commands", wait, backoff=Backoff(first=0.2, maximum=5.0))
        self._waiting: dict[str, tuple[trio.Event, list[CommandResult]]] = {}

    async def send(self, call_id: str, kind: str, payload: dict[str, Any]) -> CommandResult:
        """Carry ``kind`` out on live call ``call_id``, wherever it is live; the result says whether it
        was delivered, and by which engine (or that no engine carries the call)."""
        if kind not in KINDS:
            raise UnknownCommand(f"unknown call command {kind!r}")
        here = self.live.get(call_id)
        if here is not None:
            ok = execute(here, kind, payload)
            return CommandResult(ok, "delivered" if ok else "the call is ending or busy; try again", self.engine_id)
        if not await self.may_be_live(call_id):
            return CommandResult(False, f"no engine carries call {call_id!r}: it never started or has ended")
        command_id = uuid.uuid4().hex
        done, result = trio.Event(), list[CommandResult]()
        self._waiting[command_id] = (done, result)
        try:
            self.writer.record(
                CallCommandIssued(
                    call_id=engine_stream(self.engine_id),
                    at=self.clock(),
                    target_call_id=call_id,
                    command_id=command_id,
                    kind=kind,
                    payload=payload,
                    issued_by=self.engine_id,
                )
            )
            with trio.move_on_after(self.answer_timeout_s):
                await done.wait()
        finally:
            del self._waiting[command_id]
        if result:
            return result[0]
        return CommandResult(
            False, f"no engine carries call {call_id!r} now (no answer within {self.answer_timeout_s:g} s)"
        )

    async def may_be_live(self, call_id: str) -> bool:
        """Whether ``call_id`` may be live on some engine: live here, or started and not ended in the
        log (one read of its last event; a call that never started or ended is answered at once)."""
        if self.live.get(call_id) is not None:
            return True
        await self.writer.flush()
        last = await trio.to_thread.run_sync(self._store.last_event, call_id)
        if last is None:  # not in the log yet, or never: another engine writes its batches every 100 ms
            head = await trio.to_thread.run_sync(self._source.head)
            with trio.move_on_after(UNSEEN_CALL_WAIT_S):
                await self._follower.position.wait_for(head + 1)
            last = await trio.to_thread.run_sync(self._store.last_event, call_id)
        return last is not None and not isinstance(last[1], CallEnded)

    @property
    def engine_id(self) -> str:
        return self.identity.engine_id

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the commands in the log from its head now (older commands are stale), carrying out
        those for calls live here and waking those waiting for answers."""
        await self._follower.run(self._step, start=self._head, task_status=task_status)

    async def _head(self) -> int:
        return await trio.to_thread.run_sync(self._source.head)

    async def _step(self, after: int) -> Progress:
        page, head = await trio.to_thread.run_sync(self._source.next_page, after, PAGE)
        for recorded in page.events:
            event = recorded.event
            if isinstance(event, CallCommandIssued):
                self._maybe_carry_out(event)
            elif isinstance(event, CallCommandAnswered):
                waiting = self._waiting.get(event.command_id)
                if waiting is not None and not waiting[0].is_set():
                    waiting[1].append(CommandResult(event.ok, event.detail, event.engine_id))
                    waiting[0].set()
        return Progress(reached=page.reached, caught_up=page.reached >= head)

    def _maybe_carry_out(self, command: CallCommandIssued) -> None:
        call = self.live.get(command.target_call_id)
        if call is None:
            return  # not ours (or no longer live): another engine answers, or nobody does
        try:
            ok = execute(call, command.kind, command.payload)
            detail = "delivered" if ok else "the call is ending or busy; try again"
        except UnknownCommand as error:
            ok, detail = False, str(error)
        log.info("call %s: %s from engine %s %s", command.target_call_id, command.kind, command.issued_by, detail)
        self.writer.record(
            CallCommandAnswered(
                call_id=command.target_call_id,
                at=self.clock(),
                command_id=command.command_id,
                kind=command.kind,
                ok=ok,
                detail=detail,
                engine_id=self.engine_id,
                issued_by=command.issued_by,
            )
        )
