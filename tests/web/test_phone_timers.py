"""Silence timers measured from playback, the maximum call duration (a wrap-up hint, then a goodbye
heard in full before the hang-up) and the model session renewed with no gap, over real sockets.
(The simulated model sends audio twice as fast as it plays, so "sent" and "heard" differ by
seconds: a timer started when audio was *sent* would fire early.)"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import msgspec
import trio
from phone_harness import of_type, phone_bridge

from callbridge.adapters.sim.caller import HangUp, Murmur, Speak, WaitForAssistant, WaitForHangUp
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.playback import HeardSpan
from callbridge.engine.agent import Agent, load_agent
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallEnded,
    CallEndRequested,
    CallerAudioReceived,
    CallStarted,
    DurationWarningGiven,
    GoodbyeHeard,
    GreetingAudioStarted,
    ModelSessionRecycled,
    PhoneHangUpSent,
    SilenceReprompted,
)

SILENT = Agent(
    greeting="Hello, this is Acme Plumbing, how can I help you today?", silence_reprompt_s=2.0, silence_hangup_s=2.0
)


async def test_a_silent_caller_is_reprompted_after_hearing_the_agent_then_said_goodbye_to_and_hung_up_on(
    tmp_path: Path,
) -> None:
    async with phone_bridge(tmp_path, agent=SILENT) as phone:
        with trio.fail_after(40):
            call = await phone.twilio.calls.place_inbound(phone.base_url, script=[WaitForHangUp(timeout_s=30)])
            await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)

    report = call.report
    assert report is not None and report.errors == [] and report.ended_by == "remote"
    greeting = of_type(events, GreetingAudioStarted)[0].response_id
    greeting_item = next(e.item_id for e in of_type(events, AssistantAudioSent) if e.response_id == greeting)
    greeting_sent = max(e.at for e in of_type(events, AssistantAudioSent) if e.response_id == greeting)
    greeting_played = max(e.at for e in of_type(events, AssistantAudioPlayed) if e.item_id == greeting_item)
    reprompt = of_type(events, SilenceReprompted)[0]
    assert greeting_played - greeting_sent > 1.0  # sent well before it was heard
    assert 2.0 <= reprompt.at - greeting_played < 3.0  # counted from the last mark echoed
    assert 2000 <= reprompt.silent_ms < 3000
    # the caller's ear agrees: a silence of at least 2 s between hearing the greeting and the re-prompt
    heard = utterances(report.heard)
    assert 2.0 <= heard[1].start - heard[0].end < 4.5
    ended = of_type(events, CallEndRequested)
    assert [e.by for e in ended] == ["silence"] and ended[0].at - reprompt.at >= 2.0
    assert [h.method for h in of_type(events, PhoneHangUpSent)] == ["rest"]
    assert len(heard) == 3  # greeting, re-prompt, goodbye: each heard before the hang-up
    assert report.hung_up_s is not None and heard[-1].end <= report.hung_up_s


def utterances(spans: list[HeardSpan]) -> list[HeardSpan]:
    """What the caller heard as separate utterances: stretches of audio apart by a second or more. A
    stall of a loaded test machine can run the caller's buffer dry for a moment inside one utterance
    (the sender is only twice as fast as playback), which splits a span but not what was said."""
    merged: list[HeardSpan] = []
    for span in spans:
        if merged and span.start - merged[-1].end < 1.0:
            last = merged.pop()
            span = HeardSpan(start=last.start, end=span.end, byte_count=last.byte_count + span.byte_count)
        merged.append(span)
    return merged


SHORT_CALLS = """
greeting = "Hello, Acme Plumbing."
max_duration_s = 12              # (a file may set no less than 10 s)
max_duration_warning_s = 4       # wrap up 4 s before it
"""


async def test_at_its_time_limit_the_call_is_wrapped_up_said_goodbye_to_and_hung_up(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(SHORT_CALLS)
    agent = load_agent(tmp_path / "agent.toml")
    script = Script(turns=[Turn(transcript="Tell me about boilers.", reply="Boilers heat water for the house.")])
    steps = [WaitForAssistant(timeout_s=10), Speak(800), WaitForAssistant(timeout_s=10), WaitForHangUp(timeout_s=20)]
    async with phone_bridge(tmp_path, agent=agent, script=script) as phone:
        with trio.fail_after(40):
            call = await phone.twilio.calls.place_inbound(phone.base_url, script=steps)
            await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)
        (session,) = phone.bridge.fake.sessions

    report = call.report
    assert report is not None and report.errors == [] and report.ended_by == "remote"
    started = of_type(events, CallStarted)[0].at
    (warning,) = of_type(events, DurationWarningGiven)
    assert warning.remaining_s == 4 and 8.0 <= warning.at - started < 9.0
    # the hint reached the model as a system message, while the caller was still on the line
    hints = [
        (e.at, part["text"])
        for e in session.client_events
        if e.type == "conversation.item.create"
        for part in json.loads(e.raw)["item"].get("content", [])
        if json.loads(e.raw)["item"].get("role") == "system"
    ]
    assert len(hints) == 1 and "wrapping up" in hints[0][1] and "4 seconds" in hints[0][1]
    assert 7.5 <= hints[0][0] - session.connected_at < 9.0  # the session opens just after the call began
    (ended,) = of_type(events, CallEndRequested)
    assert (ended.by, ended.reason) == ("max_duration", "12 s") and 12.0 <= ended.at - started < 13.0
    goodbye_id = of_type(events, AssistantAudioSent)[-1].response_id
    goodbye = b"".join(e.payload for e in of_type(events, AssistantAudioSent) if e.response_id == goodbye_id)
    assert all(e.at > ended.at for e in of_type(events, AssistantAudioSent) if e.response_id == goodbye_id)
    assert goodbye and report.heard_audio.endswith(goodbye)  # every byte of the goodbye was played
    heard, hung_up = of_type(events, GoodbyeHeard)[0], of_type(events, PhoneHangUpSent)[0]
    assert not heard.capped and events.index(heard) < events.index(hung_up) and hung_up.method == "rest"
    assert report.hung_up_s is not None and report.heard[-1].end <= report.hung_up_s
    assert call.hung_up_by == "rest" and [e.reason for e in of_type(events, CallEnded)] == ["max_duration"]


def appends(received: list) -> list[bytes]:  # type: ignore[type-arg]
    """The caller audio a model session received, frame by frame."""
    return [base64.b64decode(json.loads(e.raw)["audio"]) for e in received if e.type == "input_audio_buffer.append"]


def frames_of(events: list) -> list[bytes]:  # type: ignore[type-arg]
    """Every caller frame the engine received, in order."""
    frames = []
    for chunk in of_type(events, CallerAudioReceived):
        offset = 0
        for size in chunk.frame_sizes:
            frames.append(chunk.payload[offset : offset + size])
            offset += size
    return frames


async def test_a_recycled_session_gets_the_callers_audio_with_no_frame_lost_or_repeated(tmp_path: Path) -> None:
    agent = Agent(greeting="Hello there.")
    msgspec.structs.force_setattr(agent, "session_recycle_s", 1.5)  # far below the 60 s a file may set
    async with phone_bridge(tmp_path, agent=agent) as phone:
        with trio.fail_after(40):
            call = await phone.twilio.calls.place_inbound(phone.base_url, script=[Murmur(6000), HangUp()])
            await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)
        appended = [
            [
                base64.b64decode(json.loads(e.raw)["audio"])
                for e in s.client_events
                if e.type == "input_audio_buffer.append"
            ]
            for s in phone.bridge.fake.sessions
        ]

    recycles = of_type(events, ModelSessionRecycled)
    assert recycles, "no session was recycled"
    frames = frames_of(events)
    for recycle in recycles:
        old, new = appended[recycle.from_session - 1], appended[recycle.to_session - 1]
        assert old and new
        last_old, first_new = frames.index(old[-1]), frames.index(first := new[0])
        assert frames.count(old[-1]) == frames.count(first) == 1  # the murmur never repeats a frame
        assert first_new == last_old + 1, (recycle, last_old, first_new)
    assert len(phone.bridge.fake.sessions) == len(recycles) + 1
