"""The greeting is an ordinary reply as far as barge-in goes: a caller who talks over it stops it
(Twilio told to ``clear``, the model told where to ``truncate``, ``BargeInDecided`` recorded), over
real sockets, checked at the simulated caller's ear and at the simulated model."""

from __future__ import annotations

import json
from pathlib import Path

from phone_harness import of_type, phone_bridge
from test_phone_control import inbound

from callbridge.adapters.sim.caller import BargeIn, HangUp, Silence, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.engine.agent import Agent
from callbridge.engine.events import AssistantAudioSent, BargeInDecided, GreetingAudioStarted, PlaybackCleared

LONG_GREETING = (
    "Thanks for calling Acme Plumbing, the friendliest plumbers in town. "
    "This is the assistant speaking, how can I help you today?"
)  # about 8 s of simulated speech: plenty to talk over
ANSWER = "Of course, go ahead."


async def test_the_caller_talking_over_the_greeting_cuts_it_at_what_was_heard(tmp_path: Path) -> None:
    script = Script(turns=[Turn(transcript="Sorry, quick question.", reply=ANSWER)])
    steps = [BargeIn(after_ms=1500, speak_ms=900), WaitForAssistant(timeout_s=15), Silence(200), HangUp()]
    async with phone_bridge(tmp_path, agent=Agent(greeting=LONG_GREETING), script=script) as phone:
        call = await inbound(phone, steps)
        events = await phone.events(call.sid)
        session = phone.bridge.fake.sessions[0]

    report = call.report
    assert report is not None and report.errors == [] and report.barge_ins_over_audio == 1
    greeting = of_type(events, GreetingAudioStarted)[0].response_id
    greeting_item = next(e.item_id for e in of_type(events, AssistantAudioSent) if e.response_id == greeting)
    decisions = [d for d in of_type(events, BargeInDecided) if d.action == "truncated"]
    assert [d.item_id for d in decisions] == [greeting_item]
    decision = decisions[0]
    # cut where the caller's playback really was (mark echoes, to within one chunk), well before its end
    heard_ms = report.heard[0].byte_count / 8
    assert heard_ms - 150 <= decision.played_ms <= heard_ms
    assert 1000 <= decision.played_ms < decision.received_ms
    assert decision.audio_end_ms == decision.played_ms
    assert report.clears_received == 1 and [c.item_id for c in of_type(events, PlaybackCleared)] == [greeting_item]
    truncates = [json.loads(e.raw) for e in session.client_events if e.type == "conversation.item.truncate"]
    assert truncates == [
        {"type": "conversation.item.truncate", "item_id": greeting_item, "content_index": 0,
         "audio_end_ms": decision.played_ms}
    ]  # fmt: skip
    assert "conversation.item.truncated" in session.server_types()
    cleared_at = of_type(events, PlaybackCleared)[0].at
    assert [e for e in of_type(events, AssistantAudioSent) if e.item_id == greeting_item and e.at > cleared_at] == []
    # the caller then heard the answer to what it said over the greeting, in full
    answer = [e for e in of_type(events, AssistantAudioSent) if e.response_id != greeting]
    assert answer and report.heard_audio.endswith(b"".join(e.payload for e in answer))
