"""The call core's invariants, over every interleaving hypothesis can find.

A ``RuleBasedStateMachine`` plays everything that can happen to a call in any order — the caller
talking, marks echoing, the model starting and ending responses, streaming audio, calling tools,
reporting errors and barge-ins, sessions dropping and reopening, tools settling (twice, or after a
crash), timers firing, the console asking for responses, the call ending — and checks after every
step what must always hold:

- never two ``response.create`` while one is active or already requested;
- a truncate's ``audio_end_ms`` never exceeds the audio the model sent for that item;
- at most one ``function_call_output`` per tool call in each session, and each call settled once;
- ``CallEnded`` is recorded last, and once; nothing is accepted after it;
- the phone is never hung up or transferred while what was said before it is still unheard (unless
  the wait for it hit its cap), and never told twice.

The agent has every call-control feature on (greeting, end_call, a transfer target, silence and
duration limits, keypad forwarding, session recycling), so those decisions interleave with the rest.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from core_driver import Driver, delta, function_call_done, message_item_added, response_created, response_done
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.call_io import (
    CallBegan,
    CallerHungUp,
    CallerMedia,
    CallTornDown,
    CancelTimer,
    ClientEventRequested,
    CloseModelSession,
    CoreStateError,
    DtmfPressed,
    HangUpPhone,
    HangUpRequested,
    MarkEchoed,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    Output,
    PhoneCommandDone,
    Record,
    RedirectPhone,
    SendToCaller,
    SendToModel,
    StartTimer,
    Timer,
    TimerFired,
    ToolRunnerLost,
    ToolSettled,
    TransferOrdered,
)
from callbridge.engine.call_state import OFFLINE, CallState
from callbridge.engine.events import CallEnded, CallEndRequested, GoodbyeHeard, ToolCallCompleted, ToolCallFailed
from callbridge.engine.reconnect import ReconnectPolicy

SPEECH_STARTED = {"type": "input_audio_buffer.speech_started", "item_id": "u", "audio_start_ms": 0}
BUSY = {
    "type": "error",
    "error": {"type": "invalid_request_error", "code": "conversation_already_has_active_response", "message": "busy"},
}


class CallCoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        agent = Agent(
            greeting="Hello, Acme here.",
            silence_reprompt_s=5,
            silence_hangup_s=5,
            max_duration_s=600,
            session_recycle_s=120,
            dtmf="collect",
            transfer_targets=[TransferTarget(label="sales", to="+15551234567")],
        )
        self.call = Driver(
            reconnect=ReconnectPolicy(max_attempts=3, first_delay_s=0.1, max_delay_s=0.4),
            agent=agent,
            backend_tools=frozenset({"get_weather"}),
        )
        self.call.feed(CallBegan())
        # what the simulated model knows
        self.active_response: str | None = None
        self.create_unanswered = False
        self.responses = 0
        self.item: str | None = None
        self.received: dict[str, int] = {}
        self.pending_marks: list[str] = []
        """Marks of audio the caller has not heard yet, in play order."""
        self.cleared_marks: list[str] = []
        """Marks of audio dropped by a ``clear`` (Twilio echoes them, unplayed)."""
        self.phone_told = 0
        self.caller_talking = False
        self.asked_metadata: dict[str, str] | None = None
        self.recycles: list[int] = []
        self.tool_calls = 0
        self.unsettled: list[str] = []
        self.settled: list[str] = []
        self.outputs_per_session: dict[tuple[int, str], int] = {}
        self.ended = False
        self.steps = 0
        self.timers: set[Timer] = set()
        """Timers the core has armed (only those can fire)."""

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
                self.model_received(json.loads(output.text), output.session)
            elif isinstance(output, SendToCaller):
                for text in output.frames:
                    frame = json.loads(text)
                    if frame["event"] == "mark":
                        self.pending_marks.append(frame["mark"]["name"])
                    elif frame["event"] == "clear":
                        self.cleared_marks.extend(self.pending_marks)
                        self.pending_marks = []
            elif isinstance(output, HangUpPhone | RedirectPhone):
                self.phone_told += 1
                assert self.phone_told == 1, "the phone was told twice"
                heard = self.call.events(GoodbyeHeard)
                operator = any(e.by == "operator" for e in self.call.events(CallEndRequested))
                if not operator:
                    assert heard, "hung up or transferred before deciding the goodbye was heard"
                    assert heard[-1].capped or not self.pending_marks, "hung up while the goodbye still played"
            elif isinstance(output, OpenModelSession) and output.recycle:
                self.recycles.append(output.session)
            elif isinstance(output, CloseModelSession) and output.session in self.recycles:
                self.recycles.remove(output.session)
            elif isinstance(output, StartTimer):
                self.timers.add(output.timer)
            elif isinstance(output, CancelTimer):
                self.timers.discard(output.timer)
            elif isinstance(output, Record) and isinstance(output.event, ToolCallCompleted | ToolCallFailed):
                assert output.event.tool_call_id not in self.settled, "a tool call settled twice"
                self.settled.append(output.event.tool_call_id)

    def model_received(self, event: dict[str, Any], session: int) -> None:
        kind = event["type"]
        if kind == "response.create":
            assert self.active_response is None, "response.create while a response is active"
            assert not self.create_unanswered, "response.create while another is still unanswered"
            self.create_unanswered = True
            self.asked_metadata = (event.get("response") or {}).get("metadata")
        elif kind == "conversation.item.truncate":
            assert event["audio_end_ms"] * 8 <= self.received.get(event["item_id"], 0), "truncated past the audio sent"
        elif kind == "conversation.item.create" and event["item"]["type"] == "function_call_output":
            call_id = event["item"]["call_id"]
            key = (session, call_id)
            self.outputs_per_session[key] = self.outputs_per_session.get(key, 0) + 1
            assert self.outputs_per_session[key] == 1, "two outputs for one tool call in one session"

    # --- sessions ------------------------------------------------------------------------------

    @initialize()
    def first_session_opens(self) -> None:
        self.feed(ModelSessionOpened(session=1))

    @precondition(lambda self: self.state in OFFLINE)
    @rule()
    def session_opens(self) -> None:
        """The model session asked for opens (the first one at the start of most runs)."""
        self.active_response, self.create_unanswered, self.caller_talking = None, False, False
        self.feed(ModelSessionOpened(session=self.call.core.model.session))

    @precondition(lambda self: self.state in OFFLINE | {CallState.ACTIVE})
    @rule(connected=st.booleans(), retryable=st.sampled_from([True, True, True, False]))
    def session_lost(self, connected: bool, retryable: bool) -> None:
        connected = connected and self.state is CallState.ACTIVE
        self.active_response, self.create_unanswered, self.caller_talking = None, False, False
        outputs = self.feed(
            ModelSessionLost(session=self.call.core.model.session, connected=connected, error="x", retryable=retryable)
        )
        assert [o for o in outputs if isinstance(o, OpenModelSession)] or self.state not in OFFLINE

    # --- the model -----------------------------------------------------------------------------

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is None)
    @rule()
    def response_starts(self) -> None:
        """A response starts: the one we asked for (with its metadata), or one the server's VAD began."""
        self.responses += 1
        response_id = f"resp_{self.responses}"
        metadata = self.asked_metadata if self.create_unanswered else None
        self.active_response, self.create_unanswered = response_id, False
        self.server(response_created(response_id, **({"metadata": metadata} if metadata else {})))
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

    @precondition(lambda self: self.state is CallState.ACTIVE and not self.caller_talking)
    @rule()
    def caller_starts_speaking(self) -> None:
        """The model's VAD hears the caller (over the assistant, or not)."""
        self.caller_talking = True
        self.server(SPEECH_STARTED)

    # --- the caller ----------------------------------------------------------------------------

    @precondition(lambda self: not self.ended)
    @rule(index=st.integers(0, 255))
    def caller_talks(self, index: int) -> None:
        payload = base64.b64encode(bytes([index]) * 160).decode()
        self.feed(CallerMedia(payload=payload, timestamp=index * 20, chunk=index))

    @precondition(lambda self: not self.ended and bool(self.pending_marks or self.cleared_marks))
    @rule(cleared=st.booleans())
    def mark_echoes(self, cleared: bool) -> None:
        """Twilio echoes marks in the order it plays them; cleared ones at once, unplayed."""
        source = (
            self.cleared_marks if (cleared and self.cleared_marks) or not self.pending_marks else self.pending_marks
        )
        self.feed(MarkEchoed(name=source.pop(0)))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.caller_talking)
    @rule()
    def caller_stops_speaking(self) -> None:
        self.caller_talking = False
        self.server({"type": "input_audio_buffer.speech_stopped", "item_id": "u", "audio_end_ms": 100})

    @precondition(lambda self: not self.ended)
    @rule(digit=st.sampled_from(list("123#")))
    def caller_presses_a_key(self, digit: str) -> None:
        self.feed(DtmfPressed(digit=digit))

    @precondition(lambda self: self.state is CallState.ACTIVE and self.active_response is not None)
    @rule(name=st.sampled_from(["end_call", "transfer_call", "transfer_nowhere", "send_dtmf"]))
    def model_controls_the_call(self, name: str) -> None:
        assert self.active_response is not None
        self.tool_calls += 1
        call_id = f"call_{self.tool_calls}"
        arguments = {
            "end_call": {"reason": "done"},
            "transfer_call": {"target": "sales", "reason": "wants sales"},
            "transfer_nowhere": {"target": "the moon", "reason": "?"},
            "send_dtmf": {"digits": "12#"},
        }[name]
        event = function_call_done(call_id, name=name.replace("_nowhere", "_call"), response_id=self.active_response)
        self.server({**event, "arguments": json.dumps(arguments)})

    @precondition(lambda self: not self.ended and self.phone_told > 0)
    @rule(method=st.sampled_from(["rest", "stream"]), ok=st.booleans())
    def phone_answers(self, method: str, ok: bool) -> None:
        self.feed(PhoneCommandDone(kind="hang_up", method=method, ok=ok))

    @precondition(lambda self: not self.ended and self.steps > 40)
    @rule(by=st.sampled_from(["operator", "server"]))
    def somebody_hangs_up(self, by: str) -> None:
        self.feed(HangUpRequested(reason=f"{by} says so", by=by))

    @precondition(lambda self: not self.ended and self.steps > 40)
    @rule(label=st.sampled_from(["sales", "nobody"]))
    def operator_transfers(self, label: str) -> None:
        self.feed(TransferOrdered(label=label))

    @precondition(lambda self: self.state is CallState.ACTIVE and bool(self.recycles))
    @rule(opens=st.booleans())
    def recycled_session_answers(self, opens: bool) -> None:
        session = self.recycles.pop(0)
        if opens:
            self.feed(ModelSessionOpened(session=session))
        else:
            self.feed(ModelSessionLost(session=session, connected=False, error="refused"))

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

    @precondition(lambda self: not self.ended and bool(self.unsettled))
    @rule()
    def tool_runner_crashes(self) -> None:
        self.unsettled.clear()
        self.feed(ToolRunnerLost(error="boom"))

    @precondition(lambda self: not self.ended and bool(self.timers))
    @rule(data=st.data())
    def timer_fires(self, data: st.DataObject) -> None:
        timer = data.draw(st.sampled_from(sorted(self.timers, key=lambda t: t.value)))
        self.timers.discard(timer)
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
