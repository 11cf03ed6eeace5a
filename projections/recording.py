"""The call recording: a stereo WAV rebuilt from a call's events (caller left, assistant right).

Why it is built this way:

- **The call's own clock.** Time 0 is ``CallStarted.at``; the recording ends at ``CallEnded.at``
  (or, for a call cut off without one, at the last recorded moment), so a second into the WAV is
  a second into the call and the timeline's ``+00:03.120`` can be found by ear.
- **Caller audio** is placed by Twilio's own frame ``timestamps`` (ms since the stream started),
  not by when frames arrived, so jitter does not smear it; frames Twilio skipped are silence. A call
  back from a warm transfer's hold has a second stream, whose timestamps start again from 0: its
  audio is placed from the moment it began (``CallResumed``).
- **Assistant audio** is placed where the caller really heard it. What the bridge *sent* is not
  what was *played*: Twilio queues it and plays 8 bytes/ms, each chunk starting when it arrives
  or when the previous one finishes, whichever is later. We replay that FIFO from
  ``AssistantAudioSent.at`` and, on ``PlaybackCleared`` (barge-in), drop whatever was still
  queued — so an interrupted reply stops in the WAV exactly where the caller cut it off.
  (A chunk's ``at`` is when its *first* byte was sent; the FIFO treats the whole chunk as arriving
  then, which is exact whenever the model streams faster than real time, as it does.)
- **Fast enough for an hour.** Both channels are first laid out as μ-law byte tracks with slice
  assignments, then converted block by block with two ``bytes.translate`` tables (low and high
  byte of each 16-bit sample) and interleaved with strided ``bytearray`` assignment: no
  per-sample Python. :func:`iter_recording` yields the WAV in blocks for streaming responses.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from callbridge.adapters.sim.voice import ulaw_decode
from callbridge.engine.events import (
    AssistantAudioSent,
    CallEnded,
    CallerAudioReceived,
    CallResumed,
    CallStarted,
    Event,
    PlaybackCleared,
)

SAMPLE_RATE = 8000
SAMPLES_PER_MS = 8
"""μ-law at 8 kHz: one byte per sample, so 8 bytes (samples) per millisecond."""
CHANNELS = 2
SAMPLE_WIDTH = 2
SILENCE = 0xFF
"""μ-law digital silence (decodes to 0)."""
BLOCK_SAMPLES = 10 * SAMPLE_RATE
"""Samples converted per yielded block: 10 s = 320 KB of WAV."""
_MAX_DATA_BYTES = 2**32 - 1 - 36


def _pcm_tables() -> tuple[bytes, bytes]:
    """μ-law byte -> low byte and high byte of its 16-bit little-endian linear sample."""
    samples = ulaw_decode(bytes(range(256)))
    return bytes(s & 0xFF for s in samples), bytes((s >> 8) & 0xFF for s in samples)


_LOW, _HIGH = _pcm_tables()


class CallSpan(NamedTuple):
    """Where a call sits in Unix time: the recording's and the timeline's frame of reference."""

    start_at: float
    end_at: float
    ended: bool
    """True when a ``CallEnded`` was recorded; False for a call that was cut off."""

    @property
    def samples(self) -> int:
        return max(0, round((self.end_at - self.start_at) * SAMPLE_RATE))


class PlayedSegment(NamedTuple):
    """A run of assistant audio the caller heard: samples ``[start, end)`` of the call."""

    response_id: str
    item_id: str
    start: int
    end: int
    payload: bytes
    """The chunk's μ-law bytes; only the first ``end - start`` were played."""


def call_span(events: Sequence[Event]) -> CallSpan:
    """The call's start (``CallStarted``, else its first event) and end (the first ``CallEnded``,
    else the last recorded moment: an event's ``at``, or the end of the caller audio run that
    began at ``at``). Raises ``ValueError`` for an empty log."""
    if not events:
        raise ValueError("the call has no events")
    start = next((e.at for e in events if isinstance(e, CallStarted)), events[0].at)
    for event in events:
        if isinstance(event, CallEnded):
            return CallSpan(start, max(start, event.at), True)
    last = start
    for event in events:
        moment = event.at
        if isinstance(event, CallerAudioReceived):
            moment += len(event.payload) / (SAMPLES_PER_MS * 1000)
        last = max(last, moment)
    return CallSpan(start, last, False)


def assistant_playback(events: Sequence[Event], span: CallSpan | None = None) -> list[PlayedSegment]:
    """Replay Twilio's playback queue: which assistant audio was heard, and when (in samples from
    the call's start). Audio still queued at a ``PlaybackCleared`` or at the end of the call was
    never heard and is cut."""
    span = span or call_span(events)
    segments: list[PlayedSegment] = []
    queue_end = 0
    for event in events:
        if isinstance(event, AssistantAudioSent):
            if not event.payload:
                continue
            arrival = round((event.at - span.start_at) * SAMPLE_RATE)
            start = max(arrival, queue_end)
            queue_end = start + len(event.payload)
            segments.append(PlayedSegment(event.response_id, event.item_id, start, queue_end, event.payload))
        elif isinstance(event, PlaybackCleared):
            cut = round((event.at - span.start_at) * SAMPLE_RATE)
            _cut_after(segments, cut)
            queue_end = min(queue_end, max(cut, 0))
    _cut_after(segments, span.samples)
    return segments


def _cut_after(segments: list[PlayedSegment], cut: int) -> None:
    """Drop what would have played at or after sample ``cut`` (segments are in time order)."""
    while segments and segments[-1].end > cut:
        last = segments.pop()
        if last.start < cut:
            segments.append(last._replace(end=cut))
            return


def heard_bytes_by_item(segments: Sequence[PlayedSegment]) -> dict[str, int]:
    """Assistant bytes heard per item: comparable with ``AssistantAudioPlayed.total_played_bytes``."""
    heard: dict[str, int] = {}
    for segment in segments:
        heard[segment.item_id] = heard.get(segment.item_id, 0) + segment.end - segment.start
    return heard


def _write(track: bytearray, position: int, data: bytes | memoryview) -> None:
    """Copy ``data`` into ``track`` at ``position``, clipped to the track."""
    size = len(track)
    if position >= size or position + len(data) <= 0:
        return
    view = memoryview(data)
    if position < 0:
        view, position = view[-position:], 0
    end = min(size, position + len(view))
    track[position:end] = view[: end - position]


def _place_caller(track: bytearray, event: CallerAudioReceived, stream_start: int = 0) -> None:
    """Lay one run of caller frames at their Twilio timestamps (from ``stream_start``, the sample
    its stream began at), contiguous frames in one copy."""
    payload = memoryview(event.payload)
    run_track = run_from = offset = 0
    expected: int | None = None
    for timestamp, size in zip(event.timestamps, event.frame_sizes, strict=False):
        position = stream_start + timestamp * SAMPLES_PER_MS
        if position != expected:
            if expected is not None:
                _write(track, run_track, payload[run_from:offset])
            run_track, run_from = position, offset
        offset += size
        expected = position + size
    if expected is not None:
        _write(track, run_track, payload[run_from:offset])


def channel_tracks(events: Sequence[Event]) -> tuple[CallSpan, bytearray, bytearray]:
    """The call's two μ-law tracks (caller, assistant), one byte per sample, silence-filled."""
    span = call_span(events)
    total = span.samples
    if total * CHANNELS * SAMPLE_WIDTH > _MAX_DATA_BYTES:
        raise ValueError(f"the call lasts {total / SAMPLE_RATE:.0f} s: too long for one WAV file")
    caller = bytearray([SILENCE]) * total
    assistant = bytearray([SILENCE]) * total
    stream_start = 0
    for event in events:
        if isinstance(event, CallerAudioReceived):
            _place_caller(caller, event, stream_start)
        elif isinstance(event, CallResumed):  # a new stream: its timestamps start from 0 again
            stream_start = round((event.at - span.start_at) * SAMPLE_RATE)
    for segment in assistant_playback(events, span):
        _write(assistant, segment.start, memoryview(segment.payload)[: segment.end - segment.start])
    return span, caller, assistant


def wav_header(samples: int) -> bytes:
    """A 44-byte RIFF/WAVE header: PCM, 2 channels, 8000 Hz, 16-bit."""
    data_bytes = samples * CHANNELS * SAMPLE_WIDTH
    block_align = CHANNELS * SAMPLE_WIDTH
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        CHANNELS,
        SAMPLE_RATE,
        SAMPLE_RATE * block_align,
        block_align,
        SAMPLE_WIDTH * 8,
        b"data",
        data_bytes,
    )


def _interleave(left: bytes | bytearray, right: bytes | bytearray) -> bytes:
    """Two μ-law tracks of equal length as interleaved 16-bit little-endian stereo PCM."""
    out = bytearray(len(left) * 4)
    out[0::4] = left.translate(_LOW)
    out[1::4] = left.translate(_HIGH)
    out[2::4] = right.translate(_LOW)
    out[3::4] = right.translate(_HIGH)
    return bytes(out)


def iter_recording(events: Sequence[Event], block_samples: int = BLOCK_SAMPLES) -> Iterator[bytes]:
    """The WAV file in pieces: the header, then blocks of ``block_samples`` stereo samples."""
    _, caller, assistant = channel_tracks(events)
    yield wav_header(len(caller))
    for start in range(0, len(caller), block_samples):
        end = start + block_samples
        yield _interleave(caller[start:end], assistant[start:end])


def build_recording(events: Sequence[Event]) -> bytes:
    """The whole call as a stereo 8 kHz 16-bit WAV: caller on the left, assistant on the right."""
    return b"".join(iter_recording(events))
