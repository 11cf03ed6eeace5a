"""μ-law encoding and decoding agree with the G.711 reference over every 16-bit sample and every byte."""

from __future__ import annotations

import struct
import warnings

import pytest

from callbridge.adapters import mulaw

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    audioop = pytest.importorskip("audioop", reason="CPython's audioop (the reference) is gone after 3.12")


def test_every_sample_encodes_as_the_reference_encoder_does() -> None:
    pcm = struct.pack("<65536h", *range(-32768, 32768))
    assert mulaw.pcm16_to_ulaw(pcm) == audioop.lin2ulaw(pcm, 2)


def test_every_byte_decodes_as_the_reference_decoder_does() -> None:
    data = bytes(range(256))
    assert struct.pack("<256h", *mulaw.decode(data)) == audioop.ulaw2lin(data, 2)
