"""The console's API against a real running server (real sockets, real store) whose Twilio REST
API is the local fake: the setup checklist, the webhook button, the session config, test calls and
live calls. Twilio's auth token is configured, so the test call is signed like a real one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import pytest
import trio
from bridge_harness import Bridge, of_type, running_bridge

from callbridge.adapters.openai.session import DEFAULT_SESSION_CONFIG, VOICES
from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.engine.events import (
    SETTINGS_STREAM,
    CallEnded,
    CallSessionConfigChanged,
    CallStarted,
    CallStatusReported,
    DefaultSessionConfigSaved,
)
from callbridge.web.console_test_call import TEST_CALL_FROM, local_base_url

API_TOKEN = "test-token"  # what running_bridge configures
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
ACCOUNT = "AC" + "ab" * 16
TWILIO_TOKEN = "twilio-secret-token-0123456789"
OPENAI_KEY = "sk-openai-secret-key-0123456789"
SECRETS = (API_TOKEN, TWILIO_TOKEN, OPENAI_KEY)
SUPPORT = "PN" + "1" * 32
SALES = "PN" + "2" * 32
CHECK_IDS = ["twilio_credentials", "phone_numbers", "public_url", "webhook", "openai"]
SCRIPT = Script(turns=[Turn(transcript="Hi there", reply="Hello!"), Turn(transcript="Bye", reply="Goodbye!")])


@dataclass
class Console:
    bridge: Bridge
    twilio: FakeTwilioRest
    http: httpx2.AsyncClient
    anonymous: httpx2.AsyncClient
    seen: list[str] = field(default_factory=list)
    """Every response (headers and body) the token-holding client received."""

    @property
    def public_url(self) -> str:
        return self.bridge.server.settings.public_url

    async def get(self, path: str, status: int = 200) -> Any:
        response = await self.http.get(path)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()

    async def post(self, path: str, body: Any, status: int = 200) -> Any:
        response = await self.http.post(path, json=body)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/json")
        return response.json()


def twilio_account() -> FakeTwilioRest:
    account = FakeTwilioRest(ACCOUNT, TWILIO_TOKEN)
    account.add_number("+15550001111", friendly_name="Support", voice_url="https://old.example/voice", sid=SUPPORT)
    account.add_number("+15550002222", friendly_name="Sales", sid=SALES)
    return account


async def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (bound, then released)."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port: int = listeners[0].socket.getsockname()[1]
    for listener in listeners:
        await listener.aclose()
    return port


@asynccontextmanager
async def open_console(
    tmp_path: Path, env: Mapping[str, str | None] | None = None, twilio: FakeTwilioRest | None = None
) -> AsyncIterator[Console]:
    """A running server whose TWILIO_* point at a fake account (``env`` overrides; None removes)."""
    async with trio.open_nursery() as nursery:
        fake: FakeTwilioRest = await nursery.start(
            partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=twilio or twilio_account())
        )
        settings: dict[str, str | None] = {
            "TWILIO_ACCOUNT_SID": ACCOUNT,
            "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "TWILIO_API_BASE_URL": fake.url,
            "OPENAI_API_KEY": OPENAI_KEY,  # set, though the simulated model answers
            **(env or {}),
        }
        seen: list[str] = []

        async def remember(response: httpx2.Response) -> None:
            await response.aread()
            headers = "\n".join(f"{key}: {value}" for key, value in response.headers.items())
            seen.append(f"{headers}\n{response.text}")

        bridge_env = {key: value for key, value in settings.items() if value is not None}
        async with running_bridge(tmp_path, script=SCRIPT, env=bridge_env) as bridge:
            async with (
                httpx2.AsyncClient(
                    base_url=bridge.base_url, headers=BEARER, timeout=30, event_hooks={"response": [remember]}
                ) as http,
                httpx2.AsyncClient(base_url=bridge.base_url, timeout=30) as anonymous,
            ):
                yield Console(bridge, fake, http, anonymous, seen)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with open_console(tmp_path) as opened:
        yield opened


async def wait_until(bridge: Bridge, condition: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    """Wait, without polling on a timer, until ``condition()`` holds: it is re-checked each time
    the event writer appends to the store (calls record events continuously)."""
    writer = bridge.server.writer
    with trio.fail_after(timeout_s):
        while True:
            head = await writer.flush()
            if await condition():
                return
            await writer.wait_appended(head)


async def wait_live(bridge: Bridge, call_id: str) -> None:
    async def live() -> bool:
        return bridge.server.live.get(call_id) is not None

    await wait_until(bridge, live)


async def wait_recorded(bridge: Bridge, call_id: str, kind: type[Any]) -> list[Any]:
    found: list[Any] = []

    async def recorded() -> bool:
        found[:] = of_type(await bridge.events(call_id), kind)
        return bool(found)

    await wait_until(bridge, recorded)
    return found


def checks_by_id(setup: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert [check["id"] for check in setup["checks"]] == CHECK_IDS
    for check in setup["checks"]:
        assert set(check) == {"id", "label", "ok", "detail"}
        assert isinstance(check["ok"], bool) and check["label"] and check["detail"]
    return {check["id"]: check for check in setup["checks"]}


# --- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/setup"),
        ("POST", "/api/setup/webhook"),
        ("GET", "/api/session"),
        ("POST", "/api/session"),
        ("POST", "/api/test-call"),
        ("GET", "/api/calls/live"),
    ],
)
async def test_every_console_route_refuses_a_request_without_the_token(
    console: Console, method: str, path: str
) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token"}):
        response = await console.anonymous.request(method, path, headers=headers, json={"sid": SALES})
        assert response.status_code == 401, (method, path, headers)
        assert "Authorization: Bearer TOKEN" in response.json()["error"]
    assert console.twilio.updates == []
    assert len(console.bridge.server.live) == 0


# --- the setup checklist -----------------------------------------------------------------------


async def test_setup_lists_the_numbers_and_checks_each_step(console: Console) -> None:
    setup = await console.get("/api/setup")

    twiml = f"{console.public_url}/twiml"
    assert (setup["public_url"], setup["twiml_url"], setup["model"]) == (console.public_url, twiml, "sim")
    assert setup["numbers"] == [
        {
            "sid": SUPPORT,
            "phone_number": "+15550001111",
            "friendly_name": "Support",
            "voice_url": "https://old.example/voice",
            "webhook_ok": False,
        },
        {
            "sid": SALES,
            "phone_number": "+15550002222",
            "friendly_name": "Sales",
            "voice_url": "",
            "webhook_ok": False,
        },
    ]
    checks = checks_by_id(setup)
    assert checks["twilio_credentials"]["ok"] is True
    assert checks["phone_numbers"]["ok"] is True and "2 numbers" in checks["phone_numbers"]["detail"]
    assert checks["public_url"]["ok"] is True  # the server answered its own /healthz through PUBLIC_URL
    assert "local address" in checks["public_url"]["detail"]  # …but Twilio could not reach 127.0.0.1
    assert "127.0.0.1 is a local or private address" in setup["public_url_problem"]
    assert checks["webhook"]["ok"] is False and twiml in checks["webhook"]["detail"]
    assert checks["openai"]["ok"] is True and "simulated" in checks["openai"]["detail"]


async def test_setting_the_webhook_points_the_number_at_us_and_turns_the_check_ok(console: Console) -> None:
    sales = SALES

    refused = await console.post("/api/setup/webhook", {"sid": sales}, status=409)
    assert refused["code"] == "unreachable_url" and "127.0.0.1 is a local or private address" in refused["error"]
    assert "force: true" in refused["error"] and console.twilio.updates == []

    updated = await console.post("/api/setup/webhook", {"sid": sales, "force": True})

    twiml = f"{console.public_url}/twiml"
    assert updated == {
        "sid": sales,
        "phone_number": "+15550002222",
        "friendly_name": "Sales",
        "voice_url": twiml,
        "webhook_ok": True,
        "previous_voice_url": "",
    }
    assert console.twilio.updates == [
        (
            sales,
            {
                "VoiceUrl": twiml,
                "VoiceMethod": "POST",
                "StatusCallback": f"{console.public_url}/twilio/status",
                "StatusCallbackMethod": "POST",
            },
        )
    ]
    setup = await console.get("/api/setup")
    assert checks_by_id(setup)["webhook"]["ok"] is True
    assert "+15550002222" in checks_by_id(setup)["webhook"]["detail"]
    assert [number["webhook_ok"] for number in setup["numbers"]] == [False, True]


async def test_an_existing_webhook_is_replaced_only_when_asked_to(console: Console) -> None:
    kept = await console.post("/api/setup/webhook", {"sid": SUPPORT, "force": True}, status=409)
    assert kept["code"] == "webhook_in_use" and kept["current_voice_url"] == "https://old.example/voice"
    assert "https://old.example/voice" in kept["error"] and "replace: true" in kept["error"]
    assert console.twilio.updates == []
    replaced = await console.post("/api/setup/webhook", {"sid": SUPPORT, "force": True, "replace": True})
    assert replaced["previous_voice_url"] == "https://old.example/voice"
    assert replaced["voice_url"] == f"{console.public_url}/twiml"
    again = await console.post("/api/setup/webhook", {"sid": SUPPORT, "force": True})  # already ours: no question
    assert again["webhook_ok"] is True


async def test_a_public_https_url_needs_no_force(tmp_path: Path) -> None:
    async with open_console(tmp_path, {"PUBLIC_URL": "https://bridge.example.com"}) as console:
        updated = await console.post("/api/setup/webhook", {"sid": SALES})  # talks to the fake Twilio only
    assert updated["voice_url"] == "https://bridge.example.com/twiml"


@pytest.mark.parametrize(
    ("public_url", "problem"),
    [
        ("http://localhost:8081", "localhost is a local or private address"),
        ("http://10.1.2.3:8081", "10.1.2.3 is a local or private address"),
        ("http://192.168.1.20", "192.168.1.20 is a local or private address"),
        ("http://bridge.example.com", "plain http"),
    ],
)
async def test_a_url_twilio_cannot_reach_is_refused_unless_forced(
    tmp_path: Path, public_url: str, problem: str
) -> None:
    async with open_console(tmp_path, {"PUBLIC_URL": public_url}) as console:
        # (no GET /api/setup here: its probe would connect to PUBLIC_URL, and these are not ours)
        refused = await console.post("/api/setup/webhook", {"sid": SALES}, status=409)
        assert console.twilio.updates == []
    assert problem in refused["error"]


async def test_setting_the_webhook_of_an_unknown_number_is_404(console: Console) -> None:
    error = await console.post("/api/setup/webhook", {"sid": "PN" + "9" * 32, "force": True}, status=404)
    assert "not found" in error["error"]
    assert (await console.post("/api/setup/webhook", {}, status=400))["error"].startswith("'sid'")
    assert (await console.post("/api/setup/webhook", ["PN1"], status=400))["error"]
    assert console.twilio.updates == []


async def test_bad_twilio_credentials_fail_the_checks_with_a_reason_not_the_request(tmp_path: Path) -> None:
    wrong = "wrong-twilio-token-0123456789"
    async with open_console(tmp_path, {"TWILIO_AUTH_TOKEN": wrong}) as console:
        setup = await console.get("/api/setup")
        refused = await console.post("/api/setup/webhook", {"sid": SALES, "force": True}, status=502)
        seen = console.seen
        assert console.twilio.refused_auth == 2

    checks = checks_by_id(setup)
    assert checks["twilio_credentials"]["ok"] is False
    assert "refused" in checks["twilio_credentials"]["detail"] and "20003" in checks["twilio_credentials"]["detail"]
    assert checks["phone_numbers"]["ok"] is False and checks["webhook"]["ok"] is False
    assert setup["numbers"] == []
    assert "20003" in refused["error"]
    assert not [text for text in seen if wrong in text or TWILIO_TOKEN in text]


async def test_unreachable_twilio_api_and_public_url_fail_their_checks(tmp_path: Path) -> None:
    twilio_port, public_port = await closed_port(), await closed_port()
    env = {"TWILIO_API_BASE_URL": f"http://127.0.0.1:{twilio_port}", "PUBLIC_URL": f"http://127.0.0.1:{public_port}"}
    async with open_console(tmp_path, env) as console:
        setup = await console.get("/api/setup")
        webhook = await console.post("/api/setup/webhook", {"sid": SALES, "force": True}, status=502)

    checks = checks_by_id(setup)
    assert checks["twilio_credentials"]["ok"] is True  # present; nobody refused them
    assert checks["phone_numbers"]["ok"] is False and f"127.0.0.1:{twilio_port}" in checks["phone_numbers"]["detail"]
    assert checks["public_url"]["ok"] is False and f"127.0.0.1:{public_port}/healthz" in checks["public_url"]["detail"]
    assert checks["webhook"]["ok"] is False
    assert "cannot connect" in webhook["error"]


async def test_without_twilio_credentials_the_checklist_says_what_to_set(tmp_path: Path) -> None:
    async with open_console(tmp_path, {"TWILIO_ACCOUNT_SID": None, "TWILIO_AUTH_TOKEN": None}) as console:
        setup = await console.get("/api/setup")
        webhook = await console.post("/api/setup/webhook", {"sid": SALES}, status=409)
        assert console.twilio.requests == []

    checks = checks_by_id(setup)
    assert checks["twilio_credentials"]["ok"] is False
    assert "TWILIO_ACCOUNT_SID" in checks["twilio_credentials"]["detail"]
    assert "TWILIO_AUTH_TOKEN" in checks["twilio_credentials"]["detail"]
    assert checks["phone_numbers"]["ok"] is False and setup["numbers"] == []
    assert "TWILIO_ACCOUNT_SID" in webhook["error"]


# --- the session config ------------------------------------------------------------------------


async def test_session_shows_the_default_the_voices_and_the_backend_tools(console: Console) -> None:
    answer = await console.get("/api/session")
    assert set(answer) == {"session", "call_id", "voices", "backend_tools", "voice_locked"}
    assert (answer["call_id"], answer["voice_locked"]) == (None, False)
    assert answer["session"] == DEFAULT_SESSION_CONFIG
    assert answer["voices"] == list(VOICES) and {"marin", "cedar"} <= set(answer["voices"])
    assert answer["backend_tools"] == (await console.http.get("/tools")).json()
    assert answer["backend_tools"] and answer["backend_tools"][0]["type"] == "function"


async def test_a_saved_default_session_applies_to_new_calls_and_survives_a_restart(tmp_path: Path) -> None:
    change = {"instructions": "Answer like a pirate.", "voice": "cedar", "turn_detection": {"type": "semantic_vad"}}
    async with open_console(tmp_path) as console:
        saved = await console.post("/api/session", {"session": change})
        assert saved["call_id"] is None
        assert saved["session"] == {**DEFAULT_SESSION_CONFIG, **change}
        assert (await console.get("/api/session"))["session"] == saved["session"]
        stored = of_type(await console.bridge.events(SETTINGS_STREAM), DefaultSessionConfigSaved)
        assert [event.session_config for event in stored] == [saved["session"]]

        call = await place_call(
            console.bridge.base_url,
            script=[Speak(600), HangUp()],
            auth_token=TWILIO_TOKEN,
            public_url=console.public_url,
        )
        started = of_type(await console.bridge.events(call.call_sid), CallStarted)
        assert started[0].session_config["instructions"] == "Answer like a pirate."

    async with open_console(tmp_path) as restarted:
        assert (await restarted.get("/api/session"))["session"] == saved["session"]


async def test_an_invalid_session_is_refused_with_the_reason_and_changes_nothing(console: Console) -> None:
    for session, reason in (
        ({"voice": ""}, "voice"),
        ({"turn_detection": {"type": "loud_vad"}}, "turn_detection"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ("not an object", "'session'"),
        ({"voice": "fable"}, "'voice'"),  # not a Realtime GA voice
        ({"voice": "x" * 100_000}, "'voice'"),
        ({"tools": [{"type": "function", "name": "n" * 1_000_000}]}, "'tools[0].name'"),
        ({"tools": [{"type": "function", "name": "<img src=x onerror=alert(1)>"}]}, "'tools[0].name'"),
        ({"tools": [{"type": "function", "name": "a"}, {"type": "function", "name": "a"}]}, "'tools[1].name'"),
        ({"tools": [{"type": "function", "name": "a", "code": "x"}]}, "unknown key 'code'"),
        ({"turn_detection": {"type": "server_vad", "eagerness": "low"}}, "'turn_detection'"),
        ({"max_output_tokens": True}, "'max_output_tokens'"),
    ):
        error = await console.post("/api/session", {"session": session}, status=400)
        assert reason in error["error"], (session, error)
        assert len(error["error"]) < 600  # a huge refused value does not come back whole
    assert (await console.post("/api/session", "nope", status=400))["error"]
    assert (await console.get("/api/session"))["session"] == DEFAULT_SESSION_CONFIG
    assert of_type(await console.bridge.events(SETTINGS_STREAM), DefaultSessionConfigSaved) == []


async def test_a_session_update_reaches_a_live_call_only(console: Console) -> None:
    bridge = console.bridge
    done = trio.Event()
    call_sids: list[str] = []

    async def caller() -> None:
        report = await place_call(
            bridge.base_url,
            script=[Speak(600), WaitForAssistant(timeout_s=30), Speak(30_000), HangUp()],
            auth_token=TWILIO_TOKEN,
            public_url=console.public_url,
            call_sid="CA" + "7" * 32,
        )
        call_sids.append(report.call_sid)
        done.set()

    call_id = "CA" + "7" * 32
    async with trio.open_nursery() as nursery:
        nursery.start_soon(caller)
        await wait_live(bridge, call_id)

        answer = await console.post("/api/session", {"session": {"instructions": "Be brief."}, "call_id": call_id})
        assert answer["applied"] is True and "confirmed" in answer["message"]
        assert (answer["session"], answer["call_id"]) == ({"instructions": "Be brief."}, call_id)
        changed = await wait_recorded(bridge, call_id, CallSessionConfigChanged)
        assert changed[0].session_config["instructions"] == "Be brief."
        with trio.fail_after(10):  # the call's model was told (the first update is the call's own)
            update = await bridge.fake.sessions[-1].wait_for_client("session.update", count=2)
        assert json.loads(update.raw)["session"]["instructions"] == "Be brief."

        missing = await console.post("/api/session", {"session": {"voice": "ash"}, "call_id": "CAnope"}, status=404)
        assert "CAnope" in missing["error"]
        invalid = await console.post("/api/session", {"session": {"speed": 9}, "call_id": call_id}, status=400)
        assert "speed" in invalid["error"]
        bridge.server.live.get(call_id).hang_up("test_over")  # type: ignore[union-attr]
        await done.wait()

    assert call_sids == [call_id]
    assert len(of_type(await bridge.events(call_id), CallSessionConfigChanged)) == 1
    assert (await console.get("/api/session"))["session"] == DEFAULT_SESSION_CONFIG  # the default did not move


# --- test calls and live calls -----------------------------------------------------------------


async def test_a_test_call_runs_through_the_whole_path_and_is_recorded(console: Console) -> None:
    bridge = console.bridge
    assert await console.get("/api/calls/live") == []

    started = await console.post("/api/test-call", {"seconds": 15}, status=202)

    call_sid = started["call_sid"]
    assert set(started) == {"call_sid"} and call_sid.startswith("CA") and len(call_sid) == 34
    await wait_live(bridge, call_sid)
    live = await console.get("/api/calls/live")
    assert [call["call_id"] for call in live] == [call_sid]
    assert set(live[0]) == {"call_id", "stream_sid", "from", "to", "started_at"}
    assert live[0]["from"] == TEST_CALL_FROM and live[0]["stream_sid"].startswith("MZ")
    assert live[0]["started_at"].endswith("Z")

    await bridge.wait_call_ended(call_sid)
    status = await wait_recorded(bridge, call_sid, CallStatusReported)  # Twilio's completed callback
    events = await bridge.events(call_sid)
    assert of_type(events, CallStarted)[0].from_number == TEST_CALL_FROM
    assert [event.reason for event in of_type(events, CallEnded)] == ["caller_hangup"]
    assert status[0].status == "completed"
    conversation = await console.get(f"/api/conversations/{call_sid}")
    texts = [item["text"] for item in conversation["items"]]
    assert "Hello!" in texts and "Goodbye!" in texts  # the assistant answered both turns
    assert await console.get("/api/calls/live") == []


@pytest.mark.parametrize("seconds", [0, 121, "20", True, -5])
async def test_a_test_call_of_a_wrong_length_is_refused(console: Console, seconds: object) -> None:
    error = await console.post("/api/test-call", {"seconds": seconds}, status=400)
    assert "'seconds'" in error["error"]
    assert len(console.bridge.server.live) == 0


# --- secrets -----------------------------------------------------------------------------------


async def test_no_response_carries_a_secret(console: Console) -> None:
    await console.get("/api/setup")
    await console.post("/api/setup/webhook", {"sid": SUPPORT, "force": True, "replace": True})
    await console.post("/api/setup/webhook", {"sid": "PN" + "9" * 32, "force": True}, status=404)
    await console.get("/api/setup")
    await console.get("/api/session")
    await console.post("/api/session", {"session": {"voice": "marin"}})
    await console.post("/api/session", {"session": {"voice": 7}}, status=400)
    await console.post("/api/session", {"session": {}, "call_id": "CAnope"}, status=404)
    await console.post("/api/test-call", {"seconds": 500}, status=400)
    await console.get("/api/calls/live")

    assert len(console.seen) == 10
    leaks = [(secret, text) for text in console.seen for secret in SECRETS if secret in text]
    assert leaks == []


def test_the_test_caller_reaches_the_server_on_loopback_for_wildcard_binds() -> None:
    assert local_base_url("0.0.0.0", 8081) == "http://127.0.0.1:8081"
    assert local_base_url("localhost", 8081) == "http://127.0.0.1:8081"
    assert local_base_url("::", 8081) == "http://[::1]:8081"
    assert local_base_url("::1", 8081) == "http://[::1]:8081"
    assert local_base_url("10.0.0.5", 8081) == "http://10.0.0.5:8081"
    assert local_base_url("bridge.internal", 8081) == "http://bridge.internal:8081"
