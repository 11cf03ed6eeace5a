"""``callbridge replay --json`` writes a call's JSON as its rows are read (``projections/call_json.py``).

The contract is "the events as JSON": each event ``store.read_call`` gives, as ``event_record`` shows
it, one per line. The streamed output is held to exactly those bytes, page size after page size,
whatever the call holds: audio and tools, an erasure, redaction rules, a webhook's hidden secret,
events of an older schema version or from before encryption, a tampered ciphertext, a lost key, rows
that cannot be decoded; and through the command as through the function.
"""

from __future__ import annotations

import io
import json
import logging
import sqlite3
from pathlib import Path

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent
from test_projections_support import T0, golden_calls, normal_call, tool_call

from callbridge.cli import main
from callbridge.engine.events import (
    CallEnded,
    CallerAudioReceived,
    CallerSaid,
    CallStarted,
    ModelEventReceived,
    ToolCallRequested,
    TranscriptDelta,
    WebhookRegistered,
    encode_event,
)
from callbridge.engine.keys import sqlite_keys_path
from callbridge.engine.redaction import Redaction
from callbridge.engine.store import EventStore, call_originator_id, encode_for_store, open_existing_store
from callbridge.projections.call_json import PAGE_SIZE, write_call_json
from callbridge.projections.erasure import erase_call
from callbridge.projections.event_json import event_record
from callbridge.projections.replay_cli import replay_cli

_encode = msgspec.json.Encoder()
CARD = "4111 1111 1111 1111"


def expected_json(store: EventStore, call_id: str) -> bytes:
    """What ``replay --json`` must print: each event ``read_call`` gives, as ``event_record``'s JSON."""
    records = [_encode.encode(event_record(recorded)) for recorded in store.read_call(call_id)]
    return b"[\n" + b",\n".join(records) + b"\n]\n" if records else b""


def streamed(store: EventStore, call_id: str, page_size: int = PAGE_SIZE) -> bytes:
    out = io.BytesIO()
    written = write_call_json(store, call_id, out, page_size=page_size)
    assert written == len(store.read_call(call_id))
    return out.getvalue()


def same_json(store: EventStore, call_id: str) -> bytes:
    """The streamed JSON, checked against ``expected_json`` for pages of 1, 3 and the default size."""
    expected = expected_json(store, call_id)
    assert expected
    for page_size in (1, 3, PAGE_SIZE):
        assert streamed(store, call_id, page_size) == expected, page_size
    return expected


def streamed_with_a_warning(path: Path, call_id: str, caplog: pytest.LogCaptureFixture, warning: str) -> bytes:
    """The streamed JSON of a damaged store: the store warns ``warning``, and it is still the JSON of
    what ``read_call`` gives."""
    store = open_existing_store(str(path))
    try:
        with caplog.at_level(logging.WARNING):
            output = streamed(store, call_id)
        assert warning in caplog.text
        assert output == same_json(store, call_id)
    finally:
        store.close()
    return output


def records(output: bytes) -> list[dict[str, object]]:
    loaded: list[dict[str, object]] = json.loads(output)
    return loaded


def test_golden_calls_with_audio_tools_a_barge_in_and_a_reconnect(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        calls = golden_calls()
        for log in calls:
            log.write(store)
            output = same_json(store, log.call_id)
            audio = [e.payload for e in log.events if isinstance(e, CallerAudioReceived)]
            shown = [r["data"]["payload"] for r in records(output) if r["type"] == "CallerAudioReceived"]  # type: ignore[index]
            assert audio and shown == [msgspec.json.decode(_encode.encode(a)) for a in audio]  # the audio, as base64
    finally:
        store.close()


def test_an_erased_call_shows_its_placeholders(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        log = tool_call()
        log.write(store)
        erase_call(store, log.call_id, by="cli")
        late = CallerSaid(call_id=log.call_id, at=T0 + 60, item_id="late", text="recorded after the erasure")
        store.append([late])  # stored without its values: its envelope has no ciphertext
        output = same_json(store, log.call_id)
    finally:
        store.close()
    assert any(r.get("erased") for r in records(output))
    assert records(output)[-1]["erased"] is True
    assert b"+15550100002" not in output and b"Paris" not in output and b"after the erasure" not in output


def said_with_a_card(call_id: str = "CAcard") -> list[object]:
    return [
        CallStarted(call_id=call_id, at=T0, stream_sid="MZ1", from_number="+15550100009"),
        ModelEventReceived(call_id=call_id, at=T0 + 1, type="x", raw=json.dumps({"transcript": f"card {CARD}"})),
        TranscriptDelta(call_id=call_id, at=T0 + 1.5, item_id="i1", role="user", delta="card 4111"),
        CallerSaid(call_id=call_id, at=T0 + 2, item_id="i1", text=f"my card is {CARD}"),
        ToolCallRequested(
            call_id=call_id, at=T0 + 3, tool_call_id="t1", name="pay", arguments=json.dumps({"card": CARD})
        ),
        CallerAudioReceived(
            call_id=call_id, at=T0 + 4, first_chunk=1, timestamps=[0], frame_sizes=[3], payload=b"\x01\x02\x03"
        ),
        CallEnded(call_id=call_id, at=T0 + 5, reason="caller_hangup"),
    ]


@pytest.mark.parametrize("in_log", [False, True], ids=["masked-when-shown", "masked-in-the-log"])
def test_redaction_rules_in_force_mask_what_is_shown(tmp_path: Path, in_log: bool) -> None:
    store = EventStore(str(tmp_path / "events.db"), redaction=Redaction(("cards",), in_log=in_log))
    try:
        store.append(said_with_a_card())  # type: ignore[arg-type]
        output = same_json(store, "CAcard")
    finally:
        store.close()
    assert b"4111" not in output and b"[card]" in output
    assert b'"payload":"AQID"' in output  # the audio is shown as it is


def test_a_webhooks_secret_stays_hidden(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        store.append(
            [WebhookRegistered(call_id="webhooks", at=T0, webhook_id="wh_1", url="https://x", events=[], secret="s3")]
        )
        output = same_json(store, "webhooks")
    finally:
        store.close()
    assert records(output)[0]["data"]["secret"] == "[hidden]"  # type: ignore[index]
    assert b"s3" not in output


def test_events_of_older_schema_versions_and_from_before_encryption(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        said = [
            ModelEventReceived(call_id="CAold", at=T0 + n, type="response.done", raw=json.dumps({"text": f"hi {n}"}))
            for n in range(4)
        ]
        sealed_then = [
            encode_for_store(e)._replace(topic=f"ModelEventReceived@{v}") for e, v in zip(said[:2], (1, 2), strict=True)
        ]
        store.append_encoded(sealed_then)  # an older engine's versions, sealed as today's store seals them
        oid = call_originator_id("CAold")
        clear = [encode_event(e) for e in said[2:]]  # before encryption: stored as they were
        started = encode_event(CallStarted(call_id="CAold", at=T0 + 9, stream_sid="MZ", from_number="+15550009999"))
        store.recorder.insert_events(
            [
                StoredEvent(oid, 3, "ModelEventReceived@1", clear[0][1]),
                StoredEvent(oid, 4, clear[1][0], clear[1][1]),
                StoredEvent(oid, 5, started[0], started[1]),
            ]
        )
        output = same_json(store, "CAold")
    finally:
        store.close()
    shown = records(output)
    assert [r["data"].get("facts") for r in shown[:4]] == [0, 1, 0, None]  # type: ignore[attr-defined]
    assert shown[4]["data"]["from_number"] == "+15550009999"  # type: ignore[index]


def test_states_of_todays_version_written_otherwise_than_msgspec_writes_them_today(tmp_path: Path) -> None:
    """An event of today's version is shown as its decoded event, never as the bytes stored: an older
    engine may have written its fields in another order, without a field added since (with a default),
    with a default ``omit_defaults`` leaves out, with a field dropped since, or with spaces."""
    played = {"call_id": "CAodd", "at": T0 + 1, "item_id": "i1", "marks": 1, "played_bytes": 800}
    states = [
        (2, "AssistantAudioPlayed@1", {**dict(reversed(list(played.items()))), "total_played_bytes": 800}),
        (3, "DtmfReceived@1", {"call_id": "CAodd", "at": T0 + 2, "digit": "5"}),  # sequence_number: its default
        (4, "ModelEventReceived@3", {"call_id": "CAodd", "at": T0 + 3, "type": "x", "raw": "", "facts": 2}),
        (5, "ResponseStarted@1", {"call_id": "CAodd", "at": T0 + 4, "response_id": "r1", "dropped_since": 1}),
        (6, "CallEnded@1", {"call_id": "CAodd", "at": T0 + 5, "reason": "caller_hangup", "detail": ""}),
    ]
    store = EventStore(str(tmp_path / "events.db"))
    try:
        store.append([CallStarted(call_id="CAodd", at=T0, stream_sid="MZ")])
        stored = [
            StoredEvent(call_originator_id("CAodd"), v, topic, json.dumps(data).encode()) for v, topic, data in states
        ]
        assert b", " in stored[-1].state  # json.dumps' spaces, which msgspec does not write
        store.recorder.insert_events(stored)
        output = same_json(store, "CAodd")
    finally:
        store.close()
    shown = [r["data"] for r in records(output)]
    assert list(shown[1]) == ["call_id", "item_id", "marks", "played_bytes", "total_played_bytes"]
    assert shown[2]["sequence_number"] == 0 and "facts" not in shown[3] and "dropped_since" not in shown[4]  # type: ignore[operator,index]


def test_an_event_of_another_call_in_the_calls_stream_is_shown_as_it_is(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        store.append([CallStarted(call_id="CAone", at=T0, stream_sid="MZ")])
        stray = encode_for_store(CallEnded(call_id="CAanother-and-longer", at=T0 + 1, reason="caller_hangup"))
        store.recorder.insert_events([StoredEvent(call_originator_id("CAone"), 2, stray.topic, stray.state)])
        output = same_json(store, "CAone")
    finally:
        store.close()
    assert records(output)[1]["data"] == {"call_id": "CAanother-and-longer", "reason": "caller_hangup", "detail": ""}


def a_stored_call(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "events.db"
    store = EventStore(str(path))
    try:
        log = normal_call()
        log.write(store)
    finally:
        store.close()
    return path, log.call_id


def test_a_tampered_ciphertext_reads_as_erased_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, call_id = a_stored_call(tmp_path)
    db = sqlite3.connect(path)
    position, state = db.execute(
        "SELECT rowid, state FROM stored_events WHERE topic = 'CallerAudioReceived@1' ORDER BY rowid LIMIT 1"
    ).fetchone()
    start = state.index(b'"c":"') + 5
    flipped = state[:start] + (b"B" if state[start : start + 1] == b"A" else b"A") + state[start + 1 :]
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (flipped, position))
    db.commit()
    db.close()
    output = streamed_with_a_warning(path, call_id, caplog, "does not match its key")
    tampered = [r for r in records(output) if r["position"] == position]
    assert tampered[0]["erased"] is True and tampered[0]["data"]["payload"] == ""  # type: ignore[index]
    assert sum(bool(r.get("erased")) for r in records(output)) == 1


def test_a_lost_key_reads_as_erased_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, call_id = a_stored_call(tmp_path)
    sqlite_keys_path(path).unlink()  # the key file was not copied with the store
    output = streamed_with_a_warning(path, call_id, caplog, "its key is missing from the key store")
    assert any(r.get("erased") for r in records(output))


def test_rows_that_cannot_be_decoded_are_passed_over_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        store.append([CallStarted(call_id="CAx", at=T0, stream_sid="MZx")])
        ended = encode_for_store(CallEnded(call_id="CAx", at=T0 + 1, reason="caller_hangup"))
        oid = call_originator_id("CAx")
        store.recorder.insert_events(
            [
                StoredEvent(oid, 2, "NoSuchEvent@1", b"{}"),
                StoredEvent(oid, 3, "CallEnded@1", b"not json"),
                StoredEvent(oid, 6, "CallEnded@x", ended.state),
                StoredEvent(
                    oid, 4, "CallerSaid@1", b'{"_sealed":{"k":"call:CAx","n":"AAAA","c":"!!"},"call_id":"CAx"}'
                ),
                StoredEvent(oid, 5, ended.topic, ended.state),
            ]
        )
        with caplog.at_level(logging.WARNING):
            output = same_json(store, "CAx")
    finally:
        store.close()
    assert [r["type"] for r in records(output)] == ["CallStarted", "CallEnded"]
    assert "NoSuchEvent@1" in caplog.text and "CallerSaid@1" in caplog.text and "CallEnded@x" in caplog.text


def test_a_call_with_no_events_writes_nothing(tmp_path: Path) -> None:
    store = EventStore(str(tmp_path / "events.db"))
    try:
        out = io.BytesIO()
        assert write_call_json(store, "CAnobody", out) == 0
    finally:
        store.close()
    assert out.getvalue() == b""


# --- through the command ------------------------------------------------------------------------


def test_replay_json_prints_the_same_bytes_to_a_binary_or_a_text_stream(tmp_path: Path) -> None:
    path, call_id = a_stored_call(tmp_path)
    store = open_existing_store(str(path))
    try:
        expected = expected_json(store, call_id)
    finally:
        store.close()
    binary = io.BytesIO()
    text = io.TextIOWrapper(binary, encoding="utf-8")  # has .buffer: written to as bytes
    assert replay_cli(str(path), call_id, wav=None, as_json=True, out=text) == 0
    text.flush()
    assert binary.getvalue() == expected
    plain = io.StringIO()  # no .buffer
    assert replay_cli(str(path), call_id, wav=None, as_json=True, out=plain) == 0
    assert plain.getvalue().encode() == expected


def test_callbridge_replay_json_prints_the_events_as_json(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.db"
    store = EventStore(str(path), redaction=Redaction())
    try:
        store.append(said_with_a_card())  # type: ignore[arg-type]
        clear = expected_json(store, "CAcard")
    finally:
        store.close()
    monkeypatch.delenv("CALLBRIDGE_REDACT", raising=False)
    assert main(["replay", "CAcard", "--json", "--store", str(path)]) == 0
    assert capsysbinary.readouterr().out == clear
    assert CARD.encode() in clear

    monkeypatch.setenv("CALLBRIDGE_REDACT", "cards")  # the rules in force where replay runs
    assert main(["replay", "CAcard", "--json", "--store", str(path)]) == 0
    masked = capsysbinary.readouterr().out
    store = open_existing_store(str(path))
    try:
        assert masked == expected_json(store, "CAcard")
    finally:
        store.close()
    assert b"4111" not in masked and b"[card]" in masked


def test_callbridge_replay_json_of_an_unknown_call_prints_no_json_and_exits_1(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    path, _ = a_stored_call(tmp_path)
    assert main(["replay", "CAnope", "--json", "--store", str(path)]) == 1
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    assert b"no events for call CAnope" in captured.err
