"""The simulated realtime model as the benchmark runs it, and the frame timings read from it.

It is ``FakeOpenAI`` — the same code ``callbridge fake-openai`` runs — with the benchmark's script
(plain spoken replies: no tool call reaches out to the network) and no session expiry, served from
the peer process (``peers.py``) on the media path's sockets (``peer_sockets``). Its
``SessionRecord``s already timestamp every client event as received and every server event as it
is handed to the socket; ``session_timings`` keeps, per session, the times (monotonic) of each
``input_audio_buffer.append`` with the caller tag it carries, and of each
``response.output_audio.delta`` with its fingerprint.
"""

from __future__ import annotations

import msgspec
from frame_tags import delta_fingerprint, read_tags

from callbridge.adapters.openai.client_events import InputAudioBufferAppend
from callbridge.adapters.sim.fake_openai_records import SessionRecord
from callbridge.adapters.sim.fake_openai_script import Script, Turn

REPLIES = (
    "Sure, I can help with that. What else do you need?",
    "Of course. Your order ships tomorrow, by noon too.",
    "Got it. I have booked your table for two at eight.",
    "Thanks for waiting. The line is all clear now. Go.",
    "Yes, the store opens at nine, and closes at seven.",
    "Alright. I sent the receipt to your email address.",
)
"""50 characters each: 3.25 s of simulated speech (65 ms a character), streamed at twice real time.
Different texts start the synthetic voice at different points, so a call's audio chunks differ."""

BENCH_SCRIPT = Script(
    turns=[Turn(transcript=f"Benchmark caller, turn {n}.", reply=reply) for n, reply in enumerate(REPLIES, 1)],
    fallback_reply=REPLIES[0],
)


class SessionTimings(msgspec.Struct, kw_only=True):
    """One model session as the simulated model saw it (times are ``time.monotonic()``)."""

    index: int
    connected_at: float
    appends: list[tuple[float, int, int]]
    """(received at, call, frame) per tagged caller frame in an ``input_audio_buffer.append``
    (several when the bridge coalesced frames)."""
    untagged_appends: int
    """Appended frames without a tag (must be 0)."""
    deltas: list[tuple[float, int]]
    """(sent at, fingerprint) per ``response.output_audio.delta``."""
    client_types: dict[str, int]
    server_types: dict[str, int]
    close_code: int | None


def session_timings(record: SessionRecord, offset: float) -> SessionTimings:
    appends: list[tuple[float, int, int]] = []
    untagged = 0
    client_types: dict[str, int] = {}
    for received in record.client_events:
        client_types[received.type] = client_types.get(received.type, 0) + 1
        if isinstance(received.event, InputAudioBufferAppend):
            for tag in read_tags(received.event.audio):
                if tag is None:
                    untagged += 1
                else:
                    appends.append((received.at + offset, *tag))
    deltas: list[tuple[float, int]] = []
    server_types: dict[str, int] = {}
    for sent in record.server_events:
        server_types[sent.type] = server_types.get(sent.type, 0) + 1
        if sent.type == "response.output_audio.delta":
            fp = delta_fingerprint(sent.raw)
            if fp is not None:
                deltas.append((sent.at + offset, fp))
    return SessionTimings(
        index=record.index,
        connected_at=record.connected_at + offset,
        appends=appends,
        untagged_appends=untagged,
        deltas=deltas,
        client_types=client_types,
        server_types=server_types,
        close_code=record.close_code,
    )
