"""What a simulated call observed, and how to tell a person about it.

``CallReport`` is what ``place_call`` returns: counts of what went each way, what the caller
actually *heard* (assistant audio that played, not merely arrived), how long replies took, and how
the call ended. ``format_report`` renders a list of them for ``callbridge simulate``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Literal

import msgspec

from callbridge.adapters.sim.playback import HeardSpan, PlaybackModel
from callbridge.adapters.sim.voice import BYTES_PER_MS

EndedBy = Literal["caller", "server", "remote", "error"]
"""``remote``: the call was ended on Twilio's side (a REST hang-up or redirect), so the stream got ``stop``."""


class FrameSent(msgspec.Struct, frozen=True):
    """Given to ``on_frame_sent`` for every caller ``media`` frame."""

    sequence_number: int
    chunk: int
    timestamp_ms: int
    speech: bool
    end_of_utterance: bool
    """True on the last frame of a ``Speak`` (reply latency is measured from here)."""


class MediaReceived(msgspec.Struct, frozen=True):
    """Given to ``on_media_received`` for every assistant ``media`` frame from the server."""

    byte_count: int
    buffered_bytes: int
    """Audio queued for playback after this frame (the caller hears it later)."""
    first_after_speech: bool
    """True for the first assistant audio after the caller stopped speaking."""


class CallReport(msgspec.Struct, kw_only=True):
    call_sid: str = ""
    stream_sid: str = ""
    from_number: str = ""
    to_number: str = ""
    duration_s: float = 0.0
    """From the webhook request to the socket closing."""
    frames_sent: int = 0
    speech_frames_sent: int = 0
    dtmf_sent: int = 0
    assistant_bytes_received: int = 0
    assistant_bytes_played: int = 0
    """Bytes the caller heard; audio dropped by ``clear`` or still queued at hang-up is not heard."""
    assistant_bytes_cleared: int = 0
    marks_received: int = 0
    marks_sent_back: int = 0
    clears_received: int = 0
    first_assistant_audio_after_speech_ms: list[float] = []
    """For each utterance: ms from its last frame to the first assistant audio that followed."""
    heard: list[HeardSpan] = []
    """Continuous stretches of assistant audio heard, in seconds since the first media frame."""
    heard_audio: bytes = b""
    """The μ-law bytes heard, in order (only when the call ran with ``keep_audio=True``)."""
    barge_ins: int = 0
    barge_ins_over_audio: int = 0
    """Barge-ins that really started while assistant audio was still playing."""
    errors: list[str] = []
    ended_by: EndedBy = "caller"
    close_code: int | None = None
    close_reason: str = ""
    hung_up_s: float | None = None
    """When the caller's side hung up (sent ``stop``), in seconds since the first media frame."""
    beep_end_s: float | None = None
    """When a ``Beep`` step ended (an answering machine starts recording), since the first media frame."""
    heard_bytes_at_beep: int | None = None
    """Assistant audio heard before the beep ended (``heard_audio[heard_bytes_at_beep:]`` is the message)."""

    @property
    def heard_after_beep(self) -> bytes:
        """What an answering machine recorded: the assistant audio heard after its beep."""
        if self.heard_bytes_at_beep is None:
            return b""
        return self.heard_audio[self.heard_bytes_at_beep :]

    @property
    def ok(self) -> bool:
        return not self.errors and self.ended_by in ("caller", "remote")


def fill_from_playback(report: CallReport, playback: PlaybackModel, media_start: float) -> None:
    """What the caller heard, from its playback model, into ``report`` (times since ``media_start``)."""
    report.assistant_bytes_received = playback.received_bytes
    report.assistant_bytes_played = playback.played_bytes
    report.assistant_bytes_cleared = playback.dropped_bytes
    if playback.played_audio is not None:
        report.heard_audio = bytes(playback.played_audio)
    report.heard = [
        HeardSpan(span.start - media_start, span.end - media_start, span.byte_count) for span in playback.heard_spans()
    ]


def _seconds(byte_count: int) -> str:
    return f"{byte_count / BYTES_PER_MS / 1000:.2f} s"


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def format_call(report: CallReport) -> str:
    """A few lines about one call: what it sent, what it heard, how long replies took."""
    ending = f"ended by {report.ended_by}"
    if report.close_code is not None and report.ended_by == "server":
        ending += f" (close {report.close_code}{': ' + report.close_reason if report.close_reason else ''})"
    lines = [f"call {report.call_sid or '?'} stream {report.stream_sid or '?'}: {report.duration_s:.1f} s, {ending}"]
    lines.append(
        f"  sent {report.frames_sent} frames ({report.speech_frames_sent} speech)"
        + (f", {report.dtmf_sent} dtmf" if report.dtmf_sent else "")
    )
    lines.append(
        f"  heard the assistant {len(report.heard)} time(s): {_seconds(report.assistant_bytes_played)} of "
        f"{_seconds(report.assistant_bytes_received)} received"
        + (f", {_seconds(report.assistant_bytes_cleared)} cleared" if report.clears_received else "")
    )
    if report.heard:
        spans = ", ".join(f"{span.start:.2f}-{span.end:.2f} s" for span in report.heard[:8])
        more = f" (+{len(report.heard) - 8} more)" if len(report.heard) > 8 else ""
        lines.append(f"  heard at {spans}{more}")
    if report.first_assistant_audio_after_speech_ms:
        latencies = ", ".join(f"{ms:.0f}" for ms in report.first_assistant_audio_after_speech_ms[:10])
        lines.append(f"  reply latency after speech (ms): {latencies}")
    lines.append(
        f"  marks: {report.marks_received} received, {report.marks_sent_back} echoed; "
        f"clears: {report.clears_received}"
        + (f"; barge-ins: {report.barge_ins} ({report.barge_ins_over_audio} over audio)" if report.barge_ins else "")
    )
    lines.extend(f"  error: {error}" for error in report.errors)
    return "\n".join(lines)


def format_report(reports: Sequence[CallReport]) -> str:
    """Every call, then a summary line (reply latency median and p95 over all utterances)."""
    parts = [format_call(report) for report in reports]
    latencies = [ms for report in reports for ms in report.first_assistant_audio_after_speech_ms]
    failed = sum(1 for report in reports if not report.ok)
    summary = f"{len(reports)} call(s), {len(reports) - failed} clean, {failed} with errors or ended early"
    if latencies:
        summary += (
            f"; reply latency median {statistics.median(latencies):.0f} ms, "
            f"p95 {_percentile(latencies, 0.95):.0f} ms over {len(latencies)} utterance(s)"
        )
    heard = sum(report.assistant_bytes_played for report in reports)
    summary += f"; heard {_seconds(heard)} of assistant audio in total"
    parts.append(summary)
    return "\n".join(parts)
