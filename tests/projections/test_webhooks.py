"""Webhooks out, over real sockets: registering endpoints (``/api/webhooks``), signed deliveries checked
with the Standard Webhooks reference library, retries, dead letters, redelivery, order per call."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import Bridge, running_bridge
from privacy_calls import CALLER_NUMBER, ORDER, PHRASE, SCRIPT, files_holding, order_registry, place_secret_call
from webhook_endpoint import Received, webhook_endpoint

from callbridge.engine.events import (
    WEBHOOKS_STREAM,
    CallEnded,
    CallStarted,
    ModelConnectionFailed,
    TaskCrashed,
    TransferDialed,
)
from callbridge.engine.synthetic import CallLog
from callbridge.projections.webhook_messages import KINDS
from callbridge.projections.webhook_sender import EndpointSender

BEARER = {"Authorization": "Bearer test-token"}
FAST_RETRIES = {"CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS": "0.05"}


async def register(http: httpx2.AsyncClient, url: str, events: list[str] | None = None, **extra: Any) -> dict:
    response = await http.post("/api/webhooks", json={"url": url, "events": events or list(KINDS), **extra})
    assert response.status_code == 201, response.text
    return response.json()


def record_calls(bridge: Bridge, *logs: CallLog) -> None:
    for log in logs:
        for event in log.events:
            bridge.server.writer.record(event)


async def deliveries(http: httpx2.AsyncClient, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
    response = await http.get(f"/api/webhooks/{webhook_id}/deliveries", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_registering_checks_the_input_and_shows_a_generated_secret_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            for body, field in [
                ({"events": ["call.ended"]}, "url"),
                ({"url": "ftp://x.example/h", "events": ["call.ended"]}, "url"),
                ({"url": "https://user:pw@x.example/h", "events": ["call.ended"]}, "url"),
                ({"url": "https://x.example/h", "events": []}, "events"),
                ({"url": "https://x.example/h", "events": ["call.exploded"]}, "events"),
                ({"url": "https://x.example/h", "events": ["call.ended"], "secret": "hunter2"}, "secret"),
                ({"url": "https://x.example/h", "events": ["call.ended"], "colour": "red"}, "colour"),
            ]:
                refused = await http.post("/api/webhooks", json=body)
                assert refused.status_code == 400 and refused.json()["field"] == field, (body, refused.text)
                if field == "events" and body["events"]:
                    assert "'call.exploded' is not an event kind; known: call.started" in refused.json()["error"]

            made = await register(http, "https://ops.example/hooks", ["call.ended", "tool.called"])
            secret = made["secret"]
            assert secret.startswith("whsec_") and made["id"].startswith("wh_")
            given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="  # 26 bytes
            own = await register(http, "https://ops.example/other", ["call.started"], secret=given)
            assert "secret" not in own

            listed = (await http.get("/api/webhooks")).json()
            assert [(w["id"], w["url"], w["events"]) for w in listed] == [
                (made["id"], "https://ops.example/hooks", ["call.ended", "tool.called"]),
                (own["id"], "https://ops.example/other", ["call.started"]),
            ]
            assert secret not in str(listed) and given not in str(listed)

            assert (await http.delete(f"/api/webhooks/{own['id']}")).status_code == 200
            assert (await http.delete(f"/api/webhooks/{own['id']}")).status_code == 404
            assert [w["id"] for w in (await http.get("/api/webhooks")).json()] == [made["id"]]
            await bridge.server.writer.flush()
            stored = [r.event for r in bridge.server.store.read_call(WEBHOOKS_STREAM)]
            logged = (await http.get(f"/api/calls/{WEBHOOKS_STREAM}/events")).text  # the log as the API shows it
            assert secret not in logged and given not in logged and '"secret":"[hidden]"' in logged
        assert [getattr(e, "secret", None) for e in stored[:2]] == [secret, "[erased]"]  # shredded on removal
    assert files_holding(tmp_path, (secret, given)) == {}
    assert secret not in caplog.text and given not in caplog.text


async def test_a_call_is_delivered_once_per_event_signed_and_in_order(tmp_path: Path) -> None:
    async with (
        webhook_endpoint() as endpoint,
        running_bridge(tmp_path, script=SCRIPT, registry=order_registry()) as bridge,
    ):
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            hook = await register(http, endpoint.url)
            call_id = await place_secret_call(bridge)
            await endpoint.wait_for(lambda e: len(e.of_type("call.ended")) == 1)
            await (await _sender(bridge, hook["id"])).settled.wait_for(3)  # every answer recorded
            log = await deliveries(http, hook["id"])

    messages = endpoint.verified(hook["secret"])  # the reference library checks every signature
    assert [m["type"] for m in messages] == ["call.started", "tool.called", "call.ended"]
    assert all(count == 1 for count in endpoint.counts().values())
    started, tool, ended = (m["data"] for m in messages)
    assert started["call_id"] == call_id and started["from"] == CALLER_NUMBER
    assert tool["name"] == "lookup_order" and ORDER in tool["arguments"] and tool["ok"] is True
    assert "shipped-by-carrier-owl" in tool["output"]
    assert ended["end_reason"] == "caller_hangup" and ended["duration_seconds"] > 0 and ended["status"] == "completed"
    said = [item["text"] for item in ended["transcript"] if item["type"] == "message"]
    assert any(PHRASE in (text or "") for text in said)
    assert ended["metrics"]["tool_calls"] == 1 and "cost_usd" in ended["metrics"]
    assert messages[0]["timestamp"].endswith("Z")
    first = endpoint.received[0].headers
    assert first["webhook-id"] == f"msg_{log[-1]['source']}_call.started"
    assert [(d["kind"], d["state"], d["attempt_count"]) for d in log] == [
        ("call.ended", "delivered", 1),
        ("tool.called", "delivered", 1),
        ("call.started", "delivered", 1),
    ]
    attempt = log[0]["attempts"][0]
    assert attempt["status"] == 200 and attempt["ok"] is True and attempt["latency_ms"] >= 0


async def test_a_failing_endpoint_is_retried_until_it_answers_2xx_and_redirects_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS", "0.05")
    huge = b"x" * (1024 * 1024)  # an answer body is ignored, however large
    async with webhook_endpoint(statuses=[500, 302], answer_body=huge) as endpoint, running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            hook = await register(http, endpoint.url, ["call.started"])
            record_calls(bridge, CallLog("CAretried").start())
            await endpoint.wait_for(lambda e: len(e.received) == 3)
            await (await _sender(bridge, hook["id"])).settled.wait_for(1)
            await bridge.server.writer.flush()
            (delivery,) = await deliveries(http, hook["id"])
    assert len(set(endpoint.counts())) == 1  # three attempts, one webhook-id
    assert [r.message["data"]["call_id"] for r in endpoint.received] == ["CAretried"] * 3
    assert delivery["state"] == "delivered" and delivery["attempt_count"] == 3
    assert [(a["status"], a["ok"], a["error"]) for a in delivery["attempts"]] == [
        (500, False, "HTTP 500"),
        (302, False, "HTTP 302 redirect to http://169.254.169.254/latest (redirects are not followed)"),
        (200, True, ""),
    ]
    endpoint.verified(hook["secret"])


async def test_after_the_retry_window_a_message_is_dead_lettered_and_can_be_redelivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS", "0.05")
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_RETRY_WINDOW_SECONDS", "0.3")
    async with webhook_endpoint(status=500) as endpoint, running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            hook = await register(http, endpoint.url, ["call.started"])
            record_calls(bridge, CallLog("CAdead").start(), CallLog("CAnext", start_at=1_767_225_700.0).start())
            sender = await _sender(bridge, hook["id"])
            await sender.settled.wait_for(2)  # both given up on
            await bridge.server.writer.flush()
            dead = await deliveries(http, hook["id"], state="dead_lettered")
            assert sorted(d["call_id"] for d in dead) == ["CAdead", "CAnext"]
            tried = len(endpoint.received)

            endpoint.status = 200
            target = next(d for d in dead if d["call_id"] == "CAdead")
            queued = await http.post(f"/api/webhooks/{hook['id']}/deliveries/{target['delivery_id']}/redeliver")
            assert queued.status_code == 202, queued.text
            await endpoint.wait_for(lambda e: len(e.received) == tried + 1)
            await sender.settled.wait_for(3)
            await bridge.server.writer.flush()
            again = await deliveries(http, hook["id"], state="delivered")
            unknown = await http.post(f"/api/webhooks/{hook['id']}/deliveries/9999-call.started/redeliver")
    assert unknown.status_code == 404
    assert endpoint.received[-1].webhook_id == target["message_id"]  # the same message, once more
    assert [(d["delivery_id"], d["redelivery_of"]) for d in again] == [
        (queued.json()["delivery_id"], target["delivery_id"])
    ]
    assert all(a["status"] == 500 for d in dead for a in d["attempts"])


async def test_a_calls_next_message_waits_for_the_previous_one_while_other_calls_go_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLBRIDGE_WEBHOOK_FIRST_RETRY_SECONDS", "0.05")
    slow_ok = trio.Event()

    def answer(request: Received) -> int | None:
        message = request.message
        stuck = message["data"]["call_id"] == "CAslow" and message["type"] == "call.started"
        return 500 if stuck and not slow_ok.is_set() else None

    async with webhook_endpoint(answer_for=answer) as endpoint, running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            await register(http, endpoint.url, ["call.started", "call.ended"])
            record_calls(
                bridge, CallLog("CAslow").start().end(), CallLog("CAfast", start_at=1_767_225_700.0).start().end()
            )
            await endpoint.wait_for(
                lambda e: len([r for r in e.received if r.message["data"]["call_id"] == "CAfast"]) == 2
            )
            await endpoint.wait_for(lambda e: len(e.received) >= 4)  # CAslow's start failed at least twice
            slow_ok.set()
            await endpoint.wait_for(lambda e: len(e.of_type("call.ended")) == 2)

    order = [(r.message["data"]["call_id"], r.message["type"]) for r in endpoint.received]
    slow = [kind for call, kind in order if call == "CAslow"]
    assert slow[-1] == "call.ended" and slow.count("call.ended") == 1  # sent only after its start got through
    assert all(kind == "call.started" for kind in slow[:-1]) and len(slow) >= 3
    fast = [i for i, (call, _) in enumerate(order) if call == "CAfast"]
    first_slow_success = len(order) - 2  # the retried start that was answered 200, then its end
    assert max(fast) < first_slow_success  # the other call went ahead meanwhile


async def _sender(bridge: Bridge, webhook_id: str) -> EndpointSender:
    """This engine's sender of ``webhook_id`` (once it runs)."""
    with trio.fail_after(30):  # a guard against a hang
        return await bridge.server.webhooks.sender(webhook_id)


async def test_transfers_voicemails_and_failures_are_reported_as_their_kinds(tmp_path: Path) -> None:
    at = 1_767_225_600.0
    events = [
        CallStarted(call_id="CAkinds", at=at, stream_sid="MZkinds", from_number="+15550001111"),
        ModelConnectionFailed(call_id="CAkinds", at=at + 1, attempt=1, error="HTTP 503", retry_in_s=0.5),
        ModelConnectionFailed(call_id="CAkinds", at=at + 2, attempt=3, error="HTTP 503", retry_in_s=None),
        TaskCrashed(call_id="CAkinds", at=at + 3, task="tools", error="KeyError: 'x'", action="restarted"),
        TransferDialed(call_id="CAkinds", at=at + 4, label="sales", to="+15550002222", method="rest", twiml="<Dial/>"),
        CallEnded(call_id="CAkinds", at=at + 5, reason="voicemail_left"),
    ]
    async with webhook_endpoint() as endpoint, running_bridge(tmp_path) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            kinds = ["call.transferred", "voicemail.left", "agent.failed", "call.ended"]
            await register(http, endpoint.url, kinds)
            for event in events:
                bridge.server.writer.record(event)
            await endpoint.wait_for(lambda e: len(e.received) == 5)
    got = [(r.message["type"], r.message["data"]) for r in endpoint.received]
    assert [kind for kind, _ in got] == [
        "agent.failed",
        "agent.failed",
        "call.transferred",
        "call.ended",
        "voicemail.left",
    ]
    assert got[0][1] == {"call_id": "CAkinds", "reason": "model_unavailable", "error": "HTTP 503", "attempts": 3}
    assert got[1][1]["reason"] == "task_crashed" and got[1][1]["task"] == "tools"
    assert got[2][1] == {
        "call_id": "CAkinds",
        "label": "sales",
        "to": "+15550002222",
        "method": "rest",
        "ok": True,
        "error": "",
    }
    assert got[3][1]["end_reason"] == got[4][1]["end_reason"] == "voicemail_left"
    assert got[4][1]["from"] == "+15550001111" and got[4][1]["duration_seconds"] == 5.0
