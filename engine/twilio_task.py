"""The Twilio task: the caller's side of one call.

It owns the Twilio media-stream socket. Inbound frames are decoded with the sans-IO codec; caller
audio and mark echoes go to the model task, everything is recorded (audio in lossless chunks), and a
malformed or unknown frame is recorded and skipped — it never ends the call. Outbound, it plays
what the model task sends: each audio chunk followed by its mark, and ``clear`` on barge-in.

The task returns the reason the caller's side ended (``caller_hangup`` after ``stop``,
``twilio_disconnected`` when the socket went away without one).
"""

from __future__ import annotations

import logging

import trio

from callbridge.adapters.twilio import codec
from callbridge.engine.audio_chunks import AssistantAudioChunker, CallerAudioChunker
from callbridge.engine.context import CallContext, MessageSocket, PeerClosed
from callbridge.engine.events import (
    DtmfReceived,
    PlaybackCleared,
    TwilioEventIgnored,
    TwilioFrameRejected,
    TwilioSocketClosed,
)
from callbridge.engine.messages import CallerAudio, ClearPlayback, MarkEchoed, Message, PlayAudio

log = logging.getLogger(__name__)

RAW_LIMIT = 2048


class TwilioSide:
    def __init__(
        self,
        ctx: CallContext,
        socket: MessageSocket,
        to_model: trio.MemorySendChannel[Message],
        from_model: trio.MemoryReceiveChannel[Message],
    ) -> None:
        self.ctx = ctx
        self.socket = socket
        self.to_model = to_model
        self.from_model = from_model
        self.caller_audio = CallerAudioChunker(ctx.call_id)
        self.assistant_audio = AssistantAudioChunker(ctx.call_id)
        self.frames_dropped = 0
        self.frames_in = 0
        self.frames_forwarded = 0
        """Caller frames handed to the model task (it counts those it has dealt with)."""

    async def run(self) -> str:
        """Serve the call's Twilio side until the caller hangs up or the socket goes away."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._play)
                reason = await self._listen()
                nursery.cancel_scope.cancel()
            return reason
        finally:
            self.flush_audio()

    def flush_audio(self) -> None:
        for event in (self.caller_audio.flush(), self.assistant_audio.flush()):
            if event is not None:
                self.ctx.record(event)

    async def _listen(self) -> str:
        record, clock, call_id = self.ctx.record, self.ctx.clock, self.ctx.call_id
        while True:
            try:
                data = await self.socket.get_message()
            except PeerClosed as closed:
                record(TwilioSocketClosed(call_id=call_id, at=clock.now(), code=closed.code, reason=closed.reason))
                return "twilio_disconnected"
            try:
                frame = codec.decode_inbound(data)
            except codec.TwilioFrameError as error:
                text = data if isinstance(data, str) else data.decode("utf-8", "replace")
                record(TwilioFrameRejected(call_id=call_id, at=clock.now(), error=str(error), raw=text[:RAW_LIMIT]))
                continue
            if isinstance(frame, codec.Media):
                self._caller_media(frame)
            elif isinstance(frame, codec.Mark):
                await self.to_model.send(MarkEchoed(name=frame.mark.name))
            elif isinstance(frame, codec.Stop):
                record(TwilioSocketClosed(call_id=call_id, at=clock.now(), code=None, reason="stop"))
                return "caller_hangup"
            elif isinstance(frame, codec.Dtmf):
                record(
                    DtmfReceived(
                        call_id=call_id,
                        at=clock.now(),
                        digit=frame.dtmf.digit,
                        sequence_number=codec.parse_int(frame.sequence_number, 0),
                    )
                )
            elif isinstance(frame, codec.UnknownTwilioEvent):
                record(
                    TwilioEventIgnored(call_id=call_id, at=clock.now(), event=frame.event, raw=frame.raw[:RAW_LIMIT])
                )
            # ``connected`` and a repeated ``start`` carry nothing new once the call runs.

    def _caller_media(self, frame: codec.Media) -> None:
        media = frame.media
        timestamp = codec.parse_int(media.timestamp, 0)
        self.frames_in += 1
        try:
            chunk = self.caller_audio.add(
                self.ctx.clock.now(), codec.parse_int(media.chunk, 0), timestamp, media.payload
            )
        except ValueError as error:  # not base64: record the frame as rejected, keep the call
            self.ctx.record(
                TwilioFrameRejected(
                    call_id=self.ctx.call_id, at=self.ctx.clock.now(), error=f"media payload: {error}", raw=""
                )
            )
            return
        if chunk is not None:
            self.ctx.record(chunk)
        try:
            self.to_model.send_nowait(CallerAudio(payload=media.payload, timestamp=timestamp))
            self.frames_forwarded += 1
        except trio.WouldBlock:
            # The model side is stalled (reconnecting); the audio is recorded, not forwarded.
            self.frames_dropped += 1

    async def _play(self) -> None:
        stream_sid = self.ctx.stream_sid
        record, clock, call_id = self.ctx.record, self.ctx.clock, self.ctx.call_id
        async for message in self.from_model:
            if isinstance(message, PlayAudio):
                for event in self.assistant_audio.add(
                    clock.now(), message.response_id, message.item_id, message.content_index, message.payload
                ):
                    record(event)
                await self._send(
                    codec.encode_media(stream_sid, message.payload), codec.encode_mark(stream_sid, message.mark)
                )
            elif isinstance(message, ClearPlayback):
                await self._send(codec.encode_clear(stream_sid))
                chunk = self.assistant_audio.flush()
                if chunk is not None:
                    record(chunk)
                record(
                    PlaybackCleared(
                        call_id=call_id,
                        at=clock.now(),
                        item_id=message.item_id,
                        unplayed_bytes=message.unplayed_bytes,
                    )
                )

    async def _send(self, *texts: str) -> None:
        try:
            if len(texts) == 1:
                await self.socket.send_message(texts[0])
            else:
                await self.socket.send_messages(list(texts))
        except PeerClosed:
            # The listener sees the same closure and ends the call; nothing more to play.
            log.debug("call %s: Twilio socket closed while sending", self.ctx.call_id)
