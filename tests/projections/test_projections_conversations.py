"""The conversations view, from golden synthetic logs: exact rows, statuses, counts and search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_projections_support import (
    STORY,
    T0,
    barge_in_call,
    crashed_call,
    fold,
    normal_call,
    reconnect_call,
    tool_call,
    views_after,
)

from callbridge.engine.events import CallErased, CallerSaid, TranscriptDelta
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.conversations import get_conversation, list_conversations, search_conversations
from callbridge.projections.conversations_query import fts_query
from callbridge.projections.views_db import QueryError, open_views


def _items(conversation: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(item[f] for f in fields) for item in conversation["items"]]


@pytest.fixture
def views(sqlite_event_store: EventStore, tmp_path: Path) -> Iterator[Any]:
    """A function that writes logs to the store and returns the caught-up views connection."""
    opened = []

    def build(*logs: CallLog) -> Any:
        for log in logs:
            log.write(sqlite_event_store)
        db = views_after(sqlite_event_store, tmp_path / "views.db")
        opened.append(db)
        return db

    yield build
    for db in opened:
        db.close()


def test_a_normal_call_is_a_completed_conversation_with_both_transcripts(views: Any) -> None:
    db = views(normal_call())
    conversation = get_conversation(db, "CAnormal")
    assert conversation is not None
    summary = {k: v for k, v in conversation.items() if k != "items"}
    assert summary == {
        "call_id": "CAnormal",
        "stream_sid": "MZnormal",
        "phone_number": "+15550109999",
        "caller_number": "+15550100001",
        "started_at": "2026-01-01T00:00:00.000Z",
        "ended_at": "2026-01-01T00:00:05.080Z",
        "duration_seconds": 5.08,
        "message_count": 2,
        "status": "completed",
        "end_reason": "caller_hangup",
        "last_event_at": "2026-01-01T00:00:05.080Z",
        "model": "sim",
        "direction": "inbound",
        "outcome": "caller_hangup",
        "transfer_target": None,
        "twilio_status": None,
        "erased_at": None,
    }
    assert _items(conversation, "position", "type", "role", "text", "status", "created_at") == [
        (0, "message", "user", "Hi, what are your opening hours?", "completed", "2026-01-01T00:00:02.460Z"),
        (1, "message", "assistant", "We are open from nine to five.", "completed", "2026-01-01T00:00:02.580Z"),
    ]
    assert all(item["call_id"] == "CAnormal" for item in conversation["items"])


FAILED_OUTPUT = '{"error": "forecast service timed out"}'  # what the engine tells the model of a failure


def test_function_calls_carry_arguments_and_outputs_and_failures_show(views: Any) -> None:
    db = views(tool_call())
    conversation = get_conversation(db, "CAtool")
    assert conversation is not None
    assert conversation["message_count"] == 2
    assert conversation["duration_seconds"] == 9.62
    rows = _items(conversation, "position", "type", "role", "name", "arguments", "output", "status", "created_at")
    assert rows == [
        (0, "message", "user", None, None, None, "completed", "2026-01-01T00:00:01.560Z"),
        (1, "function_call", None, "get_weather", '{"city":"Paris"}', '{"temp_c":21}', "completed",
         "2026-01-01T00:00:01.680Z"),
        (2, "function_call_output", None, "get_weather", None, '{"temp_c":21}', "completed",
         "2026-01-01T00:00:02.180Z"),
        (3, "function_call", None, "get_forecast", '{"city":"Paris"}', FAILED_OUTPUT, "completed",
         "2026-01-01T00:00:02.180Z"),
        (4, "function_call_output", None, "get_forecast", None, FAILED_OUTPUT, "failed",
         "2026-01-01T00:00:07.380Z"),
        (5, "message", "assistant", None, None, None, "completed", "2026-01-01T00:00:07.380Z"),
    ]  # fmt: skip
    calls = conversation["items"][1], conversation["items"][3]
    outputs = conversation["items"][2], conversation["items"][4]
    for call, output in zip(calls, outputs, strict=True):
        assert output["item_id"] == f"{call['tool_call_id']}:output"
        assert output["tool_call_id"] == call["tool_call_id"]
    assert conversation["items"][5]["text"] == "It is 21 degrees in Paris."


def test_a_barge_in_truncates_the_assistant_item_and_keeps_its_text(views: Any) -> None:
    db = views(barge_in_call())
    conversation = get_conversation(db, "CAbarge")
    assert conversation is not None
    assert _items(conversation, "role", "text", "status", "truncated_at_ms") == [
        ("user", "Tell me a long story", "completed", None),
        ("assistant", STORY[:24], "truncated", 600),
        ("user", "Stop, thanks", "completed", None),
        ("assistant", "Okay!", "completed", None),
    ]
    assert STORY[:24] == "Once upon a time there w"  # what the model generated before the cut
    assert conversation["message_count"] == 4
    assert conversation["phone_number"] == "+15550108888"


def test_a_model_reconnect_does_not_duplicate_the_reseeded_items(views: Any) -> None:
    db = views(reconnect_call())
    conversation = get_conversation(db, "CAreconn")
    assert conversation is not None
    assert _items(conversation, "role", "text", "status") == [
        ("user", "Hello there", "completed"),
        ("assistant", "Hi! How can I help?", "completed"),
        ("user", "Book a table", "completed"),
        ("assistant", "Done, table booked.", "completed"),
    ]
    assert conversation["message_count"] == 4
    assert conversation["status"] == "completed"
    assert conversation["ended_at"] == "2026-01-01T00:00:06.430Z"


def test_a_call_that_crashed_stays_in_progress_and_shows_when_it_went_quiet(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    _, events = crashed_call()
    sqlite_event_store.append(events)
    db = views_after(sqlite_event_store, tmp_path / "views.db")
    conversation = get_conversation(db, "CAcrash")
    db.close()
    assert conversation is not None
    assert conversation["status"] == "in_progress"
    assert conversation["ended_at"] is None
    assert conversation["duration_seconds"] is None
    assert conversation["end_reason"] is None
    assert conversation["last_event_at"] == "2026-01-01T00:00:08.330Z"
    assert _items(conversation, "role", "text", "status") == [
        ("user", "Are you still there?", "completed"),
        ("assistant", "Yes, I am here and listening.", "completed"),
        ("user", "Great, so about my bill", "completed"),
        ("assistant", "Let", "in_progress"),
    ]


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("caller_hangup", "completed"),
        ("twilio_disconnected", "completed"),
        ("server_shutdown", "completed"),
        ("model_unavailable", "failed"),
        ("supervisor_gave_up", "failed"),
        ("twilio_task_crashed", "failed"),
    ],
)
def test_the_end_reason_decides_between_completed_and_failed(views: Any, reason: str, status: str) -> None:
    db = views(CallLog("CAend").start().caller_says("Hello?").end(reason))
    conversation = get_conversation(db, "CAend")
    assert conversation is not None
    assert (conversation["status"], conversation["end_reason"]) == (status, reason)


def test_ending_closes_items_that_never_finished(views: Any) -> None:
    log = CallLog("CAopen").start().caller_says("Hello?")
    log.events = [
        e
        for e in log.events
        if "input_audio_transcription" not in getattr(e, "type", "") and not isinstance(e, CallerSaid | TranscriptDelta)
    ]  # no transcription at all: neither its deltas nor its end
    db = views(log.end("twilio_disconnected"))
    conversation = get_conversation(db, "CAopen")
    assert conversation is not None
    assert _items(conversation, "role", "text", "status") == [("user", None, "incomplete")]


def test_unknown_conversation_is_none(views: Any) -> None:
    db = views(normal_call())
    assert get_conversation(db, "CAnope") is None
    with pytest.raises(QueryError) as raised:
        get_conversation(db, "")
    assert raised.value.param == "call_id"


# --- listing and search ----------------------------------------------------------------------------


@pytest.fixture
def three_calls(views: Any) -> Any:
    return views(
        normal_call("CAfirst", start_at=T0),
        tool_call("CAsecond", start_at=T0 + 3600),
        barge_in_call("CAthird", start_at=T0 + 7200),
    )


def test_list_is_newest_first_with_the_contract_fields(three_calls: Any) -> None:
    listed = list_conversations(three_calls)
    assert [c["call_id"] for c in listed] == ["CAthird", "CAsecond", "CAfirst"]
    assert set(listed[0]) >= {
        "call_id", "stream_sid", "phone_number", "caller_number", "started_at", "ended_at",
        "duration_seconds", "message_count", "status",
    }  # fmt: skip
    assert "items" not in listed[0]
    assert [c["call_id"] for c in list_conversations(three_calls, limit=2)] == ["CAthird", "CAsecond"]


def test_list_filters_by_numbers_and_time(three_calls: Any) -> None:
    db = three_calls
    assert [c["call_id"] for c in list_conversations(db, phone_number="+15550108888")] == ["CAthird"]
    assert [c["call_id"] for c in list_conversations(db, caller_number="+15550100002")] == ["CAsecond"]
    assert [c["call_id"] for c in list_conversations(db, since="2026-01-01T01:00:00Z")] == ["CAthird", "CAsecond"]
    assert [c["call_id"] for c in list_conversations(db, until="2026-01-01T01:00:00Z")] == ["CAfirst"]
    window = list_conversations(db, since="2026-01-01T00:30:00+00:00", until=T0 + 5400)
    assert [c["call_id"] for c in window] == ["CAsecond"]
    assert [c["call_id"] for c in list_conversations(db, since="2026-01-01")] == ["CAthird", "CAsecond", "CAfirst"]


def test_list_q_is_full_text_and_never_an_fts_syntax_error(three_calls: Any) -> None:
    db = three_calls
    assert [c["call_id"] for c in list_conversations(db, q="paris")] == ["CAsecond"]
    assert [c["call_id"] for c in list_conversations(db, q='"Paris')] == ["CAsecond"]
    assert [c["call_id"] for c in list_conversations(db, q="long story (")] == ["CAthird"]
    assert list_conversations(db, q="story AND OR") == []  # operators are words: all must occur
    assert [c["call_id"] for c in list_conversations(db, q="opening hours")] == ["CAfirst"]
    assert [c["call_id"] for c in list_conversations(db, q="open*")] == ["CAfirst"]
    assert list_conversations(db, q="opening weather") == []
    assert list_conversations(db, q='"* -- ) ') == []
    assert len(list_conversations(db, q="   ")) == 3  # blank q filters nothing


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
    ],
)
def test_bad_query_values_name_the_parameter(three_calls: Any, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(QueryError) as raised:
        list_conversations(three_calls, **kwargs)
    assert raised.value.param == param
    assert str(raised.value).startswith(f"{param}: ")


def test_search_returns_conversations_with_highlighted_snippets(three_calls: Any) -> None:
    results = search_conversations(three_calls, "Paris", limit=10)
    assert [r["call_id"] for r in results] == ["CAsecond"]
    assert results[0]["status"] == "completed"
    snippets = [(m["role"], m["snippet"]) for m in results[0]["matches"]]
    assert sorted(snippets) == [("assistant", "It is 21 degrees in **Paris**."), ("user", "Weather in **Paris**?")]
    assert search_conversations(three_calls, "!!!", limit=10) == []
    assert search_conversations(three_calls, "zebra", limit=10) == []


def test_search_ranks_and_limits(views: Any) -> None:
    db = views(
        CallLog("CAonce", start_at=T0).start().caller_says("pizza please").assistant_says("Sure.").end(),
        CallLog("CAmany", start_at=T0 + 60)
        .start()
        .caller_says("pizza pizza pizza")
        .assistant_says("One pizza, coming right up.")
        .end(),
    )
    assert [r["call_id"] for r in search_conversations(db, "pizza", limit=10)] == ["CAmany", "CAonce"]
    assert [r["call_id"] for r in search_conversations(db, "pizza", limit=1)] == ["CAmany"]
    with pytest.raises(QueryError):
        search_conversations(db, "pizza", limit=0)


def test_fts_query_quotes_every_word() -> None:
    assert fts_query('paris "weather') == '"paris" "weather"'
    assert fts_query("open* NEAR(x)") == '"open"* "NEAR" "x"'
    assert fts_query("-- '\"") is None


def test_transcripts_in_progress_are_searchable_and_replaced_when_done(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    _, events = crashed_call()
    sqlite_event_store.append(events)
    db = views_after(sqlite_event_store, tmp_path / "views.db")
    try:
        assert [r["call_id"] for r in search_conversations(db, "bill", limit=5)] == ["CAcrash"]
        assert [r["matches"][0]["snippet"] for r in search_conversations(db, "let", limit=5)] == ["**Let**"]
    finally:
        db.close()


_INDEX = "SELECT rowid, text, call_id, item_id FROM conversation_items_fts ORDER BY rowid"
_MESSAGES = (
    "SELECT rowid, text, call_id, item_id FROM conversation_items "
    "WHERE type = 'message' AND coalesce(text, '') != '' ORDER BY rowid"
)


def test_the_search_index_holds_every_message_as_its_row_reads_whatever_the_page_size(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    """A message's text is indexed once per page, at its end, however often it grew in the page."""
    for log in (normal_call(), barge_in_call(), tool_call(), reconnect_call()):
        log.write(sqlite_event_store)
    _, unfinished = crashed_call()  # its last words are still deltas when the log ends
    sqlite_event_store.append([*unfinished, CallErased(call_id="CAnormal", at=T0 + 60)])
    indexes = []
    for page_size in (1, 7, 1000):
        db = open_views(tmp_path / f"views-{page_size}.db")
        try:
            fold(sqlite_event_store, db, page_size=page_size)
            index = db.execute(_INDEX).fetchall()
            assert index == db.execute(_MESSAGES).fetchall()
            indexes.append(index)
        finally:
            db.close()
    assert indexes[0] == indexes[1] == indexes[2]
    by_call = {call_id for _, _, call_id, _ in indexes[0]}
    assert by_call >= {"CAnormal", "CAcrash", "CAtool"}
    assert {text for _, text, call_id, _ in indexes[0] if call_id == "CAnormal"} == {"[erased]"}


def test_views_made_with_the_per_update_index_trigger_lose_it_and_stay_searchable(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    normal_call().write(sqlite_event_store)
    db = open_views(tmp_path / "views.db")
    try:
        fold(sqlite_event_store, db)
        db.execute(
            "CREATE TRIGGER conversation_items_fts_update AFTER UPDATE OF text ON conversation_items "
            "BEGIN SELECT 1; END"
        )
        _, unfinished = crashed_call()
        sqlite_event_store.append(unfinished)
        fold(sqlite_event_store, db)  # a server started on views an older version made
        triggers = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert "conversation_items_fts_update" not in triggers
        assert db.execute(_INDEX).fetchall() == db.execute(_MESSAGES).fetchall()
        assert [r["call_id"] for r in search_conversations(db, "bill", limit=5)] == ["CAcrash"]
    finally:
        db.close()
