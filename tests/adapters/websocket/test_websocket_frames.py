"""``adapters/websocket/frames.py`` against wsproto, the reference it stands in for on the media path:
what wsproto frames, ``next_frame`` reads as the same messages; what ``encode_messages`` frames,
wsproto reads as the same messages; and every frame that is not a whole, well-formed data frame is
left to wsproto (``CONTROL`` or ``HAND_OVER``), never misread."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage

from callbridge.adapters.websocket import frames

messages = st.lists(
    st.one_of(st.text(max_size=300), st.binary(max_size=300), st.sampled_from(["x" * 200, "é" * 70_000])),
    max_size=6,
)


def wsproto_frames(sender: ConnectionType, batch: list[str | bytes]) -> bytes:
    connection = Connection(sender)
    return b"".join(connection.send(TextMessage(data=m) if isinstance(m, str) else BytesMessage(data=m)) for m in batch)


def read_all(data: bytes, *, masked: bool, max_size: int = 1 << 24) -> list[str | bytes]:
    out: list[str | bytes] = []
    pos = 0
    while pos < len(data):
        kind, end, message = frames.next_frame(data, pos, masked=masked, max_size=max_size)
        assert kind == frames.WHOLE, (kind, data[pos : pos + 16])
        assert message is not None
        out.append(message)
        pos = end
    return out


def wsproto_reads(receiver: ConnectionType, data: bytes) -> list[str | bytes]:
    connection = Connection(receiver)
    connection.receive_data(data)
    out: list[str | bytes] = []
    for event in connection.events():
        assert isinstance(event, Message) and event.message_finished, event
        out.append(event.data)
    return out


@settings(max_examples=300)
@given(messages, st.booleans())
def test_frames_reads_what_wsproto_writes_in_either_role(batch: list[str | bytes], from_client: bool) -> None:
    sender = ConnectionType.CLIENT if from_client else ConnectionType.SERVER
    assert read_all(wsproto_frames(sender, batch), masked=from_client) == batch


@settings(max_examples=300)
@given(messages, st.booleans())
def test_wsproto_reads_what_frames_writes_in_either_role(batch: list[str | bytes], as_client: bool) -> None:
    data = frames.encode_messages(batch, mask=as_client)
    receiver = ConnectionType.SERVER if as_client else ConnectionType.CLIENT
    assert wsproto_reads(receiver, data) == batch


def test_a_client_masks_every_frame_with_its_own_key() -> None:
    data = frames.encode_messages(["same", "same"], mask=True)
    first, second = data[:10], data[10:]
    assert first[1] & 0x80 and second[1] & 0x80
    assert first[2:6] != second[2:6]  # 2**-32 odds of a false failure


@given(st.text(min_size=1, max_size=300), st.booleans())
def test_a_frame_cut_anywhere_is_incomplete_until_its_last_byte(text: str, masked: bool) -> None:
    data = wsproto_frames(ConnectionType.CLIENT if masked else ConnectionType.SERVER, [text])
    for cut in range(len(data)):
        assert frames.next_frame(data[:cut], 0, masked=masked, max_size=1 << 20)[0] == frames.INCOMPLETE
    assert frames.next_frame(data, 0, masked=masked, max_size=1 << 20) == (frames.WHOLE, len(data), text)


def test_control_frames_are_handed_to_wsproto_whole() -> None:
    connection = Connection(ConnectionType.CLIENT)
    data = connection.send(Ping(payload=b"hi")) + connection.send(CloseConnection(code=1000))
    kind, end, message = frames.next_frame(data, 0, masked=True, max_size=1000)
    assert (kind, message) == (frames.CONTROL, None)
    assert frames.next_frame(data, end, masked=True, max_size=1000)[::2] == (frames.CONTROL, None)


def _hand_built(first: int, payload: bytes, *, length: bytes | None = None) -> bytes:
    """An unmasked frame from a server, its first byte and length field as given."""
    return bytes([first]) + (length if length is not None else bytes([len(payload)])) + payload


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_hand_built(0x01, b"frag"), "a first fragment"),
        (_hand_built(0x80, b"ment"), "a continuation"),
        (_hand_built(0xC1, b"deflated?"), "a reserved bit (no extension is negotiated)"),
        (_hand_built(0x83, b""), "a reserved data opcode"),
        (_hand_built(0x81, b"\xff\xfe"), "text that is not UTF-8"),
        (_hand_built(0x81, b"x" * 5, length=bytes([126, 0, 5])), "a length in more bytes than needed"),
        (_hand_built(0x82, b"", length=bytes([127]) + (5).to_bytes(8, "big")), "a 64-bit length under 64 KiB"),
        (_hand_built(0x81, b"y" * 100), "a message over the limit"),
        (bytes([0x81, 0x80 | 2]) + b"\0\0\0\0ok", "a masked frame from a server"),
    ],
)
def test_a_frame_that_is_not_ours_is_handed_over(data: bytes, why: str) -> None:
    assert frames.next_frame(data, 0, masked=False, max_size=50) == (frames.HAND_OVER, 0, None), why


def test_an_unmasked_frame_from_a_client_is_handed_over() -> None:
    data = wsproto_frames(ConnectionType.SERVER, ["unmasked"])
    assert frames.next_frame(data, 0, masked=True, max_size=1000) == (frames.HAND_OVER, 0, None)
