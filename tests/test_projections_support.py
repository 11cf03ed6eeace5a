"""Golden call logs and helpers shared by the projection tests (``test_projections_*.py``).

Each golden call is a ``CallLog`` script whose timeline is spelled out in a comment, so the numbers
the tests assert (latencies, durations, tokens) can be checked by hand. ``CallLog`` timing: caller
speech lasts ``max(600, 60*len(text))`` ms then 500 ms of silence before ``speech_stopped``; the
transcript follows 120 ms later; an answer's first audio comes 350 ms after ``response.created`` and
plays ``max(800, 65*len(text))`` ms; ``end()`` waits 200 ms. Each ``response.done`` reports input
text 100 (64 cached), input audio 20, output text ``len(transcript)//4``, output audio
``ceil(audio_ms/50)``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec

from callbridge.engine.events import Event, ModelEventReceived, TranscriptDelta
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.views_db import open_views

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, CallLog's default start


def normal_call(call_id: str = "CAnormal", start_at: float = T0) -> CallLog:
    # caller 40..1960 ms, stop 2460, transcript 2580 = response.created, first audio 2930 (latency 470),
    # reply plays 1950 ms -> 4880, CallEnded 5080.
    return (
        CallLog(call_id, start_at=start_at, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("Hi, what are your opening hours?")
        .assistant_says("We are open from nine to five.")
        .end()
    )


def tool_call(call_id: str = "CAtool", start_at: float = T0) -> CallLog:
    # caller stop 1560, transcript 1680; get_weather: created 1680, requested 1880, done 2180;
    # get_forecast: created 2180, requested 2380, failed 7380; answer created 7380, first audio 7730
    # (latency 7730-1560 = 6170), plays 1690 -> 9420, end 9620.
    return (
        CallLog(call_id, start_at=start_at, from_number="+15550100002", to_number="+15550109999")
        .start()
        .caller_says("Weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temp_c": 21}, duration_ms=300)
        .tool_call("get_forecast", {"city": "Paris"}, "forecast service timed out", failed=True, duration_ms=5000)
        .assistant_says("It is 21 degrees in Paris.")
        .end()
    )


STORY = "Once upon a time there was a very long story about a phone."


def barge_in_call(call_id: str = "CAbarge", start_at: float = T0) -> CallLog:
    # caller stop 1740, transcript 1860, first audio 2210 (latency 470); 600 ms played -> barge-in at
    # 2810 with 1600 ms generated; truncated 2830; caller stop 4050, answer first audio 4520 (latency
    # 470), plays 800 -> 5320, end 5520.
    return (
        CallLog(call_id, start_at=start_at, from_number="+15550100003", to_number="+15550108888")
        .start()
        .caller_says("Tell me a long story")
        .assistant_says(STORY, interrupted_at_ms=600)
        .caller_says("Stop, thanks")
        .assistant_says("Okay!")
        .end()
    )


def reconnect_call(call_id: str = "CAreconn", start_at: float = T0) -> CallLog:
    # caller stop 1200, first audio 1670 (latency 470), plays 1235 -> 2905; caller stop 4125,
    # transcript 4245; model drops at 4245, reconnects at 4645 (downtime 400), re-seeds the two items
    # and the model echoes them with new ids; answer first audio 4995 (latency 870), plays 1235 ->
    # 6230, end 6430.
    return (
        CallLog(call_id, start_at=start_at, from_number="+15550100004", to_number="+15550109999")
        .start()
        .caller_says("Hello there")
        .assistant_says("Hi! How can I help?")
        .caller_says("Book a table")
        .model_drops(downtime_ms=400)
        .assistant_says("Done, table booked.")
        .end()
    )


def golden_calls() -> list[CallLog]:
    """The golden calls a minute apart: a normal one, a tool call, a barge-in and a reconnect."""
    calls = [build(start_at=T0 + n * 60) for n, build in enumerate((normal_call, tool_call, barge_in_call))]
    return [*calls, reconnect_call(start_at=T0 + 300)]


def crashed_call(call_id: str = "CAcrash", start_at: float = T0) -> tuple[CallLog, list[Event]]:
    """A call whose process died while the second answer was being transcribed: the log stops after
    the first writer window of that answer's transcript (its first delta, at 8330 ms, and the words
    of the window), with no ``CallEnded``."""
    # caller stop 1740, first audio 2210 (latency 470), plays 1885 -> 4095; caller stop 5975,
    # transcript 6095, first audio 6445 (latency 470), played until 8330, first delta "Let" at 8330.
    log = (
        CallLog(call_id, start_at=start_at, from_number="+15550100005", to_number="+15550109999")
        .start()
        .caller_says("Are you still there?")
        .assistant_says("Yes, I am here and listening.")
        .caller_says("Great, so about my bill")
        .assistant_says("Let me look at your bill now.")
    )
    first_delta = next(
        i
        for i, e in enumerate(log.events)
        if isinstance(e, ModelEventReceived) and e.type.endswith("transcript.delta") and '"delta":"Let"' in e.raw
    )
    words = next(e for e in log.events if isinstance(e, TranscriptDelta) and e.delta.startswith("Let "))
    window = msgspec.structs.replace(words, delta="Let")  # the window held that one word
    return log, [*log.events[: first_delta + 1], window]


def fold(store: EventStore, db: sqlite3.Connection, *, page_size: int = 1000) -> ProjectionRunner:
    """Set the default projections up on ``db`` and catch them up with the store."""
    runner = ProjectionRunner(store, db, page_size=page_size)
    runner.setup()
    runner.catch_up()
    return runner


def views_after(store: EventStore, path: Path) -> sqlite3.Connection:
    """A view database at ``path`` caught up with ``store`` (the caller closes it)."""
    db = open_views(path)
    fold(store, db)
    return db


def conversation_status(views: Path, call_id: str) -> str | None:
    """The call's ``status`` in the conversations view (None when the view has no such call)."""
    from callbridge.projections.conversations import get_conversation

    db = open_views(views)
    try:
        conversation = get_conversation(db, call_id)
        return None if conversation is None else conversation["status"]
    finally:
        db.close()
