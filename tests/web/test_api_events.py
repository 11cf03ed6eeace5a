"""``GET /api/calls/{call_id}/events`` a page at a time, and the recording's file name, against a
real running server (synthetic calls written to the store before it starts)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from bridge_harness import running_bridge

from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog

BEARER = {"Authorization": "Bearer test-token"}
T0 = 1_767_225_600.0
ODD_IDS = ["CA1\r\nX-Injected: yes", 'CA2"; filename=evil.exe', "CA3 café"]
"""Call ids recorded before ids were checked at start: they must still be served safely."""


def a_call(call_id: str, at: float = T0) -> CallLog:
    return (
        CallLog(call_id, start_at=at, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("What's the weather in Paris?")
        .assistant_says("It is eighteen degrees in Paris.")
        .end()
    )


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx2.AsyncClient]:
    store = EventStore(str(tmp_path / "callbridge.db"))
    for index, call_id in enumerate(["CAweather", *ODD_IDS]):
        a_call(call_id, T0 + index).write(store)
    store.close()
    async with running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=20) as client:
            yield client


async def all_pages(http: httpx2.AsyncClient, url: str) -> tuple[list[dict[str, Any]], int]:
    """Follow the ``Link: rel=next`` headers from ``url``; every record and the number of pages."""
    records: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url is not None:
        response = await http.get(next_url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert isinstance(page, list)  # the contract's shape: a JSON array of records
        records += page
        pages += 1
        link = response.headers.get("link")
        next_url = link.split(">", 1)[0].lstrip("<") if link else None
        if next_url is not None:
            assert link.endswith('; rel="next"') and response.headers["x-next-after"] == str(page[-1]["position"])
        else:
            assert "x-next-after" not in response.headers
    return records, pages


async def test_events_come_a_page_at_a_time_and_the_pages_add_up_to_the_whole_log(http: httpx2.AsyncClient) -> None:
    whole = (await http.get("/api/calls/CAweather/events", params={"limit": 10_000})).json()
    assert len(whole) > 10 and whole[1]["type"] == "CallStarted" and whole[-1]["type"] == "CallEnded"
    paged, pages = await all_pages(http, "/api/calls/CAweather/events?limit=4")
    assert paged == whole
    assert pages == -(-len(whole) // 4)
    after = whole[5]["position"]
    rest = (await http.get("/api/calls/CAweather/events", params={"after": after})).json()
    assert rest == whole[6:]


async def test_audio_is_left_out_unless_asked(http: httpx2.AsyncClient) -> None:
    plain = (await http.get("/api/calls/CAweather/events")).json()
    audio = [r for r in plain if r["type"] in ("CallerAudioReceived", "AssistantAudioSent")]
    assert audio and all(set(r["data"]["payload"]) == {"omitted_bytes"} for r in audio)
    full = (await http.get("/api/calls/CAweather/events", params={"audio": "1"})).json()
    by_position = {r["position"]: r for r in full}
    for record in audio:
        payload = base64.b64decode(by_position[record["position"]]["data"]["payload"])
        assert len(payload) == record["data"]["payload"]["omitted_bytes"] > 0
    paged, _ = await all_pages(http, "/api/calls/CAweather/events?limit=5&audio=1")
    assert paged == full  # the next links keep audio=1


@pytest.mark.parametrize(
    ("params", "param"),
    [({"after": "-1"}, "after"), ({"after": "ten"}, "after"), ({"limit": "0"}, "limit"), ({"audio": "maybe"}, "audio")],
)
async def test_a_bad_paging_value_is_a_400_naming_it(
    http: httpx2.AsyncClient, params: dict[str, str], param: str
) -> None:
    response = await http.get("/api/calls/CAweather/events", params=params)
    assert response.status_code == 400 and response.json()["param"] == param


async def test_an_unknown_call_is_a_404_on_any_page(http: httpx2.AsyncClient) -> None:
    for params in ({}, {"after": "5"}):
        response = await http.get("/api/calls/CAnope/events", params=params)
        assert response.status_code == 404 and "CAnope" in response.json()["error"]
    beyond = await http.get("/api/calls/CAweather/events", params={"after": 10**9})
    assert (beyond.status_code, beyond.json()) == (200, [])


@pytest.mark.parametrize("call_id", ["CAweather", *ODD_IDS])
async def test_the_recordings_file_name_is_encoded_whatever_the_call_id(http: httpx2.AsyncClient, call_id: str) -> None:
    response = await http.get(f"/api/calls/{quote(call_id, safe='')}/recording.wav")
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    disposition = response.headers["content-disposition"]
    assert disposition.count(";") == 2 and "\r" not in disposition and "\n" not in disposition
    assert disposition.endswith(f"; filename*=UTF-8''{quote(call_id + '.wav', safe='')}")
    fallback = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert fallback.endswith(".wav") and all(ch.isalnum() or ch in "_.-" for ch in fallback)
    if call_id == "CAweather":
        assert disposition == "inline; filename=\"CAweather.wav\"; filename*=UTF-8''CAweather.wav"
    events = await http.get(f"/api/calls/{quote(call_id, safe='')}/events")
    assert events.status_code == 200 and events.json()[0]["data"]["call_id"] == call_id
