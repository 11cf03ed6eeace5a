"""The call core's invariants, over every interleaving hypothesis can find.

A ``RuleBasedStateMachine`` plays everything that can happen to a call in any order — the caller
talking, marks echoing, the model starting and ending responses, streaming audio, calling tools,
reporting errors and barge-ins, sessions dropping and reopening, tools settling (twice, or after a
crash), timers firing, the console asking for responses, the call ending — and checks after every
step what must always hold:

- never two ``response.create`` while one is active or already requested;
- a truncate's ``audio_end_ms`` never exceeds the audio the model sent for that item;
- at most one ``function_call_output`` per tool call in each session, and each call settled once;
- ``CallEnded`` is recorded last, and once; nothing is accepted after it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from core_driver import Driver, delta, function_call_done, message_item_added, response_created, response_done
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from callbridge.engine.call_io import (
    CallBegan,
    CallerHungUp,
    CallerMedia,
    CallTornDown,
    ClientEventRequested,
    CoreStateError,
    MarkEchoed,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    Output,
    Record,
    SendToCaller,
    SendToModel,
    Timer,
    TimerFired,
    ToolRunnerLost,
    ToolSettled,
)
from callbridge.engine.call_state import OFFLINE, CallState
from callbridge.engine.events import CallEnded, ToolCallCompleted, ToolCallFailed
from callbridge.engine.reconnect import ReconnectPolicy

SPEECH_STARTED = {"type": "input_audio_buffer.speech_started", "item_id": "u", "audio_start_ms": 0}
BUSY = {
    "type": "error",
    "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "busy"},
}


class CallCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.call = Driver(reconnect=ReconnectPolicy(max_attempts=3, first_delay_s=0.1, max_delay_s=0.4))
        self.call.feed(CallBegan())
        # what the simulated model knows
        self.active_response: str | None = None
        self.create_unanswered = False
        self.responses = 0
        self.item: str | None = None
        self.received: dict[str, int] = {}
        self.pending_marks: list[str] = []
        self.tool_calls = 0
        self.unsettled: list[str] = []
        self.settled: list[str] = []
        self.outputs_this_session: dict[str, int] = {}
        self.ended = False
        self.steps = 0

    # --- feeding, and checking every output as it comes ----------------------------------------

    @property
    def state(self) -> CallState:
        return self.call.core.state

    def feed(self, given: Any) -> list[Output]:
        self.steps += 1
        outputs = self.call.feed(given, dt=0.01)
        self.observe(outputs)
        return outputs

    def server(self, event: dict[str, Any]) -> None:
        self.observe(self.call.server(event))

    def observe(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, SendToModel) and not output.audio:
                self.model_received(json.loads(output.text))
            elif isinstance(output, SendToCaller):
                for text in output.frames:
                    frame = json.loads(text)
                    if frame["event"] == "mark":
                        self.pending_marks.append(frame["mark"]["name"])
            elif isinstance(output, Record) and isinstance(output.event, ToolCallCompleted | ToolCallFailed):
                assert output.event.tool_call_id not in self.settled, "a tool call settled twice"
                self.settled.append(output.event.tool_call_id)

    def model_received(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "response.create":
            assert self.active_response is None, "response.create while a response is active"
            assert not self.create_unanswered, "response.create while another is still unanswered"
            self.create_unanswered = True
        elif kind == "conversation.item.truncate":
            assert event["audio_end_ms"] * 8 <= self.received.get(event["item_id"], 0), "truncated past the audio sent"
        elif kind == "conversation.item.create" and event["item"]["type"] == "function_call_output":
            call_id = event["item"]["call_id"]
            self.outputs_this_session[call_id] = self.outputs_this_session.get(call_id, 0) + 1
            assert self.outputs_this_session[call_id] == 1, "two outputs for one tool call in one session"

    # --- sessions ------------------------------------------------------------------------------

    @initialize()
    def first_session_opens(self) -> None:
        self.feed(ModelSessionOpened(session=1))

    @precondition(lambda self: self.state in OFFLINE)
    @rule()
    def session_opens(self) -> None:
        """The model session asked for opens (the first one at the start of most runs)."""
        self.active_response, self.create_unanswered = None, False
        self.outputs_this_session = {}
        self.feed(ModelSessionOpened(session=self.call.core.model.session))

    @precondition(lambda self: self.state in OFFLINE | {CallState.ACTIVE})
    @rule(connected=st.booleans(), retryable=st.sampled_from([True, True, True, False]))
    def session_lost(self, connected: bool, retryable: bool) -> None:
        connected = connected and self.state is CallState.ACTIVE
        self.active_response, self.create_unanswered = None, False
        outputs = self.feed(
            ModelSessionLost(session=self.call.core.model.session, connected=connected, error="x", retryable=retryable)
        )
        assert [o for o in outputs if isinstance(o, OpenModelSession)] or self.state not in OFFLINE

    # --- the model -----------------------------------------------------------------------------

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is None)
    @rule()
    def response_starts(self) -> None:
        self.responses += 1
        response_id = f"resp_{self.responses}"
        self.active_response, self.create_unanswered = response_id, False
        self.server(response_created(response_id))
        self.item = f"item_{self.responses}"
        self.server(message_item_added(self.item, response_id))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is not None)
    @rule(size=st.sampled_from([160, 800, 1600]))
    def audio_arrives(self, size: int) -> None:
        assert self.item is not None and self.active_response is not None
        self.received[self.item] = self.received.get(self.item, 0) + size
        self.server(delta(self.item, b"\x05" * size, self.active_response))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is not None)
    @rule()
    def model_calls_a_tool(self) -> None:
        assert self.active_response is not None
        self.tool_calls += 1
        call_id = f"call_{self.tool_calls}"
        self.unsettled.append(call_id)
        self.server(function_call_done(call_id, response_id=self.active_response))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is not None)
    @rule()
    def response_ends(self) -> None:
        assert self.active_response is not None
        response_id, self.active_response = self.active_response, None
        self.server(response_done(response_id))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.create_unanswered)
    @rule()
    def model_refuses_as_busy(self) -> None:
        self.create_unanswered = False
        self.server(BUSY)

    @precondition(lambda self: self.state is CallState.ACTIVE)
    @rule()
    def caller_barges_in(self) -> None:
        self.server(SPEECH_STARTED)

    # --- the caller ----------------------------------------------------------------------------

    @precondition(lambda self: not self.ended)
    @rule(index=st.integers(0, 255))
    def caller_talks(self, index: int) -> None:
        payload = base64.b64encode(bytes([index]) * 160).decode()
        self.feed(CallerMedia(payload=payload, timestamp=index * 20, chunk=index))

    @precondition(lambda self: not self.ended and bool(self.pending_marks))
    @rule(data=st.data())
    def mark_echoes(self, data: st.DataObject) -> None:
        name = self.pending_marks.pop(data.draw(st.integers(0, len(self.pending_marks) - 1)))
        self.feed(MarkEchoed(name=name))

    # --- tools, timers, console ----------------------------------------------------------------

    @precondition(lambda self: not self.ended and bool(self.unsettled))
    @rule(data=st.data(), twice=st.booleans())
    def tool_settles(self, data: st.DataObject, twice: bool) -> None:
        call_id = self.unsettled.pop(data.draw(st.integers(0, len(self.unsettled) - 1)))
        event = ToolCallCompleted(
            call_id="CAcore", at=0.0, tool_call_id=call_id, name="get_weather", output="{}", duration_ms=1
        )
        for _ in range(2 if twice else 1):
            self.feed(ToolSettled(tool_call_id=call_id, output="{}", event=event))

    @precondition(lambda self: not self.ended)
    @rule()
    def tool_runner_crashes(self) -> None:
        self.unsettled.clear()
        self.feed(ToolRunnerLost(error="boom"))

    @precondition(lambda self: not self.ended)
    @rule(timer=st.sampled_from(list(Timer)))
    def timer_fires(self, timer: Timer) -> None:
        self.feed(TimerFired(timer=timer))

    @precondition(lambda self: not self.ended)
    @rule()
    def console_asks_for_a_response(self) -> None:
        self.feed(ClientEventRequested(event={"type": "response.create"}))

    # --- the end -------------------------------------------------------------------------------

    @precondition(lambda self: not self.ended and self.steps > 30)
    @rule(hang_up=st.booleans())
    def call_ends(self, hang_up: bool) -> None:
        if hang_up:
            self.feed(CallerHungUp())
        self.feed(CallTornDown(reason="server_shutdown"))
        self.ended = True
        events = self.call.events()
        assert isinstance(events[-1], CallEnded)
        assert sum(isinstance(e, CallEnded) for e in events) == 1
        try:
            self.call.feed(MarkEchoed(name="m1"))
        except CoreStateError:
            pass
        else:
            raise AssertionError("an input was accepted after CallEnded")

    @precondition(lambda self: self.ended)
    @rule()
    def nothing_more_happens(self) -> None:
        """Once the call is over there is nothing left to do (hypothesis needs a rule to run)."""

    @invariant()
    def call_ended_is_last_if_recorded(self) -> None:
        events = self.call.events()
        ended = [i for i, e in enumerate(events) if isinstance(e, CallEnded)]
        assert ended in ([], [len(events) - 1])


CallCoreMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=80, deadline=None)
TestCallCore = CallCoreMachine.TestCase
