"""``GET /metrics`` as a scraper reads it: a real server over a store holding calls whose latencies are
known, its answer parsed with ``prometheus_client``'s own parser (families, types, latencies in
seconds), and the exposition kept to the server's own registry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import prometheus_client
import pytest
import trio
from bridge_harness import running_bridge
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_text import families, samples

from callbridge.engine.events import CallEnded, CallStarted, GreetingAudioStarted
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog

BEARER = {"Authorization": "Bearer test-token"}  # what running_bridge configures
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def one_quick_turn() -> CallLog:
    """The caller stops speaking; the transcript comes 120 ms later with ``response.created``; the
    reply's first audio 250 ms after that: a turn latency of 370 ms, a first audio of 250 ms."""
    return (
        CallLog("CAquick", start_at=T0, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("Hello")
        .assistant_says("Hi, how can I help?", first_audio_ms=250)
        .end()
    )


def greeted_call() -> list[CallStarted | GreetingAudioStarted | CallEnded]:
    """A call whose greeting's first audio came 1200 ms after its start."""
    at = T0 + 60
    return [
        CallStarted(call_id="CAgreeted", at=at, stream_sid="MZg", from_number="+15550100002", to_number="+15550109999"),
        GreetingAudioStarted(call_id="CAgreeted", at=at + 1.2, response_id="resp_g", latency_ms=1200),
        CallEnded(call_id="CAgreeted", at=at + 5, reason="caller_hangup"),
    ]


@pytest.fixture
async def metrics_http(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    store = EventStore(str(tmp_path / "callbridge.db"))
    one_quick_turn().write(store)
    store.append(greeted_call())
    store.close()
    async with running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=20) as http:
            yield http


async def test_the_served_text_has_typed_families_and_latencies_in_seconds(metrics_http: httpx2.AsyncClient) -> None:
    response = await metrics_http.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"] == CONTENT_TYPE_LATEST
    found = families(response.text)
    types = {name: family.type for name, family in found.items()}
    assert {name: types.get(name) for name in ("callbridge_calls", "callbridge_tokens", "callbridge_hangups")} == {
        "callbridge_calls": "counter",
        "callbridge_tokens": "counter",
        "callbridge_hangups": "counter",
    }
    latencies = (
        "callbridge_turn_latency_seconds",
        "callbridge_first_audio_seconds",
        "callbridge_greeting_latency_seconds",
    )
    assert {types.get(name) for name in latencies} == {"histogram"}
    assert types["callbridge_live_calls"] == types["callbridge_projection_lag_events"] == "gauge"
    assert types["process_cpu_seconds"] == "counter" and types["python_info"] == "gauge"
    assert [name for name in types if name.endswith("_ms")] == []  # the millisecond names are gone
    assert all(family.documentation for family in found.values())

    served = samples(response.text)
    turn, first, greeting = latencies
    assert served[f"{turn}_count"] == 1 and served[f"{turn}_sum"] == pytest.approx(0.37)
    assert served[f'{turn}_bucket{{le="0.3"}}'] == 0 and served[f'{turn}_bucket{{le="0.5"}}'] == 1
    assert served[f"{first}_count"] == 1 and served[f"{first}_sum"] == pytest.approx(0.25)
    assert served[f'{first}_bucket{{le="0.2"}}'] == 0 and served[f'{first}_bucket{{le="0.3"}}'] == 1
    assert served[f"{greeting}_count"] == 1 and served[f"{greeting}_sum"] == pytest.approx(1.2)
    assert served[f'{greeting}_bucket{{le="1.0"}}'] == 0 and served[f'{greeting}_bucket{{le="1.5"}}'] == 1
    assert served[f'{greeting}_bucket{{le="+Inf"}}'] == 1
    assert served['callbridge_calls_total{status="completed"}'] == 2 and served["callbridge_live_calls"] == 0


async def test_scrapes_at_once_each_get_the_whole_exposition_from_the_servers_own_registry(
    metrics_http: httpx2.AsyncClient,
) -> None:
    texts: list[str] = []

    async def scrape() -> None:
        response = await metrics_http.get("/metrics")
        assert response.status_code == 200
        texts.append(response.text)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(scrape)
    assert len(texts) == 3
    for text in texts:
        served = samples(text)
        assert served["callbridge_turn_latency_seconds_count"] == 1
        assert served["callbridge_projection_lag_events"] == 0 and served["callbridge_store_head_position"] > 0
    global_names = {family.name for family in prometheus_client.REGISTRY.collect()}
    assert not {name for name in global_names if name.startswith("callbridge_")}
