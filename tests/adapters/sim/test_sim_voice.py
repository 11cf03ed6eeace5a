"""μ-law helpers and the synthetic voice: byte-exact G.711, and speech an energy VAD can hear."""

from __future__ import annotations

import struct
import warnings

import pytest

from callbridge.adapters.sim.voice import (
    FRAME_BYTES,
    LOOP_MS,
    SILENCE_BYTE,
    Voice,
    rms,
    silence,
    speech,
    ulaw_decode,
    ulaw_encode,
)


def test_encode_and_decode_match_audioop_byte_for_byte() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    samples = list(range(-32768, 32768))
    pcm = struct.pack(f"<{len(samples)}h", *samples)
    assert ulaw_encode(samples) == audioop.lin2ulaw(pcm, 2)
    all_bytes = bytes(range(256))
    assert ulaw_decode(all_bytes) == list(struct.unpack("<256h", audioop.ulaw2lin(all_bytes, 2)))


def test_known_values() -> None:
    assert ulaw_decode(bytes([0xFF, 0x7F])) == [0, 0]  # both "zeros"
    assert ulaw_encode([0]) == bytes([SILENCE_BYTE])
    assert ulaw_decode(bytes([0x00, 0x80])) == [-32124, 32124]  # the extremes


def test_decode_then_encode_is_identity_except_negative_zero() -> None:
    codes = bytes(b for b in range(256) if b != 0x7F)
    assert ulaw_encode(ulaw_decode(codes)) == codes


def test_silence() -> None:
    assert silence(20) == bytes([0xFF]) * 160
    assert rms(silence(1000)) == 0.0
    assert rms(b"") == 0.0
    assert rms(b"\x7f\xff" * 80) == 0.0  # both μ-law zeros


def test_a_frame_with_one_loud_sample_is_not_silence() -> None:
    frame = bytearray(silence(20))
    frame[80] = 0x00  # the loudest negative sample
    assert rms(bytes(frame)) == (ulaw_decode(b"\x00")[0] ** 2 / 160) ** 0.5


def test_speech_is_loud_in_every_frame() -> None:
    audio = speech(LOOP_MS)
    levels = [rms(audio[i : i + FRAME_BYTES]) for i in range(0, len(audio), FRAME_BYTES)]
    assert min(levels) > 300  # never silent inside an utterance
    assert sum(levels) / len(levels) > 2000


def test_speech_lengths_and_wrapping() -> None:
    assert len(speech(20)) == 160
    assert len(speech(LOOP_MS * 3 + 7)) == (LOOP_MS * 3 + 7) * 8
    assert speech(100, offset_ms=LOOP_MS) == speech(100)
    wrapped = speech(40, offset_ms=LOOP_MS - 20)
    assert wrapped == speech(20, offset_ms=LOOP_MS - 20) + speech(20)


def test_voice_continues_where_it_left_off() -> None:
    voice = Voice(offset_ms=LOOP_MS - 40)
    frames = b"".join(voice.frame() for _ in range(5))
    assert frames == speech(100, offset_ms=LOOP_MS - 40)
    assert Voice(0).frame() != Voice(370).frame()
