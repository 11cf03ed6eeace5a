"""The projection framework: exactly-once folding, resuming after crashes, skipping bad events,
versioned views, topic filtering, rebuilds and the command line."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path
from typing import ClassVar

import pytest
from test_projections_support import (
    T0,
    barge_in_call,
    crashed_call,
    fold,
    normal_call,
    reconnect_call,
    tool_call,
)

from callbridge.engine.events import (
    AssistantAudioPlayed,
    AssistantAudioSent,
    CallEnded,
    CallerAudioReceived,
    CallStarted,
)
from callbridge.engine.store import EventStore, RecordedEvent
from callbridge.engine.synthetic import CallLog
from callbridge.projections.conversations import ConversationsProjection, get_conversation
from callbridge.projections.metrics import MetricsProjection
from callbridge.projections.ownership import OwnershipProjection
from callbridge.projections.runner import (
    POSITIONS_SCHEMA,
    ProgressBar,
    Projection,
    ProjectionRunner,
    rebuild,
    rebuild_cli,
)
from callbridge.projections.source import LogSource, stored_topics
from callbridge.projections.views_db import dump_views, iso, open_views


class SimulatedCrash(BaseException):
    """The process dies (not an ``Exception``: nothing may catch it as a bad event)."""


class CrashAfter(ConversationsProjection):
    """The conversations projection, dying at its ``n``-th event."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        self.left -= 1
        if self.left < 0:
            raise SimulatedCrash
        super().apply(db, recorded)


class CallCounter(Projection):
    """A tiny projection: how many ``CallStarted``/``CallEnded`` it folded, and which one was bad."""

    name = "counter"
    version = 1
    topics = frozenset({"CallStarted", "CallEnded"})
    schema = ("CREATE TABLE IF NOT EXISTS counter (call_id TEXT PRIMARY KEY, events INTEGER NOT NULL)",)
    tables = ("counter",)
    poison: ClassVar[set[str]] = set()

    def apply(self, db: sqlite3.Connection, recorded: RecordedEvent) -> None:
        call_id = recorded.event.call_id
        db.execute("INSERT INTO counter VALUES (?, 1) ON CONFLICT(call_id) DO UPDATE SET events=events+1", (call_id,))
        if call_id in self.poison and isinstance(recorded.event, CallEnded):
            raise ValueError(f"cannot fold the end of {call_id}")


def _write_golden(store: EventStore) -> int:
    for n, build in enumerate((normal_call, tool_call, barge_in_call, reconnect_call)):
        build(start_at=T0 + n * 60).write(store)
    _, crashed = crashed_call(start_at=T0 + 300)
    return store.append(crashed)


def _clean_dump(store: EventStore, path: Path) -> dict[str, list[tuple[object, ...]]]:
    rebuild(store, path)
    db = open_views(path)
    try:
        return dump_views(db)
    finally:
        db.close()


def test_catch_up_folds_everything_once_and_records_the_head(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    head = _write_golden(sqlite_event_store)
    db = open_views(tmp_path / "views.db")
    runner = fold(sqlite_event_store, db, page_size=100)
    assert runner.positions() == {"conversations": head, "metrics": head, "ownership": head, "webhooks": head}
    before = dump_views(db)
    step = runner.step()
    assert (step.events, step.position, step.head, step.caught_up) == (0, head, head, True)
    assert dump_views(db) == before
    assert before == _clean_dump(sqlite_event_store, tmp_path / "clean.db")
    db.close()


def test_a_crash_mid_page_rolls_back_view_and_position_together(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    head = _write_golden(sqlite_event_store)
    path = tmp_path / "views.db"
    db = open_views(path)
    # the views fold about 150 of the golden log's events (conversations 114): the crash is mid-log
    runner = ProjectionRunner(sqlite_event_store, db, [CrashAfter(60), MetricsProjection()], page_size=20)
    runner.setup()
    with pytest.raises(SimulatedCrash):
        runner.catch_up()
    crashed_at = runner.positions()
    assert 0 < crashed_at["conversations"] < head
    # the page that crashed left nothing behind: the view holds exactly the committed pages
    committed = dump_views(db)
    db.close()

    db = open_views(path)  # "restart the process"
    assert dump_views(db) == committed
    fresh = ProjectionRunner(sqlite_event_store, db, page_size=20)
    fresh.setup()
    assert fresh.positions() == {**crashed_at, "ownership": 0, "webhooks": 0}  # not in the crashed runner
    fresh.catch_up()
    assert fresh.positions() == {"conversations": head, "metrics": head, "ownership": head, "webhooks": head}
    assert dump_views(db) == _clean_dump(sqlite_event_store, tmp_path / "clean.db")
    counts = db.execute("SELECT call_id, message_count, item_count FROM conversations ORDER BY call_id").fetchall()
    items = db.execute("SELECT call_id, count(*) FROM conversation_items GROUP BY call_id ORDER BY call_id").fetchall()
    assert [(c, n) for c, _, n in counts] == items  # no duplicated items
    db.close()


def test_a_process_killed_between_pages_resumes_without_duplicates(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    head = _write_golden(sqlite_event_store)
    path = tmp_path / "views.db"
    for pages in (1, 3, 2):  # three processes, each killed after a few pages
        db = open_views(path)
        runner = ProjectionRunner(sqlite_event_store, db, page_size=10)  # of about 150 folded events
        runner.setup()
        for _ in range(pages):
            runner.step()
        db.close()
    db = open_views(path)
    runner = ProjectionRunner(sqlite_event_store, db, page_size=10)
    runner.setup()
    assert 0 < min(runner.positions().values()) < head
    runner.catch_up()
    assert dump_views(db) == _clean_dump(sqlite_event_store, tmp_path / "clean.db")
    db.close()


def test_a_bad_event_is_skipped_noted_and_the_rest_still_folds(
    sqlite_event_store: EventStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    head = _write_golden(sqlite_event_store)
    ended = [r for r in sqlite_event_store.read_all(limit=10_000) if isinstance(r.event, CallEnded)]
    CallCounter.poison = {"CAtool"}
    try:
        db = open_views(tmp_path / "views.db")
        runner = ProjectionRunner(sqlite_event_store, db, [CallCounter(), ConversationsProjection()])
        runner.setup()
        runner.catch_up()
    finally:
        CallCounter.poison = set()
    assert runner.positions() == {"counter": head, "conversations": head}
    counts = dict(db.execute("SELECT call_id, events FROM counter").fetchall())
    # CAtool's end was rolled back alone; every other call has its start and end; the crashed call has no end
    assert counts == {"CAnormal": 2, "CAtool": 1, "CAbarge": 2, "CAreconn": 2, "CAcrash": 1}
    bad = next(r.position for r in ended if r.event.call_id == "CAtool")
    errors = db.execute("SELECT name, position, error FROM projection_errors").fetchall()
    assert errors == [("counter", bad, "ValueError: cannot fold the end of CAtool")]
    conversation = get_conversation(db, "CAtool")
    assert conversation is not None and conversation["status"] == "completed"  # other projections unharmed
    assert "projection counter skipped event" in caplog.text
    db.close()


class ConversationsThatCannotFoldAnEnd(ConversationsProjection):
    """The conversations view, failing on ``CallEnded`` of CAtool after it has touched its tables."""

    def _fold(self, db: sqlite3.Connection, event: object, call_id: str, at: str) -> None:
        super()._fold(db, event, call_id, at)
        if call_id == "CAtool" and isinstance(event, CallEnded):
            raise ValueError("cannot fold the end of CAtool")


@pytest.mark.parametrize("page_size", [1, 7, 1000])
def test_each_calls_last_event_time_is_its_last_folded_event_whatever_the_pages(
    sqlite_event_store: EventStore, tmp_path: Path, page_size: int
) -> None:
    """``last_event_at`` is written once per page, not per event: the same as per event, at any page
    size, and an event skipped for its error leaves no trace in it."""
    _write_golden(sqlite_event_store)
    db = open_views(tmp_path / "views.db")
    runner = ProjectionRunner(sqlite_event_store, db, [ConversationsThatCannotFoldAnEnd()], page_size=page_size)
    runner.setup()
    runner.catch_up()
    folded: dict[str, float] = {}
    for recorded in sqlite_event_store.read_all(limit=10_000):
        event = recorded.event
        if type(event).__name__ not in ConversationsProjection.topics:
            continue
        if event.call_id == "CAtool" and isinstance(event, CallEnded):
            continue  # rolled back alone
        folded[event.call_id] = max(folded.get(event.call_id, 0.0), event.at)
    last = dict(db.execute("SELECT call_id, last_event_at FROM conversations").fetchall())
    assert last == {call_id: iso(at) for call_id, at in folded.items()}
    assert db.execute("SELECT status FROM conversations WHERE call_id='CAtool'").fetchone() == ("in_progress",)
    db.close()


def test_a_projection_whose_version_changed_is_rebuilt_alone(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    head = _write_golden(sqlite_event_store)
    db = open_views(tmp_path / "views.db")
    fold(sqlite_event_store, db)
    db.execute("UPDATE conversations SET status='stale'")
    metrics_before = dump_views(db)["call_metrics"]

    class ConversationsV2(ConversationsProjection):
        version = ConversationsProjection.version + 1

    runner = ProjectionRunner(sqlite_event_store, db, [ConversationsV2(), MetricsProjection()])
    runner.setup()
    assert runner.positions() == {"conversations": 0, "metrics": head}
    step = runner.step()
    assert step.caught_up
    assert {row[0] for row in db.execute("SELECT status FROM conversations")} == {"completed", "in_progress"}
    assert dump_views(db)["call_metrics"] == metrics_before  # metrics did not fold anything twice
    assert db.execute("SELECT version FROM projection_positions WHERE name='conversations'").fetchone() == (
        ConversationsProjection.version + 1,
    )
    db.close()


def test_a_new_projection_catches_up_without_refolding_the_others(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    head = _write_golden(sqlite_event_store)
    db = open_views(tmp_path / "views.db")
    fold(sqlite_event_store, db)
    before = dump_views(db)
    runner = ProjectionRunner(sqlite_event_store, db, [ConversationsProjection(), MetricsProjection(), CallCounter()])
    runner.setup()
    runner.catch_up()
    after = dump_views(db)
    assert after.pop("counter") == sorted(
        [("CAbarge", 2), ("CAcrash", 1), ("CAnormal", 2), ("CAreconn", 2), ("CAtool", 2)]
    )
    after["projection_positions"] = [r for r in after["projection_positions"] if r[0] != "counter"]
    assert after == before
    assert runner.positions()["counter"] == head
    db.close()


def test_rebuild_replaces_whatever_the_views_held_and_is_deterministic(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    head = _write_golden(sqlite_event_store)
    path = tmp_path / "views.db"
    db = open_views(path)
    fold(sqlite_event_store, db)
    incremental = dump_views(db)
    db.execute("DELETE FROM conversation_items WHERE position > 0")
    db.execute("UPDATE call_metrics SET truncations = 99")
    progress: list[tuple[int, int]] = []
    assert rebuild(sqlite_event_store, path, progress=lambda done, total: progress.append((done, total))) == head
    assert dump_views(db) == incremental
    assert progress[-1] == (head, head)
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    rebuild(sqlite_event_store, path)
    assert dump_views(db) == incremental
    db.close()


def test_views_db_is_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = open_views(tmp_path / "deep" / "views.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("PRAGMA foreign_keys").fetchone() == (1,)
    for statement in POSITIONS_SCHEMA:
        db.execute(statement)
    ConversationsProjection().create(db)
    with pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO conversation_items(call_id, item_id, position, type, status, created_at) "
            "VALUES ('CAghost', 'i', 0, 'message', 'completed', 'now')"
        )
    db.close()


def test_the_log_source_reads_only_wanted_topics_and_reports_the_scanned_head(sqlite_event_store: EventStore) -> None:
    head = normal_call().write(sqlite_event_store)
    source = LogSource(sqlite_event_store, {"CallStarted", "CallEnded"})
    page = source.page(0, head, 100)
    assert [type(r.event) for r in page.events] == [CallStarted, CallEnded]
    assert page.reached == head
    first = source.page(0, head, 1)
    assert [type(r.event) for r in first.events] == [CallStarted] and first.reached == first.events[0].position
    assert source.page(head, head, 10) == ([], head)
    assert source.next_page(0, 100) == (page, head)  # a follower's step: the head and the page up to it
    assert source.next_page(head, 100) == (([], head), head)  # nothing new
    everything = LogSource(sqlite_event_store).page(0, head, 10_000)
    kinds = {type(r.event) for r in everything.events}
    assert CallerAudioReceived in kinds and AssistantAudioPlayed in kinds
    assert stored_topics(["CallEnded"]) == ("CallEnded@1",)
    with pytest.raises(KeyError, match="NoSuchEvent"):
        stored_topics(["NoSuchEvent"])


def test_default_projections_never_read_audio_chunks() -> None:
    runner_topics = ConversationsProjection.topics | MetricsProjection.topics
    assert "CallerAudioReceived" not in runner_topics
    assert "AssistantAudioPlayed" not in runner_topics


def test_duplicate_projection_names_are_refused(sqlite_event_store: EventStore) -> None:
    db = sqlite3.connect(":memory:")
    with pytest.raises(ValueError, match="unique"):
        ProjectionRunner(sqlite_event_store, db, [ConversationsProjection(), ConversationsProjection()])
    db.close()


# --- command line -----------------------------------------------------------------------------------


def test_rebuild_cli_draws_progress_and_reports(
    sqlite_store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EventStore(sqlite_store_url)
    head = _write_golden(store)
    store.close()
    assert rebuild_cli(sqlite_store_url, tmp_path / "v" / "views.db") == 0
    err = capsys.readouterr().err
    assert f"{head:,}/{head:,} events" in err
    assert "events/s" in err and "rebuilt the views" in err
    db = open_views(tmp_path / "v" / "views.db")
    assert db.execute("SELECT count(*) FROM conversations").fetchone() == (5,)
    db.close()


def test_rebuild_cli_defaults_to_views_next_to_the_store(
    sqlite_store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CALLBRIDGE_VIEWS", raising=False)
    EventStore(sqlite_store_url).close()
    assert rebuild_cli(sqlite_store_url) == 0
    assert (Path(sqlite_store_url).parent / "views.db").exists()
    custom = Path(sqlite_store_url).parent / "elsewhere.db"
    monkeypatch.setenv("CALLBRIDGE_VIEWS", str(custom))
    assert rebuild_cli(f"sqlite:///{sqlite_store_url}") == 0
    assert custom.exists()
    capsys.readouterr()


def test_rebuild_cli_refuses_a_bad_store_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert rebuild_cli("mysql://nope", tmp_path / "views.db") == 2
    assert "unsupported event store URL scheme" in capsys.readouterr().err


def test_progress_bar_always_draws_the_end() -> None:
    out = io.StringIO()
    bar = ProgressBar(out, width=10)
    bar(0, 100)
    bar(100, 100)  # even right after the last draw
    drawn = out.getvalue().split("\r")[1:]
    assert drawn[0].startswith("[----------] 0/100 events")
    assert drawn[-1].startswith("[##########] 100/100 events")


@pytest.mark.postgres
def test_views_folded_from_postgresql_equal_those_from_sqlite(
    postgres_store_url: str, sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    store = EventStore(postgres_store_url)
    try:
        head = _write_golden(store)
        from_postgres = _clean_dump(store, tmp_path / "pg.db")
    finally:
        store.close()
    _write_golden(sqlite_event_store)
    from_sqlite = _clean_dump(sqlite_event_store, tmp_path / "sqlite.db")
    positions = from_postgres.pop("projection_positions")
    from_sqlite.pop("projection_positions")
    assert positions == [
        ("conversations", head, ConversationsProjection.version),
        ("metrics", head, MetricsProjection.version),
        ("ownership", head, OwnershipProjection.version),
        ("webhooks", head, 1),
    ]
    sources = from_postgres.pop("views_source"), from_sqlite.pop("views_source")  # each names its own store
    assert sources[0][0][1].startswith("postgresql://") and sources[1][0][1].startswith("sqlite:")
    assert from_postgres == from_sqlite


def test_views_built_from_another_store_are_rebuilt_from_this_one(tmp_path: Path) -> None:
    first = EventStore(str(tmp_path / "first.db"))
    second = EventStore(str(tmp_path / "second.db"))
    CallLog("CAfirst").start().caller_says("Hello from the first store").end().write(first)
    CallLog("CAsecond").start().caller_says("Hello from the second store").end().write(second)
    db = open_views(tmp_path / "views.db")
    fold(first, db)
    assert get_conversation(db, "CAfirst") is not None
    fold(second, db)  # CALLBRIDGE_STORE now names another database; the views file stayed
    assert get_conversation(db, "CAfirst") is None
    assert get_conversation(db, "CAsecond") is not None
    assert dump_views(db) == _clean_dump(second, tmp_path / "clean.db")
    db.close()
    first.close()
    second.close()


def test_audio_chunks_are_folded_with_their_seal_left_closed(sqlite_event_store: EventStore) -> None:
    """Every view folding ``AssistantAudioSent`` reads its time and ids only, so the runner leaves its
    audio sealed (never decrypted); a view that reads the audio gets it opened."""
    head = normal_call().write(sqlite_event_store)
    runner = ProjectionRunner(sqlite_event_store, open_views(":memory:"))
    [chunk, *_] = [
        r.event for r in runner._source.page(0, head, 10_000).events if isinstance(r.event, AssistantAudioSent)
    ]
    assert chunk.payload == b"" and chunk.item_id and chunk.response_id

    class AudioReader(CallCounter):
        name = "audio"
        topics = frozenset({"AssistantAudioSent"})

    both = ProjectionRunner(sqlite_event_store, open_views(":memory:"), [MetricsProjection(), AudioReader()])
    [opened, *_] = [
        r.event for r in both._source.page(0, head, 10_000).events if isinstance(r.event, AssistantAudioSent)
    ]
    assert opened.payload and opened.payload != chunk.payload
