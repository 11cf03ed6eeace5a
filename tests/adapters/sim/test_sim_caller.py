"""The simulated caller behaves like Twilio on the wire.

These tests play the server over an in-memory socket under trio's autojump clock, so timing
(20 ms pacing, mark echoes, barge-in offsets) is asserted exactly and costs no real time.
``test_sim_caller_network.py`` runs ``place_call`` over real sockets.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import CloseReason, ConnectionClosed

from callbridge.adapters.sim.caller import (
    BargeIn,
    CallReport,
    Dtmf,
    FrameSent,
    HangUp,
    MediaReceived,
    Silence,
    Speak,
    WaitForAssistant,
    default_script,
    format_report,
)
from callbridge.adapters.sim.caller_stream import run_stream
from callbridge.adapters.sim.voice import rms
from callbridge.adapters.twilio import codec

SID = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ACCOUNT = "AC" + "3" * 32


def audio_b64(ms: int) -> str:
    return base64.b64encode(b"\x10" * (ms * 8)).decode()


class FakeSocket:
    """An in-memory ``MediaSocket``; the test plays the server through ``server_*`` methods."""

    def __init__(self, stall: dict[int, float] | None = None) -> None:
        self.stall = stall or {}  # message index -> seconds send_message blocks (a slow network)
        self.sent_count = 0
        self._to_server_send, self.to_server = trio.open_memory_channel[tuple[float, str]](math.inf)
        self._to_caller_send, self._to_caller = trio.open_memory_channel[str](math.inf)
        self.closed: CloseReason | None = None
        self.caller_closed = False

    async def send_message(self, message: str) -> None:
        await trio.sleep(self.stall.get(self.sent_count, 0))
        self.sent_count += 1
        if self.closed is not None:
            raise ConnectionClosed(self.closed)
        self._to_server_send.send_nowait((trio.current_time(), message))

    async def get_message(self) -> str:
        try:
            return await self._to_caller.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self.closed) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if self.closed is None:
            self.closed = CloseReason(code, reason)
            self.caller_closed = True
        self._to_caller_send.close()
        self._to_server_send.close()

    def server_send(self, frame: str) -> None:
        self._to_caller_send.send_nowait(frame)

    def server_close(self, code: int, reason: str) -> None:
        self.closed = CloseReason(code, reason)
        self._to_caller_send.close()
        self._to_server_send.close()


Frame = tuple[float, Any]  # (trio time, decoded inbound message)
ServerHook = Callable[[FakeSocket, Frame, list[Frame]], Awaitable[None] | None]


async def run_fake_call(
    script: list[Any],
    hook: ServerHook | None = None,
    **kwargs: Any,
) -> tuple[CallReport, list[Frame], float]:
    """Run ``run_stream`` against a fake server; ``hook`` sees every frame the caller sends.
    Returns the report, the frames (time, message) and the time the call started."""
    sock = FakeSocket(kwargs.pop("stall", None))
    frames: list[Frame] = []
    report = CallReport(call_sid=CALL, stream_sid=SID)
    started = trio.current_time()

    async def server() -> None:
        async for at, text in sock.to_server:
            frame = (at, codec.decode_inbound(text))
            frames.append(frame)
            if hook is not None:
                result = hook(sock, frame, frames)
                if result is not None:
                    await result

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        await run_stream(
            sock, report, script=script, account_sid=ACCOUNT, custom_parameters={"From": "+1555"}, **kwargs
        )
    return report, frames, started


def media_frames(frames: list[Frame]) -> list[Frame]:
    return [(at, m) for at, m in frames if isinstance(m, codec.Media)]


def is_speech(message: codec.Media) -> bool:
    return rms(base64.b64decode(message.media.payload)) > 300


# --- the wire, as Twilio sends it --------------------------------------------------------------


async def test_frames_follow_twilio_sequence_rules(autojump_clock: trio.testing.MockClock) -> None:
    report, frames, _ = await run_fake_call([Speak(100), Silence(60), Dtmf("5"), Silence(40), HangUp()])
    messages = [m for _, m in frames]
    assert isinstance(messages[0], codec.Connected)
    start = messages[1]
    assert isinstance(start, codec.Start) and start.sequence_number == "1" and start.stream_sid == SID
    assert start.start == codec.StartInfo(
        stream_sid=SID,
        account_sid=ACCOUNT,
        call_sid=CALL,
        tracks=["inbound"],
        custom_parameters={"From": "+1555"},
        media_format=codec.MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
    )
    assert isinstance(messages[-1], codec.Stop)
    assert messages[-1].stop == codec.StopInfo(account_sid=ACCOUNT, call_sid=CALL)
    # One counter over every frame after `connected`, dtmf and stop included.
    assert [int(m.sequence_number) for m in messages[1:]] == list(range(1, len(messages)))
    media = [m for m in messages if isinstance(m, codec.Media)]
    assert [m.media.chunk for m in media] == [str(i) for i in range(1, len(media) + 1)]
    assert [m.media.timestamp for m in media] == [str(20 * i) for i in range(len(media))]
    assert all(len(base64.b64decode(m.media.payload)) == 160 for m in media)
    assert [is_speech(m) for m in media] == [True] * 5 + [False] * (len(media) - 5)
    dtmf = [m for m in messages if isinstance(m, codec.Dtmf)]
    assert [d.dtmf.digit for d in dtmf] == ["5"]
    assert len(media) == 5 + 3 + 2
    assert report.frames_sent == len(media) and report.speech_frames_sent == 5 and report.dtmf_sent == 1
    assert report.ended_by == "caller" and report.errors == []


async def test_media_is_paced_every_20_ms_without_drift(autojump_clock: trio.testing.MockClock) -> None:
    _, frames, _ = await run_fake_call([Speak(1000), Silence(1000), HangUp()])
    times = [at for at, _ in media_frames(frames)]
    assert len(times) == 100
    assert [t - times[0] for t in times] == pytest.approx([i * 0.02 for i in range(100)], abs=1e-9)


async def test_a_stalled_send_delays_frames_but_loses_none(autojump_clock: trio.testing.MockClock) -> None:
    # Sends are connected, start, then media: send #10 is media frame 8 (due at 160 ms); it blocks
    # 100 ms, until 260 ms.
    _, frames, _ = await run_fake_call([Speak(400), HangUp()], stall={10: 0.1})
    media = media_frames(frames)
    assert [m.media.timestamp for _, m in media] == [str(20 * i) for i in range(20)]
    offsets = [round(at - media[0][0], 9) for at, _ in media]
    assert offsets[:8] == [round(0.02 * i, 9) for i in range(8)]
    assert offsets[8:14] == [0.26] * 6  # frames due during the stall go out back to back...
    assert offsets[14:] == [round(0.02 * i, 9) for i in range(14, 20)]  # ...then the schedule resumes


async def test_max_duration_hangs_up_on_time(autojump_clock: trio.testing.MockClock) -> None:
    report, frames, _ = await run_fake_call(default_script(60.0), max_duration_s=2.0)
    media = media_frames(frames)
    stop_at = frames[-1][0]
    assert isinstance(frames[-1][1], codec.Stop)
    assert stop_at - media[0][0] == pytest.approx(2.0, abs=1e-6)
    assert len(media) == 100
    assert report.ended_by == "caller"
    assert report.errors == []  # the unanswered wait was cut by the limit, not timed out


# --- playback: marks and clears ----------------------------------------------------------------


def reply_after_start(*frames_to_send: str) -> ServerHook:
    def hook(sock: FakeSocket, frame: Frame, _: list[Frame]) -> None:
        if isinstance(frame[1], codec.Start):
            for text in frames_to_send:
                sock.server_send(text)

    return hook


def echoes(frames: list[Frame]) -> list[tuple[float, codec.Mark]]:
    return [(at, m) for at, m in frames if isinstance(m, codec.Mark)]


async def test_marks_are_echoed_when_the_audio_before_them_has_played(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hook = reply_after_start(
        codec.encode_mark(SID, "nothing-buffered"),
        codec.encode_media(SID, audio_b64(400)),
        codec.encode_mark(SID, "a"),
        codec.encode_media(SID, audio_b64(200)),
        codec.encode_mark(SID, "b"),
    )
    report, frames, _ = await run_fake_call([Silence(1000), HangUp()], hook)
    start_at = frames[1][0]
    marks = echoes(frames)
    assert [m.mark.name for _, m in marks] == ["nothing-buffered", "a", "b"]
    assert [at - start_at for at, _ in marks] == pytest.approx([0.0, 0.4, 0.6], abs=1e-6)
    assert all(m.stream_sid == SID for _, m in marks)
    assert report.marks_received == 3 and report.marks_sent_back == 3
    assert report.assistant_bytes_received == report.assistant_bytes_played == 4800
    assert [(span.byte_count, round(span.end - span.start, 6)) for span in report.heard] == [(4800, 0.6)]


async def test_clear_echoes_pending_marks_at_once_and_nothing_more_is_heard(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cleared_at: list[float] = []

    def hook(sock: FakeSocket, frame: Frame, frames: list[Frame]) -> None:
        at, message = frame
        if isinstance(message, codec.Start):
            for name in ("m0", "m1"):
                sock.server_send(codec.encode_media(SID, audio_b64(1000)))
                sock.server_send(codec.encode_mark(SID, name))
        if isinstance(message, codec.Media) and message.media.chunk == "16" and not cleared_at:
            cleared_at.append(at)  # 300 ms of audio played by now
            sock.server_send(codec.encode_clear(SID))

    report, frames, _ = await run_fake_call([Silence(1000), HangUp()], hook)
    marks = echoes(frames)
    assert [m.mark.name for _, m in marks] == ["m0", "m1"]
    assert [at for at, _ in marks] == pytest.approx([cleared_at[0]] * 2)
    assert report.clears_received == 1
    assert report.assistant_bytes_played == 2400
    assert report.assistant_bytes_cleared == 16000 - 2400


# --- the script ------------------------------------------------------------------------------


def reply_when_speech_ends(delay: float, reply_ms: int) -> tuple[ServerHook, list[float]]:
    """A server that answers ``delay`` s after the first silent frame following speech."""
    sent_at: list[float] = []

    async def hook(sock: FakeSocket, frame: Frame, frames: list[Frame]) -> None:
        at, message = frame
        if not isinstance(message, codec.Media) or sent_at:
            return
        media = [m for _, m in media_frames(frames)]
        if len(media) >= 2 and is_speech(media[-2]) and not is_speech(media[-1]):
            sent_at.append(at + delay)
            await trio.sleep(delay)
            sock.server_send(codec.encode_media(SID, audio_b64(reply_ms)))
            sock.server_send(codec.encode_mark(SID, "reply-end"))

    return hook, sent_at


async def test_wait_for_assistant_returns_once_the_reply_has_played(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hook, reply_at = reply_when_speech_ends(0.1, 500)
    report, frames, _ = await run_fake_call([Speak(200), WaitForAssistant(settle_ms=300), HangUp()], hook)
    stop_at = frames[-1][0]
    assert isinstance(frames[-1][1], codec.Stop)
    assert stop_at - reply_at[0] == pytest.approx(0.5 + 0.3, abs=1e-6)
    last_speech_at = max(at for at, m in media_frames(frames) if is_speech(m))
    assert report.first_assistant_audio_after_speech_ms == [pytest.approx((reply_at[0] - last_speech_at) * 1000)]
    assert report.first_assistant_audio_after_speech_ms[0] == pytest.approx(120, abs=1e-3)
    assert report.errors == []


async def test_wait_for_assistant_without_reply_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    report, _, _ = await run_fake_call([Speak(100), WaitForAssistant(timeout_s=2.0), HangUp()])
    assert report.errors == ["no complete assistant reply within 2 s"]
    assert report.ended_by == "caller"


async def test_barge_in_starts_speaking_over_the_assistant(autojump_clock: trio.testing.MockClock) -> None:
    hook = reply_after_start(codec.encode_media(SID, audio_b64(2000)), codec.encode_mark(SID, "end"))
    report, frames, _ = await run_fake_call([BargeIn(after_ms=300, speak_ms=200), Silence(100), HangUp()], hook)
    audio_started = frames[1][0]  # the reply was sent when `start` arrived
    speech_times = [at for at, m in media_frames(frames) if is_speech(m)]
    assert len(speech_times) == 10
    assert 0.3 <= speech_times[0] - audio_started < 0.3 + 0.02 + 1e-9
    assert report.barge_ins == 1 and report.barge_ins_over_audio == 1


async def test_barge_in_without_assistant_audio_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    report, frames, _ = await run_fake_call([BargeIn(timeout_s=1.0), HangUp()])
    assert report.errors == ["no assistant audio to barge in on within 1 s"]
    assert not any(is_speech(m) for _, m in media_frames(frames))


async def test_callbacks_see_every_frame_and_every_reply(autojump_clock: trio.testing.MockClock) -> None:
    sent: list[tuple[float, FrameSent]] = []
    received: list[tuple[float, MediaReceived]] = []
    hook, _ = reply_when_speech_ends(0.05, 100)
    report, frames, _ = await run_fake_call(
        [Speak(60), WaitForAssistant(settle_ms=100), HangUp()],
        hook,
        on_frame_sent=lambda at, info: sent.append((at, info)),
        on_media_received=lambda at, info: received.append((at, info)),
    )
    assert [info.chunk for _, info in sent] == list(range(1, report.frames_sent + 1))
    assert [info.end_of_utterance for _, info in sent].count(True) == 1
    assert sent[2][1].end_of_utterance and sent[2][1].speech
    assert [at for at, _ in sent] == [at for at, _ in media_frames(frames)]
    assert [(info.byte_count, info.first_after_speech) for _, info in received] == [(800, True)]


# --- the server's side of things ---------------------------------------------------------------


async def test_server_closing_first_ends_the_call(autojump_clock: trio.testing.MockClock) -> None:
    def hook(sock: FakeSocket, frame: Frame, _: list[Frame]) -> None:
        if isinstance(frame[1], codec.Media) and frame[1].media.chunk == "5":
            sock.server_close(1011, "bridge failed")

    report, frames, _ = await run_fake_call([Speak(1000), HangUp()], hook)
    assert report.ended_by == "server"
    assert (report.close_code, report.close_reason) == (1011, "bridge failed")
    assert not any(isinstance(m, codec.Stop) for _, m in frames)
    assert report.frames_sent == 5


async def test_bad_frames_from_the_server_are_reported_not_fatal(autojump_clock: trio.testing.MockClock) -> None:
    hook = reply_after_start(
        "garbage",
        '{"event":"media","streamSid":"' + SID + '","media":{"payload":"@@"}}',
        codec.encode_mark("MZother", "x"),
        codec.encode_mark(SID, "ok"),
    )
    report, frames, _ = await run_fake_call([Silence(100), HangUp()], hook)
    assert report.ended_by == "caller"
    assert len(report.errors) == 3
    assert report.errors[0].startswith("server sent a bad frame: outbound frame is not valid JSON")
    assert "undecodable audio" in report.errors[1]
    assert report.errors[2] == "server sent mark for another stream"
    assert [m.mark.name for _, m in echoes(frames)] == ["ok"]


def test_format_report_says_what_each_call_heard() -> None:
    report = CallReport(
        call_sid=CALL,
        stream_sid=SID,
        duration_s=3.2,
        frames_sent=150,
        speech_frames_sent=50,
        assistant_bytes_received=16000,
        assistant_bytes_played=12000,
        first_assistant_audio_after_speech_ms=[420.0],
        errors=["no complete assistant reply within 2 s"],
    )
    text = format_report([report, CallReport(call_sid="CAx", ended_by="server", close_code=1011)])
    assert f"call {CALL}" in text and "3.2 s, ended by caller" in text
    assert "1.50 s of 2.00 s received" in text
    assert "reply latency after speech (ms): 420" in text
    assert "error: no complete assistant reply" in text
    assert "ended by server (close 1011)" in text
    assert text.splitlines()[-1].startswith("2 call(s), 0 clean, 2 with errors or ended early")
