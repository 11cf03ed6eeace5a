"""The frames the simulated caller sends (Twilio's side of ``docs/protocols.md`` A2), each built for
one sequence number, and the signal that wakes the caller's tasks when its state changes."""

from __future__ import annotations

import trio

from callbridge.adapters.twilio import codec


def start_frame(sid: str, info: codec.StartInfo, seq: str) -> codec.Start:
    return codec.Start(sequence_number=seq, stream_sid=sid, start=info)


def media_frame(sid: str, media: codec.MediaChunk, seq: str) -> codec.Media:
    return codec.Media(sequence_number=seq, stream_sid=sid, media=media)


def mark_frame(sid: str, name: str, seq: str) -> codec.Mark:
    return codec.Mark(sequence_number=seq, stream_sid=sid, mark=codec.MarkInfo(name=name))


def dtmf_frame(sid: str, digit: str, seq: str) -> codec.Dtmf:
    return codec.Dtmf(sequence_number=seq, stream_sid=sid, dtmf=codec.DtmfInfo(digit=digit))


def stop_frame(sid: str, info: codec.StopInfo, seq: str) -> codec.Stop:
    return codec.Stop(sequence_number=seq, stream_sid=sid, stop=info)


class Signal:
    """Wakes every waiter whenever the call's state changes (playback, speech)."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()
