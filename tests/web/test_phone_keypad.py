"""The keypad both ways over real sockets: the model presses keys (``send_dtmf``) and the caller's
ear — and the call's recording, fetched from the API — decode the tones back with a Goertzel
detector written here; the caller presses keys and the model is told, key by key or as a collected
entry, or (``dtmf = "ignore"``) nothing at all."""

from __future__ import annotations

import array
import io
import json
import math
import wave
from pathlib import Path

import trio
from phone_harness import of_type, phone_bridge

from callbridge.adapters import mulaw
from callbridge.adapters.sim.caller import Dtmf, HangUp, Silence, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.agent import Agent
from callbridge.engine.events import DtmfForwarded, DtmfReceived

ROWS = (697, 770, 852, 941)
COLUMNS = (1209, 1336, 1477)
KEYS = {(697, 1209): "1", (697, 1336): "2", (697, 1477): "3", (770, 1209): "4", (770, 1336): "5",
        (770, 1477): "6", (852, 1209): "7", (852, 1336): "8", (852, 1477): "9", (941, 1209): "*",
        (941, 1336): "0", (941, 1477): "#"}  # fmt: skip
BLOCK = 160  # 20 ms at 8 kHz: 50 Hz bins, finer than the 73 Hz between DTMF rows


def goertzel(samples: list[int], frequency: int) -> float:
    """The power of ``frequency`` in ``samples``, relative to a full-scale sine of that frequency
    with the block's energy (about 0.5 for each tone of a pure key)."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / 8000)
    previous = before = 0.0
    for sample in samples:
        previous, before = sample + coefficient * previous - before, previous
    power = previous * previous + before * before - coefficient * previous * before
    energy = sum(s * s for s in samples)
    return power / (len(samples) * energy / 2) if energy else 0.0


def decode_keys(audio: bytes) -> str:
    """The keys pressed in μ-law ``audio`` (see :func:`decode_samples`)."""
    return decode_samples(mulaw.decode(audio))


def decode_samples(pcm: list[int]) -> str:
    """The keys pressed in 8 kHz linear ``pcm``: a key is a block whose strongest row and column tones
    each hold a good share of its energy and clearly beat their neighbours; a key is counted once per run."""
    keys, last = [], None
    for start in range(0, len(pcm) - BLOCK + 1, BLOCK):
        samples = pcm[start : start + BLOCK]
        rows = sorted(((goertzel(samples, f), f) for f in ROWS), reverse=True)
        columns = sorted(((goertzel(samples, f), f) for f in COLUMNS), reverse=True)
        strong = rows[0][0] > 0.25 and columns[0][0] > 0.25
        clear = rows[1][0] < rows[0][0] / 4 and columns[1][0] < columns[0][0] / 4
        key = KEYS[(rows[0][1], columns[0][1])] if strong and clear else None
        if key is not None and key != last:
            keys.append(key)
        last = key
    return "".join(keys)


def test_the_detector_reads_the_engines_tones_and_ignores_speech() -> None:
    from callbridge.adapters.sim.voice import speech
    from callbridge.engine.dtmf import dial

    assert decode_keys(dial("159#", tone_ms=100, gap_ms=80)) == "159#"
    assert decode_keys(speech(3000)) == ""


def channel(wav: bytes, index: int) -> list[int]:
    """One channel of a stereo 16-bit WAV (0: the caller's, 1: the assistant's), as samples."""
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 8000)
        frames = reader.readframes(reader.getnframes())
    return list(array.array("h", frames)[index::2])


async def test_the_model_presses_keys_and_the_caller_hears_them_as_real_tones(tmp_path: Path) -> None:
    script = Script(
        turns=[Turn(transcript="Press it.", function_call=FunctionCall(name="send_dtmf", arguments={"digits": "123#"}))]
    )
    async with phone_bridge(tmp_path, agent=Agent(), script=script) as phone:
        with trio.fail_after(30):
            call = await phone.twilio.calls.place_inbound(
                phone.base_url, script=[Speak(800), WaitForAssistant(timeout_s=10), HangUp()]
            )
            await phone.bridge.wait_call_ended(call.sid)
        recording = await phone.http.get(f"/api/calls/{call.sid}/recording.wav")
    assert call.report is not None and call.report.errors == []
    assert decode_keys(call.report.heard_audio) == "123#"
    # and the call's recording holds them too: the API's WAV, assistant channel, decoded the same way
    assert recording.status_code == 200 and recording.headers["content-type"].startswith("audio/")
    assert decode_samples(channel(recording.content, 1)) == "123#"
    assert decode_samples(channel(recording.content, 0)) == ""  # on the assistant's side only


def keypad_texts(phone) -> list[str]:  # type: ignore[no-untyped-def]
    """What the model was told of the keypad (``conversation.item.create`` input texts)."""
    texts = []
    for session in phone.bridge.fake.sessions:
        for event in session.client_events:
            if event.type == "conversation.item.create":
                for part in json.loads(event.raw)["item"].get("content", []):
                    if "keypad" in part.get("text", ""):
                        texts.append(part["text"])
    return texts


async def test_in_model_mode_each_key_the_caller_presses_reaches_the_model(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=Agent(dtmf="model")) as phone:
        with trio.fail_after(30):
            await phone.twilio.calls.place_inbound(
                phone.base_url, script=[Silence(300), Dtmf("4"), Dtmf("2"), Silence(300), HangUp()]
            )
        texts = keypad_texts(phone)
    assert texts == ["(The caller pressed 4 on the keypad.)", "(The caller pressed 2 on the keypad.)"]


async def test_in_collect_mode_an_entry_ends_with_hash_or_a_pause(tmp_path: Path) -> None:
    agent = Agent(dtmf="collect", dtmf_collect_timeout_s=1.0)
    steps = [Silence(300), Dtmf("1"), Dtmf("2"), Dtmf("3"), Dtmf("#"), Silence(200), Dtmf("9"), Silence(1600), HangUp()]
    async with phone_bridge(tmp_path, agent=agent) as phone:
        with trio.fail_after(30):
            await phone.twilio.calls.place_inbound(phone.base_url, script=steps)
        texts = keypad_texts(phone)
    assert texts == ["(The caller entered 123 on the keypad.)", "(The caller entered 9 on the keypad.)"]


async def test_in_ignore_mode_keys_reach_nothing_but_are_recorded(tmp_path: Path) -> None:
    async with phone_bridge(tmp_path, agent=Agent(dtmf="ignore")) as phone:
        with trio.fail_after(30):
            call = await phone.twilio.calls.place_inbound(
                phone.base_url, script=[Silence(300), Dtmf("4"), Dtmf("2"), Dtmf("#"), Silence(600), HangUp()]
            )
            await phone.bridge.wait_call_ended(call.sid)
        events = await phone.events(call.sid)
        texts = keypad_texts(phone)
        creates = [
            e for s in phone.bridge.fake.sessions for e in s.client_events if e.type == "conversation.item.create"
        ]
        responses = [e for s in phone.bridge.fake.sessions for e in s.client_events if e.type == "response.create"]

    assert call.report is not None and call.report.errors == [] and call.report.dtmf_sent == 3
    assert [e.digit for e in of_type(events, DtmfReceived)] == ["4", "2", "#"]  # still recorded
    assert of_type(events, DtmfForwarded) == [] and texts == [] and creates == [] and responses == []
