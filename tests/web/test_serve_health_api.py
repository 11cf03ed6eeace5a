"""``/healthz`` of an in-process server: public, bounded, and honest about a store that hangs."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx2
import pytest
import trio
from bridge_harness import running_bridge


async def test_healthz_says_ok_with_what_it_checked(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge, httpx2.AsyncClient(base_url=bridge.base_url) as http:
        response = await http.get("/healthz")  # no token: load balancers and Twilio's checks call it
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "problems": [],
        "accepting_calls": True,
        "live_calls": 0,
        "events_pending": response.json()["events_pending"],
        "events_dropped": 0,
    }


async def test_a_store_that_stops_answering_is_reported_within_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hang = threading.Event()
    async with running_bridge(tmp_path) as bridge, httpx2.AsyncClient(base_url=bridge.base_url, timeout=30) as http:
        monkeypatch.setattr(bridge.server.store, "ping", lambda: hang.wait() or True)  # a database that hangs
        with trio.fail_after(20):  # a safety net: the ping is abandoned after HEALTH_STORE_TIMEOUT_S
            response = await http.get("/healthz")
        hang.set()
    assert response.status_code == 503
    assert response.json()["problems"] == ["the event store does not answer"]
    assert response.json()["accepting_calls"] is False
