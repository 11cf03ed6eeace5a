"""The simulated realtime model as the benchmark's separate process, with frame timings on exit.

It is ``serve_fake_openai`` — the same code ``callbridge fake-openai`` runs — with the benchmark's
script (plain spoken replies: no tool call reaches out to the network) and no session expiry. Its
``SessionRecord``s already timestamp every client event as received and every server event as it is
handed to the socket; on SIGINT/SIGTERM this process writes, per session, the times (monotonic)
of each ``input_audio_buffer.append`` with the caller tag it carries, and of each
``response.output_audio.delta`` with its fingerprint, as one JSON line per session.
"""

from __future__ import annotations

import signal
from functools import partial
from pathlib import Path

import msgspec
import trio
from bench_stats import monotonic_offset, own_cpu_seconds, summarize, watch_loop_lag
from frame_tags import delta_fingerprint, read_tags

from callbridge.adapters.openai.client_events import InputAudioBufferAppend
from callbridge.adapters.sim.fake_openai import FakeOpenAI, serve_fake_openai
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


class FakeSummary(msgspec.Struct, kw_only=True):
    """The last line of the timings file: how the fake process itself fared."""

    cpu_s: float
    loop_lag_ms_p99: float
    loop_lag_ms_max: float


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


async def serve_until_signal(out: Path, port: int) -> None:
    offset = monotonic_offset()
    lags: list[float] = []
    fake: FakeOpenAI | None = None
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(
            partial(serve_fake_openai, "127.0.0.1", port, script=BENCH_SCRIPT, expire_after_s=None)
        )
        nursery.start_soon(watch_loop_lag, lags)
        print(msgspec.json.encode({"url": fake.url, "port": fake.port}).decode(), flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        nursery.cancel_scope.cancel()
    lag = summarize(lags)
    with out.open("wb") as file:
        for record in fake.sessions:
            file.write(msgspec.json.encode(session_timings(record, offset)) + b"\n")
        summary = FakeSummary(cpu_s=own_cpu_seconds(), loop_lag_ms_p99=lag.p99 * 1000, loop_lag_ms_max=lag.max * 1000)
        file.write(msgspec.json.encode(summary) + b"\n")


def read_timings(path: Path) -> tuple[list[SessionTimings], FakeSummary]:
    lines = path.read_bytes().splitlines()
    sessions = [msgspec.json.decode(line, type=SessionTimings) for line in lines[:-1]]
    return sessions, msgspec.json.decode(lines[-1], type=FakeSummary)
