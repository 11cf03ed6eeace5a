"""The metrics view, from golden synthetic logs: latencies, truncations, reconnects, tools, tokens, cost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_text import families, samples
from test_projections_support import (
    T0,
    barge_in_call,
    crashed_call,
    normal_call,
    reconnect_call,
    tool_call,
    views_after,
)

from callbridge.adapters.openai.server_objects import CachedTokensDetails as CachedTokens
from callbridge.adapters.openai.server_objects import InputTokenDetails as InputTokens
from callbridge.adapters.openai.server_objects import OutputTokenDetails as OutputTokens
from callbridge.adapters.openai.server_objects import Usage
from callbridge.engine.events import CallEnded, ModelConnectionFailed, ModelErrorReported, TaskCrashed
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.projections.metrics import get_call_metrics, metrics_summary, usage_tokens, view_metric_families
from callbridge.projections.pricing import DEFAULT_PRICES, PricingError, cost_usd, load_prices
from callbridge.projections.views_db import QueryError


@pytest.fixture
def views(sqlite_event_store: EventStore, tmp_path: Path) -> Iterator[Any]:
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


def _turns(metrics: dict[str, Any], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(turn[f] for f in fields) for turn in metrics["turns"]]


def test_a_normal_call_measures_latency_first_audio_tokens_and_cost(views: Any) -> None:
    metrics = get_call_metrics(views(normal_call()), "CAnormal")
    assert metrics is not None
    assert {k: metrics[k] for k in ("status", "end_reason", "duration_seconds", "caller_turns", "responses")} == {
        "status": "completed",
        "end_reason": "caller_hangup",
        "duration_seconds": 5.08,
        "caller_turns": 1,
        "responses": 1,
    }
    assert _turns(metrics, "turn", "status", "response_latency_ms", "first_audio_ms", "truncated") == [
        (1, "completed", 470.0, 350.0, False)
    ]
    # 100 text (64 cached) + 20 audio in; "We are open from nine to five." = 30 chars -> 7 text out,
    # 1950 ms -> 39 audio out.
    expected = {
        "input_text": 36,
        "input_cached_text": 64,
        "input_audio": 20,
        "input_cached_audio": 0,
        "output_text": 7,
        "output_audio": 39,
    }
    assert metrics["tokens"] == expected
    assert metrics["turns"][0]["tokens"] == expected
    # (36*4 + 64*0.4 + 20*32 + 7*16 + 39*64) / 1e6 = 3417.6e-6
    assert metrics["cost_usd"] == 0.003418
    assert metrics["response_latency_ms"] == {"count": 1, "p50": 470.0, "p95": 470.0, "mean": 470.0, "max": 470.0}


def test_a_tool_turn_counts_tool_time_in_the_latency_and_records_each_tool(views: Any) -> None:
    metrics = get_call_metrics(views(tool_call()), "CAtool")
    assert metrics is not None
    assert _turns(metrics, "turn", "response_latency_ms", "first_audio_ms") == [
        (1, None, None),
        (2, None, None),
        (3, 6170.0, 350.0),
    ]
    assert [(t["name"], t["outcome"], t["duration_ms"], t["handler"]) for t in metrics["tools"]] == [
        ("get_weather", "completed", 300.0, "backend"),
        ("get_forecast", "failed", 5000.0, "backend"),
    ]
    assert metrics["tools"][1]["error"] == "forecast service timed out"
    assert (metrics["tool_calls"], metrics["tool_failures"], metrics["tool_timeouts"], metrics["tool_ms_total"]) == (
        2,
        1,
        0,
        5300.0,
    )
    assert metrics["tokens"] == {
        "input_text": 108,
        "input_cached_text": 192,
        "input_audio": 60,
        "input_cached_audio": 0,
        "output_text": 14,
        "output_audio": 34,
    }
    assert metrics["cost_usd"] == 0.004829


def test_a_barge_in_records_played_and_generated_ms(views: Any) -> None:
    metrics = get_call_metrics(views(barge_in_call()), "CAbarge")
    assert metrics is not None
    assert _turns(metrics, "status", "response_latency_ms", "truncated", "played_ms", "generated_ms") == [
        ("cancelled", 470.0, True, 600, 1600),
        ("completed", 470.0, False, None, None),
    ]
    assert (
        metrics["barge_ins"],
        metrics["truncations"],
        metrics["truncated_played_ms"],
        metrics["truncated_generated_ms"],
    ) == (1, 1, 600, 1600)
    assert metrics["caller_turns"] == 2
    # partial transcript of 24 chars -> 6 text tokens, 600 ms heard -> 12 audio; "Okay!" -> 1 and 16.
    assert (metrics["tokens"]["output_text"], metrics["tokens"]["output_audio"]) == (7, 28)
    assert metrics["cost_usd"] == 0.003523


def test_a_model_reconnect_is_counted_with_its_downtime(views: Any) -> None:
    metrics = get_call_metrics(views(reconnect_call()), "CAreconn")
    assert metrics is not None
    assert (metrics["reconnects"], metrics["disconnects"], metrics["reconnect_downtime_ms"]) == (1, 1, 400.0)
    assert _turns(metrics, "response_latency_ms", "first_audio_ms") == [(470.0, 350.0), (870.0, 350.0)]
    assert metrics["response_latency_ms"]["p50"] == 470.0
    assert metrics["response_latency_ms"]["p95"] == 870.0


def test_a_crashed_call_keeps_its_open_turn_and_partial_numbers(sqlite_event_store: EventStore, tmp_path: Path) -> None:
    _, events = crashed_call()
    sqlite_event_store.append(events)
    db = views_after(sqlite_event_store, tmp_path / "views.db")
    metrics = get_call_metrics(db, "CAcrash")
    db.close()
    assert metrics is not None
    assert (metrics["status"], metrics["ended_at"], metrics["duration_seconds"]) == ("in_progress", None, None)
    assert _turns(metrics, "status", "response_latency_ms", "first_audio_ms") == [
        ("completed", 470.0, 350.0),
        ("in_progress", 470.0, 350.0),
    ]
    # only the first response finished: 29 chars -> 7 text tokens, 1885 ms -> 38 audio tokens
    assert (metrics["tokens"]["output_text"], metrics["tokens"]["output_audio"]) == (7, 38)


def test_latency_counts_from_the_callers_last_pause(views: Any) -> None:
    # The caller pauses, then goes on speaking before any answer: only the second pause counts.
    log = CallLog("CApause").start().caller_says("Well").caller_says("I think so").assistant_says("Right.").end()
    metrics = get_call_metrics(views(log), "CApause")
    assert metrics is not None
    assert metrics["caller_turns"] == 2
    assert _turns(metrics, "response_latency_ms") == [(470.0,)]


def test_errors_crashes_and_failed_connections_are_counted(views: Any) -> None:
    log = CallLog("CAerr").start().model_error("rate_limit_exceeded", "slow down")
    at = log.start_at + 1
    log.events += [
        ModelConnectionFailed(call_id="CAerr", at=at, attempt=1, error="refused", retry_in_s=0.5),
        TaskCrashed(call_id="CAerr", at=at, task="model", error="boom"),
        CallEnded(call_id="CAerr", at=at + 1, reason="model_unavailable"),
    ]
    metrics = get_call_metrics(views(log), "CAerr")
    assert metrics is not None
    assert (metrics["model_errors"], metrics["task_crashes"], metrics["connection_failures"]) == (1, 1, 1)
    assert metrics["status"] == "failed"
    assert isinstance(log.events[-4], ModelErrorReported)


def test_unknown_call_metrics_are_none(views: Any) -> None:
    db = views(normal_call())
    assert get_call_metrics(db, "CAnope") is None
    with pytest.raises(QueryError):
        get_call_metrics(db, "")


# --- summary and Prometheus -------------------------------------------------------------------------


@pytest.fixture
def golden(views: Any, sqlite_event_store: EventStore) -> Any:
    _, crashed = crashed_call(start_at=T0 + 4 * 3600)
    sqlite_event_store.append(crashed)
    return views(
        normal_call(start_at=T0),
        tool_call(start_at=T0 + 3600),
        barge_in_call(start_at=T0 + 2 * 3600),
        reconnect_call(start_at=T0 + 3 * 3600),
    )


def test_summary_adds_up_the_calls(golden: Any) -> None:
    summary = metrics_summary(golden)
    assert summary["calls"] == {"total": 5, "in_progress": 1, "completed": 4, "failed": 0}
    # latencies: 470 (normal), 6170 (tool), 470, 470 (barge-in), 470, 870 (reconnect), 470, 470 (crash)
    assert summary["response_latency_ms"] == {"count": 8, "p50": 470.0, "p95": 6170.0, "mean": 1232.5, "max": 6170.0}
    assert summary["first_audio_ms"]["count"] == 8
    assert (summary["truncations"], summary["truncated_played_ms"], summary["truncated_generated_ms"]) == (1, 600, 1600)
    assert (summary["reconnects"], summary["disconnects"]) == (1, 1)
    assert summary["tool_calls"] == {
        "total": 2,
        "completed": 1,
        "failed": 1,
        "timed_out": 0,
        "pending": 0,
        "mean_ms": 2650.0,
    }
    per_call = [get_call_metrics(golden, c) for c in ("CAnormal", "CAtool", "CAbarge", "CAreconn", "CAcrash")]
    assert summary["tokens"] == {k: sum(m["tokens"][k] for m in per_call if m) for k in summary["tokens"]}
    assert summary["cost_usd"] == cost_usd(summary["tokens"])


def test_summary_filters_by_start_time(golden: Any) -> None:
    window = metrics_summary(golden, since="2026-01-01T01:00:00Z", until="2026-01-01T02:00:00Z")
    assert window["calls"]["total"] == 1
    assert window["tool_calls"]["total"] == 2
    assert window["response_latency_ms"]["count"] == 1
    assert metrics_summary(golden, since="2027-01-01")["calls"]["total"] == 0
    with pytest.raises(QueryError) as raised:
        metrics_summary(golden, since="soon")
    assert raised.value.param == "since"


def exposition(db: Any, prices: dict[str, float] | None = None) -> str:
    """The view's families as ``prometheus_client`` serves them."""

    class ViewCollector:
        def collect(self) -> list[Any]:
            return view_metric_families(db, prices=prices)

    registry = CollectorRegistry()
    registry.register(ViewCollector())
    return generate_latest(registry).decode()


def test_the_view_is_exposed_as_prometheus_families_with_latencies_in_seconds(golden: Any) -> None:
    text = exposition(golden)
    served = samples(text)
    expected = {
        'callbridge_calls_total{status="completed"}': 4,
        'callbridge_calls_total{status="in_progress"}': 1,
        'callbridge_calls_total{status="failed"}': 0,
        'callbridge_turn_latency_seconds_bucket{le="0.3"}': 0,
        'callbridge_turn_latency_seconds_bucket{le="0.5"}': 6,
        'callbridge_turn_latency_seconds_bucket{le="5.0"}': 7,
        'callbridge_turn_latency_seconds_bucket{le="+Inf"}': 8,
        "callbridge_turn_latency_seconds_count": 8,
        "callbridge_turn_latency_seconds_sum": 9.86,  # 9860 ms of turn latency in the golden logs
        "callbridge_truncations_total": 1,
        "callbridge_model_reconnects_total": 1,
        'callbridge_tool_calls_total{outcome="completed"}': 1,
        'callbridge_tool_calls_total{outcome="failed"}': 1,
    }
    assert {key: served[key] for key in expected} == pytest.approx(expected)
    kinds = {name: family.type for name, family in families(text).items()}
    assert kinds["callbridge_tokens"] == "counter" and kinds["callbridge_turn_latency_seconds"] == "histogram"
    assert kinds["callbridge_first_audio_seconds"] == "histogram"
    assert kinds["callbridge_greeting_latency_seconds"] == "histogram"
    assert not [name for name in kinds if name.endswith("_ms")]
    summary = metrics_summary(golden)
    assert served["callbridge_cost_usd_total"] == pytest.approx(summary["cost_usd"])
    assert summary["first_audio_ms"]["count"] == served["callbridge_first_audio_seconds_count"]
    for kind, count in summary["tokens"].items():
        assert served[f'callbridge_tokens_total{{kind="{kind}"}}'] == count


# --- tokens and prices -----------------------------------------------------------------------------


def test_usage_tokens_are_disjoint_kinds() -> None:
    detailed = Usage(
        input_token_details=InputTokens(
            text_tokens=100,
            audio_tokens=50,
            cached_tokens=70,
            cached_tokens_details=CachedTokens(text_tokens=40, audio_tokens=30),
        ),
        output_token_details=OutputTokens(text_tokens=5, audio_tokens=60),
    )
    assert usage_tokens(detailed) == (60, 40, 20, 30, 5, 60)
    # without the split, cached tokens count as text first, then audio
    undetailed = Usage(input_token_details=InputTokens(text_tokens=10, audio_tokens=50, cached_tokens=25))
    assert usage_tokens(undetailed) == (0, 10, 35, 15, 0, 0)
    assert usage_tokens(None) == (0, 0, 0, 0, 0, 0)


def test_prices_default_and_override() -> None:
    assert load_prices({}) == DEFAULT_PRICES
    assert DEFAULT_PRICES == {
        "input_text": 4.0,
        "input_cached_text": 0.4,
        "input_audio": 32.0,
        "input_cached_audio": 0.4,
        "output_text": 16.0,
        "output_audio": 64.0,
    }
    prices = load_prices({"CALLBRIDGE_PRICES": '{"output_audio": 20, "input_audio": 10.5}'})
    assert (prices["output_audio"], prices["input_audio"], prices["input_text"]) == (20.0, 10.5, 4.0)
    assert cost_usd({"output_audio": 1_000_000}, prices) == 20.0


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("{oops", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"audio": 1}', "unknown token kind 'audio'"),
        ('{"output_audio": -1}', "non-negative"),
        ('{"output_audio": "cheap"}', "non-negative"),
    ],
)
def test_bad_price_tables_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(PricingError, match=fragment):
        load_prices({"CALLBRIDGE_PRICES": text})


def test_cost_follows_the_price_table_in_force(golden: Any) -> None:
    free = dict.fromkeys(DEFAULT_PRICES, 0.0)
    assert get_call_metrics(golden, "CAnormal", prices=free)["cost_usd"] == 0.0  # type: ignore[index]
    assert metrics_summary(golden, prices=free)["cost_usd"] == 0.0
    assert samples(exposition(golden, prices=free))["callbridge_cost_usd_total"] == 0.0
