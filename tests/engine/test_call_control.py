"""Specification of call control in the core (engine/call_control.py, call_keypad.py, call_recycle.py).

Greeting, hang-up after the goodbye is heard, transfers, the keypad both ways, silence and duration
limits, voicemail and session recycling — each decided from what the caller really heard (mark
echoes), each recorded. Fed by hand: no sockets, no clock.
"""

from __future__ import annotations

import base64
import json

from core_driver import Driver, delta, frame, function_call_done, message_item_added, response_created, response_done

from callbridge.adapters.twilio import codec
from callbridge.engine.agent import Agent, TransferTarget
from callbridge.engine.call_io import (
    CallBegan,
    CallerHungUp,
    CallTornDown,
    CancelTimer,
    CloseModelSession,
    DtmfPressed,
    EndCall,
    HangUpPhone,
    HangUpRequested,
    MachineDetectionReported,
    MarkEchoed,
    ModelSessionLost,
    ModelSessionOpened,
    OpenModelSession,
    PhoneCommandDone,
    RedirectPhone,
    SendToModel,
    StartTimer,
    Timer,
    TimerFired,
    TransferOrdered,
)
from callbridge.engine.events import (
    AssistantAudioSent,
    CallEnded,
    CallEndRequested,
    DtmfForwarded,
    DtmfSent,
    DurationWarningGiven,
    GoodbyeHeard,
    GreetingAudioStarted,
    MachineDetected,
    ModelSessionRecycled,
    PhoneHangUpSent,
    SilenceReprompted,
    ToolCallCompleted,
    ToolCallFailed,
    TransferDialed,
    TransferRefused,
    TransferRequested,
)

SALES = TransferTarget(label="sales", to="+15551234567", caller_id="+15557654321", timeout_s=20)


def speak(call: Driver, response_id: str, item_id: str, chunks: int = 3, metadata: dict | None = None) -> list[str]:
    """The model says something: a response with ``chunks`` x 200 ms of audio; returns the marks sent."""
    call.server(response_created(response_id, **({"metadata": metadata} if metadata else {})))
    call.server(message_item_added(item_id, response_id))
    marks = []
    for _ in range(chunks):
        outputs = call.server(delta(item_id, b"\x07" * 1600, response_id))
        marks.append(call.to_caller(outputs)[-1].mark.name)
    return marks


def echo(call: Driver, marks: list[str], dt: float = 0.2) -> None:
    for mark in marks:
        call.feed(MarkEchoed(name=mark), dt=dt)


def end_call_by_model(call: Driver, response_id: str = "resp_bye") -> list[str]:
    marks = speak(call, response_id, "item_bye")  # "Goodbye!" …
    done = function_call_done("call_end", name="end_call", response_id=response_id)
    call.server({**done, "arguments": json.dumps({"reason": "the caller is done"})})  # … then end_call
    call.server(response_done(response_id))
    return marks


# --- greeting ------------------------------------------------------------------------------------


def test_the_agent_greets_first_and_the_wait_for_the_greeting_is_recorded() -> None:
    call = Driver(agent=Agent(greeting="Thanks for calling Acme!"))
    call.feed(CallBegan())
    opened = call.feed(ModelSessionOpened(session=1), dt=0.3)
    create = [e for e in call.to_model(opened) if e["type"] == "response.create"]
    assert create == [
        {
            "type": "response.create",
            "response": {
                "instructions": 'Say this to the caller, word for word: "Thanks for calling Acme!"',
                "metadata": {"callbridge": "greeting"},
            },
        }
    ]
    call.server(response_created("resp_g", metadata={"callbridge": "greeting"}))
    call.server(message_item_added("item_g", "resp_g"))
    call.now += 0.45
    call.server(delta("item_g", b"\x07" * 1600, "resp_g"))
    [greeting] = call.events(GreetingAudioStarted)
    assert greeting.response_id == "resp_g" and greeting.latency_ms == 750


def test_without_a_greeting_the_caller_speaks_first() -> None:
    call = Driver()
    call.start()
    assert "response.create" not in call.model_types()


def test_an_outbound_call_greets_a_person_after_detection_and_leaves_voicemail_for_a_machine() -> None:
    person = Driver(agent=Agent(greeting="Hi, this is Acme."), direction="outbound-api")
    person.start()
    assert "response.create" not in person.model_types()  # waiting for answering-machine detection
    assert StartTimer(timer=Timer.AMD_WAIT, delay_s=6.0) in person.outputs
    outputs = person.feed(MachineDetectionReported(answered_by="human", detection_ms=1800))
    assert person.model_types(outputs) == ["response.create"]
    assert person.events(MachineDetected)[0].answered_by == "human"

    machine = Driver(
        agent=Agent(greeting="Hi, this is Acme.", voicemail_message="Please call Acme back."),
        direction="outbound-api",
    )
    machine.start()
    outputs = machine.feed(MachineDetectionReported(answered_by="machine_end_beep"))
    [create] = [e for e in machine.to_model(outputs) if e["type"] == "response.create"]
    assert create["response"]["instructions"] == 'Say this to the caller, word for word: "Please call Acme back."'
    assert machine.events(CallEndRequested)[0].by == "voicemail"
    marks = speak(machine, "resp_vm", "item_vm", metadata={"callbridge": "goodbye:voicemail"})
    machine.server(response_done("resp_vm"))
    assert machine.of(HangUpPhone) == []  # not while the message still plays
    echo(machine, marks)
    assert len(machine.of(HangUpPhone)) == 1
    machine.feed(PhoneCommandDone(kind="hang_up", method="stream"))
    assert machine.of(EndCall)[-1].reason == "voicemail_left"


# --- hanging up ----------------------------------------------------------------------------------


def test_end_call_hangs_up_only_after_the_goodbye_is_heard() -> None:
    call = Driver()
    call.start()
    marks = end_call_by_model(call)
    assert call.events(CallEndRequested)[0].by == "model"
    assert call.events(ToolCallCompleted)[0].source == "builtin"
    assert "response.create" not in call.model_types()  # the model already said goodbye
    echo(call, marks[:2])
    assert call.of(HangUpPhone) == []  # 200 ms of the goodbye is still unheard
    echo(call, marks[2:])
    assert len(call.of(HangUpPhone)) == 1
    [heard] = call.events(GoodbyeHeard)
    assert heard.capped is False and heard.waited_ms == 600
    call.feed(PhoneCommandDone(kind="hang_up", method="rest"))
    assert call.events(PhoneHangUpSent)[0].method == "rest"
    assert call.of(EndCall) == [] and StartTimer(timer=Timer.PHONE_CAP, delay_s=5.0) in call.outputs
    call.feed(CallerHungUp())  # Twilio stops
    call.feed(CallTornDown())
    assert call.events(CallEnded)[0].reason == "agent_hangup"


def test_an_end_call_without_a_goodbye_asks_for_one_and_the_wait_is_capped() -> None:
    call = Driver()
    call.start()
    call.server(response_created("resp_1"))
    call.server({**function_call_done("call_end", name="end_call"), "arguments": '{"reason": "done"}'})
    call.server(response_done("resp_1"))
    [create] = [e for e in call.to_model() if e["type"] == "response.create"]
    assert create["response"]["metadata"] == {"callbridge": "goodbye:model"}
    speak(call, "resp_2", "item_2")  # the goodbye plays, but no echo ever comes back
    call.server(response_done("resp_2"))
    assert call.of(HangUpPhone) == []
    call.feed(TimerFired(timer=Timer.WRAP_UP_CAP), dt=20)
    assert call.events(GoodbyeHeard)[0].capped and len(call.of(HangUpPhone)) == 1


def test_without_twilio_credentials_the_stream_ends_and_a_refused_rest_call_falls_back_to_it() -> None:
    call = Driver()
    call.start()
    echo(call, end_call_by_model(call))
    outputs = call.feed(PhoneCommandDone(kind="hang_up", method="rest", ok=False, error="HTTP 404"))
    assert call.events(PhoneHangUpSent)[0].ok is False
    assert call.of(EndCall, outputs) == [EndCall(reason="agent_hangup")]


def test_an_operator_hangs_up_at_once_without_a_goodbye() -> None:
    call = Driver()
    call.start()
    speak(call, "resp_1", "item_1")  # mid-sentence
    outputs = call.feed(HangUpRequested(reason="abusive caller", by="operator"))
    assert call.events(CallEndRequested)[0].by == "operator" and call.events(GoodbyeHeard) == []
    assert len(call.of(HangUpPhone, outputs)) == 1
    call.feed(PhoneCommandDone(kind="hang_up", method="stream"))
    assert call.of(EndCall)[-1].reason == "operator_hangup"


# --- transfers -----------------------------------------------------------------------------------


def test_a_transfer_to_a_target_the_model_invents_is_refused_and_nothing_is_dialled() -> None:
    call = Driver(agent=Agent(transfer_targets=[SALES]))
    call.start()
    call.server(response_created("resp_1"))
    done = function_call_done("call_t", name="transfer_call")
    call.server({**done, "arguments": json.dumps({"target": "+15559999999", "reason": "asked for it"})})
    refused = call.events(TransferRefused)
    assert refused and "+15559999999" in refused[0].label and "sales" in refused[0].reason
    assert call.events(ToolCallFailed)[0].tool_call_id == "call_t"
    assert call.of(RedirectPhone) == [] and call.events(TransferRequested) == []
    call.server(response_done("resp_1"))
    assert "response.create" in call.model_types()  # the model tells the caller it can't


def test_a_cold_transfer_is_announced_heard_then_dialled_with_the_targets_caller_id_and_timeout() -> None:
    call = Driver(agent=Agent(transfer_targets=[SALES]))
    call.start()
    marks = speak(call, "resp_1", "item_1")  # "Let me put you through to sales."
    done = function_call_done("call_t", name="transfer_call", response_id="resp_1")
    call.server({**done, "arguments": json.dumps({"target": "Sales", "reason": "wants a quote"})})
    call.server(response_done("resp_1"))
    [requested] = call.events(TransferRequested)
    assert (requested.label, requested.to, requested.mode) == ("sales", "+15551234567", "cold")
    assert call.of(RedirectPhone) == []
    echo(call, marks)
    [redirect] = call.of(RedirectPhone)
    assert '<Dial callerId="+15557654321" timeout="20"><Number>+15551234567</Number></Dial>' in redirect.twiml
    call.feed(PhoneCommandDone(kind="redirect", method="stream"))
    assert call.events(TransferDialed)[0].twiml == redirect.twiml
    assert call.of(EndCall)[-1].reason == "transferred"


def test_an_operator_transfer_is_announced_first() -> None:
    call = Driver(agent=Agent(transfer_targets=[SALES]))
    call.start()
    outputs = call.feed(TransferOrdered(label="sales"))
    [create] = [e for e in call.to_model(outputs) if e["type"] == "response.create"]
    assert "transferring them to sales" in create["response"]["instructions"]
    assert call.events(TransferRequested)[0].by == "operator"
    call.feed(TransferOrdered(label="nobody"))  # already transferring
    assert len(call.events(TransferRefused)) == 1


# --- the keypad ----------------------------------------------------------------------------------


def test_keys_reach_the_model_one_by_one_in_model_mode() -> None:
    call = Driver()
    call.start()
    outputs = call.feed(DtmfPressed(digit="5"))
    [item, create] = call.to_model(outputs)
    assert item["item"]["content"][0]["text"] == "(The caller pressed 5 on the keypad.)"
    assert create["type"] == "response.create"
    assert call.events(DtmfForwarded)[0].mode == "model"


def test_collect_mode_sends_the_whole_entry_once_at_hash_or_after_a_pause() -> None:
    call = Driver(agent=Agent(dtmf="collect", dtmf_collect_timeout_s=2.0))
    call.start()
    for digit in "1234":
        assert call.to_model(call.feed(DtmfPressed(digit=digit))) == []
    outputs = call.feed(DtmfPressed(digit="#"))
    assert call.to_model(outputs)[0]["item"]["content"][0]["text"] == "(The caller entered 1234 on the keypad.)"
    call.feed(DtmfPressed(digit="9"))
    outputs = call.feed(TimerFired(timer=Timer.DTMF_COLLECT), dt=2.0)
    assert [f.digits for f in call.events(DtmfForwarded)] == ["1234", "9"]


def test_ignore_mode_only_records_the_keys() -> None:
    call = Driver(agent=Agent(dtmf="ignore"))
    call.start()
    assert call.to_model(call.feed(DtmfPressed(digit="1"))) == [] and call.events(DtmfForwarded) == []


def test_send_dtmf_plays_tones_to_the_line_records_them_as_audio_and_answers_the_model() -> None:
    call = Driver(agent=Agent(dtmf_tone_ms=100, dtmf_gap_ms=50))
    call.start()
    call.server(response_created("resp_1"))
    done = function_call_done("call_d", name="send_dtmf")
    outputs = call.server({**done, "arguments": json.dumps({"digits": "12#"})})
    frames = call.to_caller(outputs)
    audio = b"".join(base64.b64decode(f.media.payload) for f in frames if isinstance(f, codec.OutboundMedia))
    assert len(audio) == 3 * (800 + 400)  # three 100 ms tones, each followed by 50 ms of silence
    assert isinstance(frames[-1], codec.OutboundMark)
    assert call.events(DtmfSent)[0].digits == "12#"
    assert call.events(AssistantAudioSent)[-1].payload == audio  # in the recording too
    [output] = [e["item"] for e in call.to_model(outputs) if e["type"] == "conversation.item.create"]
    assert json.loads(output["output"]) == {"ok": True, "sent": "12#", "audio_ms": 450}


# --- silence and duration ------------------------------------------------------------------------


def last_silence_timer(call: Driver) -> object:
    return [o for o in call.outputs if isinstance(o, StartTimer | CancelTimer) and o.timer is Timer.SILENCE][-1]


def test_silence_is_measured_from_the_end_of_what_the_caller_heard_then_reprompted_then_hung_up() -> None:
    call = Driver(agent=Agent(silence_reprompt_s=8, silence_hangup_s=6))
    call.start()
    marks = speak(call, "resp_1", "item_1")
    call.server(response_done("resp_1"))
    assert last_silence_timer(call) == CancelTimer(timer=Timer.SILENCE)  # sent, but not heard yet
    echo(call, marks[:-1])
    assert last_silence_timer(call) == CancelTimer(timer=Timer.SILENCE)
    echo(call, marks[-1:])
    assert last_silence_timer(call) == StartTimer(timer=Timer.SILENCE, delay_s=8)  # armed once heard
    outputs = call.feed(TimerFired(timer=Timer.SILENCE), dt=8)
    assert call.events(SilenceReprompted)[0].silent_ms == 8000
    reprompt = next(e for e in call.to_model(outputs) if e["type"] == "response.create")
    assert reprompt["response"]["metadata"] == {"callbridge": "reprompt"}
    marks = speak(call, "resp_2", "item_2", chunks=1)  # "Are you still there?"
    call.server(response_done("resp_2"))
    echo(call, marks)
    assert StartTimer(timer=Timer.SILENCE, delay_s=6) in call.outputs
    call.feed(TimerFired(timer=Timer.SILENCE), dt=6)
    assert call.events(CallEndRequested)[0].by == "silence"


def test_the_caller_speaking_resets_the_silence_timer() -> None:
    call = Driver(agent=Agent(silence_reprompt_s=8))
    call.start()
    call.server({"type": "input_audio_buffer.speech_started", "item_id": "u1", "audio_start_ms": 0})
    assert call.of(CancelTimer)[-1].timer is Timer.SILENCE


def test_a_call_near_its_maximum_duration_is_told_to_wrap_up_then_ended() -> None:
    call = Driver(agent=Agent(max_duration_s=600, max_duration_warning_s=60))
    outputs = call.feed(CallBegan())
    assert StartTimer(timer=Timer.DURATION_LIMIT, delay_s=600) in outputs
    assert StartTimer(timer=Timer.DURATION_WARNING, delay_s=540) in outputs
    call.feed(ModelSessionOpened(session=1))
    outputs = call.feed(TimerFired(timer=Timer.DURATION_WARNING), dt=540)
    [note] = call.to_model(outputs)
    assert note["item"]["role"] == "system" and "60 seconds" in note["item"]["content"][0]["text"]
    assert call.events(DurationWarningGiven)[0].remaining_s == 60
    call.feed(TimerFired(timer=Timer.DURATION_LIMIT), dt=60)
    assert call.events(CallEndRequested)[0].by == "max_duration"


# --- session recycle -----------------------------------------------------------------------------


def test_the_session_is_renewed_at_a_quiet_moment_beside_the_current_one() -> None:
    call = Driver(agent=Agent(session_recycle_s=3000))
    call.start()
    call.server(
        {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": "u1",
            "content_index": 0,
            "transcript": "My name is Ada",
        }
    )
    marks = speak(call, "resp_1", "item_1")
    outputs = call.feed(TimerFired(timer=Timer.RECYCLE), dt=3000)
    assert call.of(OpenModelSession, outputs) == [] and StartTimer(timer=Timer.RECYCLE, delay_s=1.0) in outputs
    call.server(response_done("resp_1"))
    echo(call, marks)
    outputs = call.feed(TimerFired(timer=Timer.RECYCLE), dt=1)
    assert call.of(OpenModelSession, outputs) == [OpenModelSession(session=2, delay_s=0.0, recycle=True)]
    call.feed(frame(1))  # the caller's audio still goes to session 1
    assert [o.session for o in call.of(SendToModel) if o.audio] == [1]
    outputs = call.feed(ModelSessionOpened(session=2))
    sent_to_2 = [json.loads(o.text) for o in outputs if getattr(o, "session", None) == 2]
    assert sent_to_2[0]["type"] == "session.update"
    assert sent_to_2[1]["item"]["content"][0]["text"] == "My name is Ada"
    assert call.of(CloseModelSession, outputs) == [CloseModelSession(session=1)]
    assert call.events(ModelSessionRecycled)[0].to_session == 2
    call.feed(frame(2))
    audio = [o for o in call.outputs if getattr(o, "audio", False)]
    assert [o.session for o in audio] == [1, 2]


def test_a_recycle_that_fails_to_open_leaves_the_current_session_alone() -> None:
    call = Driver()
    call.start()
    call.feed(TimerFired(timer=Timer.RECYCLE), dt=3000)
    outputs = call.feed(ModelSessionLost(session=2, connected=False, error="refused"))
    assert StartTimer(timer=Timer.RECYCLE, delay_s=30.0) in outputs
    assert call.core.model.session == 1 and call.events(ModelSessionRecycled) == []


def test_a_session_lost_while_a_recycle_is_pending_reconnects_on_a_number_of_its_own() -> None:
    call = Driver(agent=Agent(session_recycle_s=3000))
    call.start()
    call.feed(ModelSessionLost(session=1, connected=True, error="reset"))
    call.feed(ModelSessionOpened(session=call.last_open().session), dt=1)  # reconnected on session 2
    [recycle] = call.of(OpenModelSession, call.feed(TimerFired(timer=Timer.RECYCLE), dt=3000))
    outputs = call.feed(ModelSessionLost(session=2, connected=True, error="reset again"))
    assert CloseModelSession(session=recycle.session) in outputs  # the half-open recycle is given up
    assert call.last_open().session not in (1, 2, recycle.session)
