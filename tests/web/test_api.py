"""The token-protected API against a real running server (real sockets, real store, real views).

The store is filled with synthetic calls before the server starts; the projection service folds
them into the views as it starts, and every answer reflects the log at request time.
"""

from __future__ import annotations

import io
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import Bridge, running_bridge
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_text import families, samples

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.engine.events import AGENTS_STREAM, AgentSaved, ModelEventReceived
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.web.auth import SESSION_COOKIE

TOKEN = "test-token"  # what running_bridge configures
BEARER = {"Authorization": f"Bearer {TOKEN}"}
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
CONTRACT_SUMMARY = {  # the fields docs/contract.md promises for every conversation
    "call_id",
    "stream_sid",
    "phone_number",
    "caller_number",
    "started_at",
    "ended_at",
    "duration_seconds",
    "message_count",
    "status",
}
CONTRACT_ITEM = {"item_id", "type", "role", "text", "status", "created_at", "call_id", "name", "arguments", "output"}


def synthetic_calls() -> list[CallLog]:
    """Three finished calls on three days: two callers, two called numbers, one tool call."""
    weather = (
        CallLog("CAweather", start_at=T0, from_number="+15550100001", to_number="+15550109999")
        .start()
        .caller_says("What's the weather in Paris?")
        .tool_call("get_weather", {"city": "Paris"}, {"temperature_c": 18})
        .assistant_says("It is eighteen degrees in Paris.")
        .end()
    )
    plumber = (
        CallLog("CAplumber", start_at=T0 + DAY, from_number="+15550100002", to_number="+15550109999")
        .start()
        .caller_says("I need a plumber for my kitchen sink")
        .assistant_says("I can book a plumber for tomorrow morning.")
        .end()
    )
    hello = (
        CallLog("CAhello", start_at=T0 + 2 * DAY, from_number="+15550100001", to_number="+15550108888")
        .start()
        .caller_says("Hello")
        .assistant_says("Hi, how can I help?")
        .end()
    )
    return [weather, plumber, hello]


@dataclass
class Api:
    bridge: Bridge
    http: httpx2.AsyncClient
    """Sends the bearer token."""
    anonymous: httpx2.AsyncClient
    """Sends nothing (keeps cookies it is given)."""
    logs: dict[str, CallLog]

    async def json(self, path: str, **params: Any) -> Any:
        response = await self.http.get(path, params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    logs = synthetic_calls()
    store = EventStore(str(tmp_path / "callbridge.db"))
    for log in logs:
        log.write(store)
    store.close()
    script = Script(turns=[Turn(transcript="Hi there", reply="Hello! How can I help you today?")])
    async with running_bridge(tmp_path, script=script) as bridge:
        async with (
            httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=20) as http,
            httpx2.AsyncClient(base_url=bridge.base_url, timeout=20) as anonymous,
        ):
            yield Api(bridge, http, anonymous, {log.call_id: log for log in logs})


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/conversations", "/api/conversations/CAweather", "/api/calls/CAweather/events", "/api/metrics", "/metrics"],
)
async def test_every_api_route_refuses_a_request_without_the_token(api: Api, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = await api.anonymous.get(path, headers=headers)
        assert response.status_code == 401, (path, headers)
        error = response.json()["error"]
        assert "Authorization: Bearer TOKEN" in error and "?token=TOKEN" in error
        assert TOKEN not in response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await api.anonymous.get(path, params={"token": "wrong-token"})).status_code == 401


async def test_the_bearer_token_opens_the_api_and_health_needs_none(api: Api) -> None:
    assert (await api.http.get("/api/conversations")).status_code == 200
    assert (await api.anonymous.get("/api/conversations", headers={"authorization": f"bearer {TOKEN}"})).is_success
    assert (await api.anonymous.get("/healthz")).json()["status"] == "ok"


async def test_token_in_the_query_once_sets_a_strict_httponly_cookie_that_stands_in_for_it(api: Api) -> None:
    first = await api.anonymous.get("/api/conversations", params={"token": TOKEN})
    assert first.status_code == 200
    set_cookie = first.headers["set-cookie"]
    assert set_cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    assert TOKEN not in set_cookie  # the cookie proves the token without carrying it
    # the same browser now needs neither header nor query
    assert (await api.anonymous.get("/api/conversations/CAweather")).status_code == 200
    assert (await api.anonymous.get("/metrics")).status_code == 200
    # a forged cookie is refused
    async with httpx2.AsyncClient(base_url=api.bridge.base_url, cookies={SESSION_COOKIE: "forged"}) as forged:
        assert (await forged.get("/api/conversations")).status_code == 401


# --- conversations -----------------------------------------------------------------------------


async def test_conversations_are_listed_newest_first_with_the_contract_fields(api: Api) -> None:
    listed = await api.json("/api/conversations")
    assert [c["call_id"] for c in listed] == ["CAhello", "CAplumber", "CAweather"]
    assert all(CONTRACT_SUMMARY <= set(c) for c in listed)
    weather = listed[-1]
    assert weather["started_at"] == "2026-01-01T00:00:00.000Z"
    assert weather["ended_at"].endswith("Z") and weather["status"] == "completed"
    assert (weather["phone_number"], weather["caller_number"]) == ("+15550109999", "+15550100001")
    assert weather["message_count"] == 2


async def test_conversations_filter_by_number_time_and_words_and_honour_the_limit(api: Api) -> None:
    async def ids(**params: Any) -> list[str]:
        return [c["call_id"] for c in await api.json("/api/conversations", **params)]

    assert await ids(phone_number="+15550109999") == ["CAplumber", "CAweather"]
    assert await ids(caller_number="+15550100001") == ["CAhello", "CAweather"]
    assert await ids(since="2026-01-02", until="2026-01-03") == ["CAplumber"]
    assert await ids(since=str(T0 + 2 * DAY)) == ["CAhello"]
    assert await ids(q="plumber") == ["CAplumber"]
    assert await ids(q="paris degrees") == ["CAweather"]
    assert await ids(q="submarine") == []
    assert await ids(limit=2) == ["CAhello", "CAplumber"]


async def test_one_conversation_has_its_transcripts_and_tool_call_in_order(api: Api) -> None:
    conversation = await api.json("/api/conversations/CAweather")
    assert CONTRACT_SUMMARY <= set(conversation)
    items = conversation["items"]
    assert all(CONTRACT_ITEM <= set(item) for item in items)
    assert [(i["type"], i["role"]) for i in items] == [
        ("message", "user"),
        ("function_call", None),
        ("function_call_output", None),
        ("message", "assistant"),
    ]
    assert items[0]["text"] == "What's the weather in Paris?"
    assert (items[1]["name"], items[1]["arguments"]) == ("get_weather", '{"city":"Paris"}')
    assert items[2]["output"] == '{"temperature_c":18}'
    assert items[3]["text"] == "It is eighteen degrees in Paris."


@pytest.mark.parametrize(
    "path",
    [
        "/api/conversations/CAnope",
        "/api/calls/CAnope/events",
        "/api/calls/CAnope/recording.wav",
        "/api/calls/CAnope/metrics",
    ],
)
async def test_an_unknown_call_is_a_404_with_a_json_error(api: Api, path: str) -> None:
    response = await api.http.get(path)
    assert response.status_code == 404
    assert "CAnope" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/conversations", {"limit": "0"}, "limit"),
        ("/api/conversations", {"limit": "many"}, "limit"),
        ("/api/conversations", {"since": "yesterday"}, "since"),
        ("/api/conversations", {"until": "2026-13-45"}, "until"),
        ("/api/metrics", {"since": "soon"}, "since"),
    ],
)
async def test_a_bad_query_value_is_a_400_naming_the_parameter(
    api: Api, path: str, params: dict[str, str], param: str
) -> None:
    response = await api.http.get(path, params=params)
    assert response.status_code == 400
    body = response.json()
    assert body["param"] == param and body["error"].startswith(f"{param}:")


# --- events and recording ----------------------------------------------------------------------


async def test_a_calls_events_come_from_the_store_in_order(api: Api) -> None:
    events = await api.json("/api/calls/CAplumber/events")
    log = api.logs["CAplumber"]
    assert [e["type"] for e in events] == [type(e).__name__ for e in log.events]
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    routed, first = events[0], events[1]  # /twiml's routing decision, then the call
    assert set(first) == {"position", "type", "at", "data"}
    assert routed["type"] == "AgentRouted" and routed["data"]["call_id"] == "CAplumber"
    assert first["type"] == "CallStarted" and first["at"] == "2026-01-02T00:00:00.000000Z"
    assert first["data"]["call_id"] == "CAplumber" and first["data"]["from_number"] == "+15550100002"
    assert events[-1]["type"] == "CallEnded"


async def test_the_recording_is_a_stereo_8khz_wav_as_long_as_the_call(api: Api) -> None:
    response = await api.http.get("/api/calls/CAweather/recording.wav")
    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content[:4] == b"RIFF" and response.content[8:12] == b"WAVE"
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 8000, 2)
        log = api.logs["CAweather"]
        expected_s = log.events[-1].at - log.events[0].at
        assert wav.getnframes() == round(expected_s * 8000)
        frames = wav.readframes(wav.getnframes())
    assert frames.strip(b"\x00")  # both the caller's voice and the assistant's are in it


# --- metrics -----------------------------------------------------------------------------------


async def test_metrics_per_call_and_over_a_period(api: Api) -> None:
    weather = await api.json("/api/calls/CAweather/metrics")
    assert weather["call_id"] == "CAweather" and weather["tool_calls"] == 1
    assert [tool["name"] for tool in weather["tools"]] == ["get_weather"]
    everything = await api.json("/api/metrics")
    assert everything["calls"]["total"] == 3 and everything["calls"]["completed"] == 3
    assert (await api.json("/api/metrics", since="2026-01-02"))["calls"]["total"] == 2


async def test_prometheus_metrics_have_the_views_the_process_and_the_bridge(api: Api) -> None:
    response = await api.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    served = samples(response.text)
    assert served["callbridge_live_calls"] == 0
    assert served['callbridge_calls_total{status="completed"}'] == 3
    assert served["callbridge_turn_latency_seconds_count"] >= 3
    server = api.bridge.server
    head = int(served["callbridge_store_head_position"])
    own = [r for r in server.store.read_all(0, limit=head) if r.position <= head and r.event.call_id not in api.logs]
    background = {"EngineHeartbeat", "WebhookLeaseTaken", "AgentSaved"}  # the engine's own; the default agent's
    assert {type(r.event).__name__ for r in own} <= background  # first version is saved at start
    assert [type(r.event) for r in server.store.read_call(AGENTS_STREAM)] == [AgentSaved]
    assert head == sum(len(log.events) for log in api.logs.values()) + len(own)
    assert served["callbridge_projection_lag_events"] == 0
    assert served["process_resident_memory_bytes"] > 0
    assert served["process_open_fds"] > 0
    assert served["process_cpu_seconds_total"] > 0
    assert families(response.text)["callbridge_live_calls"].type == "gauge"


# --- a real call -------------------------------------------------------------------------------


async def recorded(bridge: Bridge, call_id: str, model_event_type: str) -> None:
    """Return once the store holds a model event of that type for the call (woken by writes)."""
    while True:
        head = await bridge.server.writer.flush()
        if any(isinstance(e, ModelEventReceived) and e.type == model_event_type for e in await bridge.events(call_id)):
            return
        await bridge.server.writer.wait_appended(head)


async def test_a_real_call_is_live_in_metrics_then_readable_through_the_api_as_soon_as_it_ends(api: Api) -> None:
    heard = trio.Event()
    reports = []

    async def call() -> None:
        script: list[Step] = [Speak(900), WaitForAssistant(timeout_s=15), Silence(30_000), HangUp()]
        reports.append(await place_call(api.bridge.base_url, script=script, on_media_received=lambda *_: heard.set()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await heard.wait()
        metrics = (await api.http.get("/metrics")).text
        assert samples(metrics)["callbridge_live_calls"] == 1
        (live_call_id,) = api.bridge.server.live.calls
        # the caller waits in silence; the engine hangs up once the reply is complete
        with trio.fail_after(15):
            await recorded(api.bridge, live_call_id, "response.done")
        api.bridge.server.live.hang_up_all("test_done")

    (report,) = reports
    assert report.call_sid == live_call_id
    listed = await api.json("/api/conversations", limit=1)
    assert listed[0]["call_id"] == report.call_sid and listed[0]["ended_at"] is not None
    conversation = await api.json(f"/api/conversations/{report.call_sid}")
    texts = [(item["role"], item["text"]) for item in conversation["items"] if item["type"] == "message"]
    assert ("assistant", "Hello! How can I help you today?") in texts
    assert (await api.json("/api/conversations", q="help today"))[0]["call_id"] == report.call_sid
    events = await api.json(f"/api/calls/{report.call_sid}/events")
    assert [e["type"] for e in events[:2]] == ["AgentRouted", "CallStarted"]  # /twiml's routing first
    assert events[-1]["type"] == "CallEnded"
    assert events[-1]["data"]["reason"] == "test_done"
