"""The call recording: a stereo WAV on the call's clock, caller left, assistant right, with the
assistant's audio where the caller really heard it (Twilio's FIFO, cut at a barge-in)."""

from __future__ import annotations

import io
import struct
import wave
from array import array
from typing import TypeVar

import pytest

from callbridge.adapters.sim.voice import ulaw_decode
from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    BargeInDecided,
    CallerAudioReceived,
    Event,
)
from callbridge.engine.synthetic import VOICE, CallLog
from callbridge.projections.recording import (
    assistant_playback,
    build_recording,
    call_span,
    heard_bytes_by_item,
    iter_recording,
)

RATE = 8000
E = TypeVar("E", bound=Event)
Runs = list[tuple[int, int]]


def channels(wav: bytes) -> tuple[array[int], array[int]]:
    samples = array("h", wav[44:])
    return samples[0::2], samples[1::2]


def sounding(samples: array[int]) -> Runs:
    """``[start, end)`` sample ranges where the channel is not silent."""
    runs: Runs = []
    start = None
    for index, value in enumerate(samples):
        if value and start is None:
            start = index
        elif not value and start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(samples)))
    return runs


def merged(ranges: Runs) -> Runs:
    out: Runs = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def caller_voice(events: list[Event]) -> Runs:
    """Where the log says the caller's frames carried voice, frame by frame."""
    ranges = []
    for event in events:
        if isinstance(event, CallerAudioReceived):
            offset = 0
            for timestamp, size in zip(event.timestamps, event.frame_sizes, strict=True):
                if event.payload[offset] == VOICE:
                    ranges.append((timestamp * 8, timestamp * 8 + size))
                offset += size
    return merged(ranges)


def sample_at(log: CallLog, event: Event) -> int:
    return round((event.at - log.start_at) * RATE)


def of_type(log: CallLog, kind: type[E]) -> list[E]:
    return [e for e in log.events if isinstance(e, kind)]


def test_the_header_says_stereo_8khz_16bit_pcm_and_the_length_is_the_calls() -> None:
    log = CallLog().start().caller_says("Hello there").assistant_says("Hi, how can I help?").end()
    wav = build_recording(log.events)

    riff, size, wave_id, fmt, fmt_size, pcm, chans, rate, byte_rate, align, bits, data, data_size = struct.unpack(
        "<4sI4s4sIHHIIHH4sI", wav[:44]
    )
    assert (riff, wave_id, fmt, data) == (b"RIFF", b"WAVE", b"fmt ", b"data")
    assert (fmt_size, pcm, chans, rate, byte_rate, align, bits) == (16, 1, 2, 8000, 32000, 4, 16)
    assert size == len(wav) - 8 and data_size == len(wav) - 44
    with wave.open(io.BytesIO(wav)) as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getsampwidth()) == (2, 8000, 2)
        assert reader.getnframes() == round((log.events[-1].at - log.start_at) * RATE)


def test_the_left_channel_sounds_exactly_where_the_caller_spoke_decoded_from_ulaw() -> None:
    log = CallLog().start().caller_says("What's the weather?").assistant_says("Sunny.").caller_says("Thanks").end()
    left, _ = channels(build_recording(log.events))

    assert sounding(left) == caller_voice(log.events)
    assert len(sounding(left)) == 2
    start = sounding(left)[0][0]
    assert left[start] == ulaw_decode(bytes([VOICE]))[0]


def test_the_right_channel_sounds_from_the_first_audio_sent_for_the_replys_length() -> None:
    log = CallLog().start().caller_says("Hi").assistant_says("Hello, this is the assistant.", ms=2000).end()
    _, right = channels(build_recording(log.events))

    first_sent = sample_at(log, of_type(log, AssistantAudioSent)[0])
    assert sounding(right) == [(first_sent, first_sent + 2000 * 8)]
    assert right[first_sent] == ulaw_decode(b"\x55")[0]


def test_a_barge_in_cuts_the_assistant_where_the_caller_interrupted_and_silence_follows() -> None:
    log = (
        CallLog()
        .start()
        .caller_says("Tell me a story")
        .assistant_says("Once upon a time there was a phone.", ms=3000, interrupted_at_ms=1200)
        .caller_says("Stop")
        .end()
    )
    _, right = channels(build_recording(log.events))

    first_sent = sample_at(log, of_type(log, AssistantAudioSent)[0])
    [decision] = [d for d in of_type(log, BargeInDecided) if d.action == "truncated"]
    assert sum(len(e.payload) for e in of_type(log, AssistantAudioSent)) == 2200 * 8  # sent ahead of playback
    assert sounding(right) == [(first_sent, first_sent + decision.played_ms * 8)]
    assert sample_at(log, decision) == first_sent + 1200 * 8
    assert not any(right[first_sent + 1200 * 8 :])


def test_what_the_fifo_says_was_heard_matches_the_mark_echoes() -> None:
    log = (
        CallLog()
        .start()
        .caller_says("One")
        .assistant_says("A full answer.", ms=1500)
        .caller_says("Two")
        .assistant_says("An answer the caller cuts short.", ms=2500, interrupted_at_ms=700)
        .end()
    )
    marks: dict[str, int] = {}
    for event in of_type(log, AssistantAudioPlayed):
        marks[event.item_id] = event.total_played_bytes

    assert heard_bytes_by_item(assistant_playback(log.events)) == marks
    assert sorted(marks.values()) == [700 * 8, 1500 * 8]


def test_twilio_plays_sent_audio_in_order_after_what_is_still_playing() -> None:
    log = CallLog().start().wait(1000)
    at = log.start_at + 1.0

    def sent(offset_s: float, item: str, size: int) -> AssistantAudioSent:
        return AssistantAudioSent(
            call_id=log.call_id,
            at=at + offset_s,
            response_id="r_" + item,
            item_id=item,
            offset_bytes=0,
            payload=b"\x55" * size,
        )

    # 1 s of audio at t=1.0; 0.5 s more sent at t=1.5 (queued until 2.0); 0.25 s at t=4.0 (queue empty).
    log.events += [sent(0, "a", 8000), sent(0.5, "b", 4000), sent(3.0, "c", 2000)]
    log.wait(4000).end()
    _, right = channels(build_recording(log.events))

    assert sounding(right) == [(8000, 8000 + 12000), (32000, 32000 + 2000)]
    segments = assistant_playback(log.events)
    assert [(s.item_id, s.start, s.end) for s in segments] == [
        ("a", 8000, 16000),
        ("b", 16000, 20000),
        ("c", 32000, 34000),
    ]


def test_gaps_between_caller_frames_are_silence_and_odd_frame_sizes_are_kept() -> None:
    log = CallLog().start().wait(500)  # the log's own caller audio covers 0-500 ms
    frames = [(500, b"\x20" * 160), (520, b"\x20" * 80), (560, b"\x20" * 160)]  # 530-560 ms missing
    log.events.append(
        CallerAudioReceived(
            call_id=log.call_id,
            at=log._at(),
            first_chunk=100,
            timestamps=[t for t, _ in frames],
            frame_sizes=[len(p) for _, p in frames],
            payload=b"".join(p for _, p in frames),
        )
    )
    log.end()
    left, _ = channels(build_recording(log.events))

    assert sounding(left) == [(4000, 4000 + 240), (4480, 4480 + 160)]


def test_a_call_cut_off_without_call_ended_lasts_until_its_last_recorded_moment() -> None:
    log = CallLog().start().caller_says("Hello?").assistant_says("I am here and I keep talking.", ms=4000)
    echoes = [i for i, e in enumerate(log.events) if isinstance(e, AssistantAudioPlayed)]
    del log.events[echoes[1] + 1 :]  # the crash: after 1 s of the reply (two runs of echoes), nothing more
    last = log.events[-1]
    wav = build_recording(log.events)
    _, right = channels(wav)

    span = call_span(log.events)
    assert not span.ended and span.end_at == last.at
    assert (len(wav) - 44) // 4 == round((last.at - log.start_at) * RATE)
    first_sent = sample_at(log, of_type(log, AssistantAudioSent)[0])
    assert sounding(right) == [(first_sent, len(right))]  # still playing when the call was cut


def test_caller_frames_with_absurd_timestamps_do_not_stretch_the_recording() -> None:
    log = CallLog().start().caller_says("Hi")
    log.events.append(
        CallerAudioReceived(
            call_id=log.call_id,
            at=log._at(),
            first_chunk=9999,
            timestamps=[10**9],
            frame_sizes=[160],
            payload=b"\x20" * 160,
        )
    )
    log.end()
    wav = build_recording(log.events)
    assert (len(wav) - 44) // 4 == round((log.events[-1].at - log.start_at) * RATE)


def test_the_streamed_recording_is_the_same_bytes_in_any_block_size() -> None:
    log = CallLog().start().caller_says("Hi").assistant_says("Hello!", interrupted_at_ms=300).end()
    whole = build_recording(log.events)
    pieces = list(iter_recording(log.events, block_samples=777))
    assert len(pieces[0]) == 44 and all(len(p) <= 777 * 4 for p in pieces[1:])
    assert b"".join(pieces) == whole


def test_an_empty_log_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no events"):
        build_recording([])
