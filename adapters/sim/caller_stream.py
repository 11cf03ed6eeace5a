"""One Media Streams connection from the caller's side, over any WebSocket-like object.

``run_stream`` is what Twilio does once the stream socket is open: send ``connected`` and
``start``, then one ``media`` frame every 20 ms on trio's clock (absolute deadlines, so no drift)
until the script hangs up, and finish with ``stop``. Assistant audio coming back is played by a
``PlaybackModel`` (8 bytes/ms), which decides when marks are echoed, exactly as Twilio's buffer
would. It needs only ``send_message``/``get_message``/``aclose`` (``MediaSocket``), so tests can
drive it over an in-memory socket under trio's autojump clock.

A call is four tasks in one nursery: the microphone (media frames), the receiver (server frames
into the playback model), the playback clock (echoes marks when reached) and the script (this
task). Every frame goes through ``_send`` so sequence numbers follow send order. The microphone
waits for each frame's time through a ``Pace``: by default its own deadline on trio's clock; a
process running many callers can give them one shared timer instead (the benchmark does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import trio
from trio_websocket import ConnectionClosed

from callbridge.adapters.sim.caller_frames import Signal as _Signal
from callbridge.adapters.sim.caller_frames import dtmf_frame as _dtmf
from callbridge.adapters.sim.caller_frames import mark_frame as _mark
from callbridge.adapters.sim.caller_frames import media_frame as _media
from callbridge.adapters.sim.caller_frames import start_frame as _start
from callbridge.adapters.sim.caller_frames import stop_frame as _stop
from callbridge.adapters.sim.caller_pace import OWN_DEADLINE, Pace
from callbridge.adapters.sim.caller_report import CallReport, FrameSent, MediaReceived, fill_from_playback
from callbridge.adapters.sim.caller_script import (
    BargeIn,
    Beep,
    Dtmf,
    HangUp,
    Mouth,
    Murmur,
    Play,
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForHangUp,
    frames_for,
    noise_frames,
    tone_frames,
)
from callbridge.adapters.sim.playback import PlaybackModel
from callbridge.adapters.sim.voice import FRAME_MS, Voice
from callbridge.adapters.twilio import codec
from callbridge.adapters.twilio.codec import TwilioFrameError
from callbridge.adapters.websocket import acquire_at_once


class MediaSocket(Protocol):
    """The part of ``trio_websocket.WebSocketConnection`` a call needs. Implementations raise
    ``trio_websocket.ConnectionClosed`` once the socket is closed."""

    async def send_message(self, message: str) -> None: ...

    async def get_message(self) -> str | bytes: ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None: ...


FrameCallback = Callable[[float, FrameSent], None]
MediaCallback = Callable[[float, MediaReceived], None]

_FRAME_S = FRAME_MS / 1000


class _Call:
    """One live Media Streams connection from the caller's side."""

    def __init__(
        self,
        ws: MediaSocket,
        report: CallReport,
        *,
        account_sid: str,
        custom_parameters: dict[str, str],
        voice: Voice,
        keep_audio: bool,
        on_frame_sent: FrameCallback | None,
        on_media_received: MediaCallback | None,
        remote_hang_up: trio.Event | None = None,
        on_beep: Callable[[], None] | None = None,
        pace: Pace = OWN_DEADLINE,
    ) -> None:
        self.ws = ws
        self.pace = pace
        self.remote_hang_up = remote_hang_up
        self.on_beep = on_beep
        self.report = report
        self.account_sid = account_sid
        self.custom_parameters = custom_parameters
        self.playback = PlaybackModel(keep_audio=keep_audio)
        self.mouth = Mouth(voice)
        self.signal = _Signal()
        self.on_frame_sent = on_frame_sent
        self.on_media_received = on_media_received
        self._sequence = 0
        self._send_lock = trio.Lock()
        self._stopped = False  # `stop` sent: nothing more may go out
        self._hanging_up = trio.Event()
        self._microphone_off = trio.Event()
        self._scope = trio.CancelScope()
        self._media_start = 0.0
        self._deadline = math.inf  # hang up here whatever the script is doing
        self._hung_up_at = math.inf
        self._runs_at_last_speech = 0
        self._awaiting_reply_since: float | None = None

    # --- sending -----------------------------------------------------------------------------------

    async def _send(self, build: Callable[[str], codec.TwilioInbound]) -> None:
        """Send one frame with the next sequence number (every frame after ``connected`` has one).
        The lock is taken without a checkpoint when free (the microphone's wait is its checkpoint)."""
        lock = self._send_lock
        await acquire_at_once(lock)
        try:
            if self._stopped:
                return
            self._sequence += 1
            try:
                await self.ws.send_message(codec.encode_inbound(build(str(self._sequence))))
            except ConnectionClosed as exc:
                self._peer_closed(exc)
        finally:
            lock.release()

    async def _echo(self, names: list[str]) -> None:
        for name in names:
            await self._send(partial(_mark, self.report.stream_sid, name))
            self.report.marks_sent_back += 1

    def _peer_closed(self, exc: ConnectionClosed) -> None:
        """The server closed the socket. Before our hang-up that ends the call (ended by server);
        during it, it is just the close handshake finishing."""
        if self._hanging_up.is_set():
            return
        self.report.ended_by = "server"
        if exc.reason is not None:
            self.report.close_code = int(exc.reason.code)
            self.report.close_reason = exc.reason.reason or ""
        self._scope.cancel()

    # --- the four tasks ------------------------------------------------------------------------

    async def run(self, script: Sequence[Step], max_duration_s: float | None) -> None:
        sid = self.report.stream_sid
        start = codec.StartInfo(
            stream_sid=sid,
            account_sid=self.account_sid,
            call_sid=self.report.call_sid,
            tracks=["inbound"],
            custom_parameters=self.custom_parameters,
            media_format=codec.MediaFormat(),
        )
        with self._scope:
            try:
                await self.ws.send_message(codec.encode_inbound(codec.Connected()))
            except ConnectionClosed as exc:
                self._peer_closed(exc)
            await self._send(partial(_start, sid, start))
            async with trio.open_nursery() as nursery:
                self._media_start = trio.current_time()
                if max_duration_s is not None:
                    self._deadline = self._media_start + max_duration_s
                nursery.start_soon(self._microphone)
                nursery.start_soon(self._receive)
                nursery.start_soon(self._playback_clock)
                with trio.move_on_at(self._deadline) as script_scope:
                    if self.remote_hang_up is not None:
                        nursery.start_soon(self._hung_up_remotely, self.remote_hang_up, script_scope)
                    await self._run_script(script)
                await self._hang_up()
                nursery.cancel_scope.cancel()
        fill_from_playback(self.report, self.playback, self._media_start)

    async def _hung_up_remotely(self, hung_up: trio.Event, script: trio.CancelScope) -> None:
        """The call was ended on Twilio's side (a REST update, a redirect): stop the script; the
        stream then gets ``stop``, as Twilio sends it."""
        await hung_up.wait()
        if self.report.ended_by == "caller":
            self.report.ended_by = "remote"
        script.cancel()

    async def _microphone(self) -> None:
        """One ``media`` frame per 20 ms, scheduled by absolute deadlines from the first. When the
        process falls behind, late frames go out back to back (never skipped), so the frame count
        always matches the call's length."""
        sid = self.report.stream_sid
        index = 0
        while True:
            due = self._media_start + index * _FRAME_S
            if due >= self._deadline:  # this frame would be past the call's time limit
                await self._hanging_up.wait()
                break
            if not self._hanging_up.is_set():
                await self.pace.until(due, self._hanging_up)
            if self._hanging_up.is_set() and due >= self._hung_up_at:
                break  # frames due before the hang-up still go out (late, as after a network hiccup)
            payload, speech, finished = self.mouth.next_frame()
            chunk = index + 1
            timestamp = index * FRAME_MS
            media = codec.MediaChunk(chunk=str(chunk), timestamp=str(timestamp), payload=payload)
            await self._send(partial(_media, sid, media))
            now = trio.current_time()
            index += 1
            self.report.frames_sent += 1
            self.report.speech_frames_sent += speech
            if finished is not None:
                if speech:
                    self._awaiting_reply_since = now
                    self._runs_at_last_speech = self.playback.runs_started
                finished.set()
            if self.on_frame_sent is not None:
                end = finished is not None and speech
                self.on_frame_sent(now, FrameSent(self._sequence, chunk, timestamp, speech, end))
        self._microphone_off.set()

    async def _receive(self) -> None:
        """Server frames into the playback model; mark echoes go straight back."""
        while True:
            try:
                text = await self.ws.get_message()
            except ConnectionClosed as exc:
                self._peer_closed(exc)
                return
            now = trio.current_time()
            try:
                message = codec.decode_outbound(text)
            except TwilioFrameError as exc:
                self.report.errors.append(f"server sent a bad frame: {exc}")
                continue
            if message.stream_sid != self.report.stream_sid:
                self.report.errors.append(f"server sent {message.__struct_config__.tag} for another stream")
                continue
            if isinstance(message, codec.OutboundMedia):
                echoes = self._on_media(now, message.media.payload)
            elif isinstance(message, codec.OutboundMark):
                self.report.marks_received += 1
                echoes = self.playback.push_mark(now, message.mark.name)
            else:
                self.report.clears_received += 1
                echoes = self.playback.clear(now)
            if echoes:
                await self._echo(echoes)
            self.signal.notify()

    def _on_media(self, now: float, payload: str) -> list[str]:
        try:
            audio = codec.decode_payload(payload)
        except TwilioFrameError as exc:
            self.report.errors.append(f"server sent undecodable audio: {exc}")
            return self.playback.advance(now)
        first = self._awaiting_reply_since is not None
        if self._awaiting_reply_since is not None:
            self.report.first_assistant_audio_after_speech_ms.append((now - self._awaiting_reply_since) * 1000)
            self._awaiting_reply_since = None
        echoes = self.playback.push_audio(now, audio)
        if self.on_media_received is not None:
            self.on_media_received(now, MediaReceived(len(audio), self.playback.buffered_bytes, first))
        return echoes

    async def _playback_clock(self) -> None:
        """Advance playback exactly when a mark is reached or the buffer runs dry."""
        while True:
            deadline = self.playback.next_deadline()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self.signal.wait()
            was_playing = self.playback.is_playing
            echoes = self.playback.advance(trio.current_time())
            if echoes:
                await self._echo(echoes)
            if echoes or was_playing != self.playback.is_playing:
                self.signal.notify()

    # --- the script ----------------------------------------------------------------------------

    async def _run_script(self, script: Sequence[Step]) -> None:
        for step in script:
            if isinstance(step, HangUp):
                return
            await self._perform(step)

    async def _perform(self, step: Step) -> None:
        if isinstance(step, Speak):
            await self.mouth.start(frames_for(step.ms), speech=True).wait()
        elif isinstance(step, Silence):
            await self.mouth.start(frames_for(step.ms), speech=False).wait()
        elif isinstance(step, Dtmf):
            await self._send(partial(_dtmf, self.report.stream_sid, step.digit))
            self.report.dtmf_sent += 1
            self._runs_at_last_speech = self.playback.runs_started  # a key asks, as words do
        elif isinstance(step, WaitForAssistant):
            await self._wait_for_assistant(step)
        elif isinstance(step, BargeIn):
            await self._barge_in(step)
        elif isinstance(step, Beep):
            await self.mouth.start(frames_for(step.ms), speech=True, tone=tone_frames(step.ms, step.hz)).wait()
            now = trio.current_time()
            echoes = self.playback.advance(now)
            if echoes:
                await self._echo(echoes)
            self.signal.notify()
            self.report.beep_end_s = now - self._media_start
            self.report.heard_bytes_at_beep = self.playback.played_bytes
            if self.on_beep is not None:
                self.on_beep()
        elif isinstance(step, Murmur):
            noise = noise_frames(step.ms, step.level, step.seed)
            await self.mouth.start(frames_for(step.ms), speech=False, tone=noise).wait()
        elif isinstance(step, Play):
            if step.frames:
                await self.mouth.start(len(step.frames), speech=step.speech, tone=step.frames).wait()
        elif isinstance(step, WaitForHangUp):
            with trio.move_on_after(step.timeout_s):
                await trio.sleep_forever()
            self.report.errors.append(f"the other side did not hang up within {step.timeout_s:g} s")

    async def _wait_for_assistant(self, step: WaitForAssistant) -> None:
        playback = self.playback
        with trio.move_on_after(step.timeout_s) as scope:
            while not (playback.is_playing or playback.runs_started > self._runs_at_last_speech):
                await self.signal.wait()
            while True:
                while playback.is_playing:
                    await self.signal.wait()
                drained = playback.last_drained_at
                quiet_since = trio.current_time() if drained is None else drained
                with trio.move_on_at(quiet_since + step.settle_ms / 1000) as settle:
                    while not playback.is_playing:
                        await self.signal.wait()
                if settle.cancelled_caught:
                    return
        if scope.cancelled_caught:
            self.report.errors.append(f"no complete assistant reply within {step.timeout_s:g} s")

    async def _barge_in(self, step: BargeIn) -> None:
        playback = self.playback
        with trio.move_on_after(step.timeout_s):
            while (playing_since := playback.playing_since) is None:
                await self.signal.wait()
            await trio.sleep_until(playing_since + step.after_ms / 1000)
            self.report.barge_ins += 1
            self.report.barge_ins_over_audio += playback.is_playing
            await self.mouth.start(frames_for(step.speak_ms), speech=True).wait()
            return
        self.report.errors.append(f"no assistant audio to barge in on within {step.timeout_s:g} s")

    # --- ending ----------------------------------------------------------------------------------

    async def _hang_up(self) -> None:
        """Stop the microphone, send ``stop``, close the socket (as Twilio does on hang-up)."""
        self._hung_up_at = trio.current_time()
        self.report.hung_up_s = self._hung_up_at - self._media_start
        self._hanging_up.set()
        await self._microphone_off.wait()
        echoes = self.playback.advance(trio.current_time())
        if echoes:
            await self._echo(echoes)
        info = codec.StopInfo(account_sid=self.account_sid, call_sid=self.report.call_sid)
        await self._send(partial(_stop, self.report.stream_sid, info))
        self._stopped = True
        with trio.move_on_after(5):
            await self.ws.aclose()


async def run_stream(
    ws: MediaSocket,
    report: CallReport,
    *,
    script: Sequence[Step],
    account_sid: str,
    custom_parameters: dict[str, str],
    max_duration_s: float | None = None,
    voice_offset_ms: int = 0,
    keep_audio: bool = False,
    on_frame_sent: FrameCallback | None = None,
    on_media_received: MediaCallback | None = None,
    remote_hang_up: trio.Event | None = None,
    on_beep: Callable[[], None] | None = None,
    pace: Pace = OWN_DEADLINE,
) -> CallReport:
    """Play Twilio's part on an open stream socket: ``report.call_sid``/``stream_sid`` name the
    call; the report is filled in and returned. Returns when the script hung up (after ``stop``
    and the close handshake), the server closed the socket (``ended_by="server"``), or
    ``remote_hang_up`` was set (the call ended on Twilio's side: ``stop`` is sent,
    ``ended_by="remote"``). ``pace``: how the microphone waits for each frame's time."""
    call = _Call(
        ws,
        report,
        account_sid=account_sid,
        custom_parameters=custom_parameters,
        voice=Voice(voice_offset_ms),
        keep_audio=keep_audio,
        on_frame_sent=on_frame_sent,
        on_media_received=on_media_received,
        remote_hang_up=remote_hang_up,
        on_beep=on_beep,
        pace=pace,
    )
    await call.run(script, max_duration_s)
    return report
