"""The simulated caller over real sockets: ``place_call`` against a tiny HTTP + WebSocket server
that checks the ``X-Twilio-Signature`` headers Twilio would send (a few hundred ms in all)."""

from __future__ import annotations

import gc
import urllib.parse
from functools import partial
from typing import Any

import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from callbridge.adapters.sim.caller import Dtmf, HangUp, Silence, Speak, place_call, simulate_calls
from callbridge.adapters.sim.caller_http import connect_url
from callbridge.adapters.twilio import codec
from callbridge.adapters.twilio.signature import is_valid_signature
from callbridge.adapters.twilio.twiml import connect_stream_twiml


def test_connect_url_reaches_the_server_where_the_simulator_can() -> None:
    # Behind a tunnel, the TwiML names the public host; the simulator connects locally.
    assert (
        connect_url("wss://abc.ngrok-free.app/call", "http://127.0.0.1:8081", "https://abc.ngrok-free.app")
        == "ws://127.0.0.1:8081/call"
    )
    assert connect_url("ws://127.0.0.1:9/call", "http://127.0.0.1:8081", None) == "ws://127.0.0.1:9/call"
    assert connect_url("wss://other.example/call", "http://h:1", "https://abc.example") == "wss://other.example/call"


TOKEN = "test-auth-token"


class TwilioFacingPeer:
    """A minimal stand-in for the callbridge server: ``POST /twiml`` over HTTP (hypercorn, bare
    ASGI) and ``/call`` over trio-websocket, both checking ``X-Twilio-Signature`` with TOKEN."""

    def __init__(self) -> None:
        self.base_url = ""
        self.stream_url = ""
        self.webhook_forms: list[dict[str, str]] = []
        self.ws_signed_url = ""  # what the upgrade must be signed over (the TwiML stream URL)
        self.signatures_ok: list[tuple[str, bool]] = []
        self.status_forms: list[dict[str, str]] = []
        self.frames: list[Any] = []
        self.closed = trio.Event()

    async def asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        form = dict(urllib.parse.parse_qsl(body.decode()))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        ok = is_valid_signature(TOKEN, f"{self.base_url}{scope['path']}", form, headers.get("x-twilio-signature"))
        self.signatures_ok.append((scope["path"], ok))
        if not ok:
            await send({"type": "http.response.start", "status": 403, "headers": []})
            await send({"type": "http.response.body", "body": b"bad signature"})
            return
        if scope["path"] == "/twilio/status":
            self.status_forms.append(form)
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        self.webhook_forms.append(form)
        twiml = connect_stream_twiml(self.stream_url, {k: form[k] for k in ("From", "To", "CallSid")})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/xml")]})
        await send({"type": "http.response.body", "body": twiml.encode()})

    async def ws_handler(self, request: WebSocketRequest) -> None:
        headers = {k.decode(): v.decode() for k, v in request.headers}
        ok = is_valid_signature(TOKEN, self.ws_signed_url, {}, headers.get("x-twilio-signature"))
        self.signatures_ok.append((request.path, ok))
        if not ok:
            await request.reject(403)
            return
        ws = await request.accept()
        try:
            while True:
                self.frames.append(codec.decode_inbound(await ws.get_message()))
        except ConnectionClosed:
            self.closed.set()


@pytest.fixture
async def peer(nursery: trio.Nursery) -> TwilioFacingPeer:
    peer = TwilioFacingPeer()
    ws_server = await nursery.start(serve_websocket, peer.ws_handler, "127.0.0.1", 0, None)
    peer.stream_url = peer.ws_signed_url = f"ws://127.0.0.1:{ws_server.port}/call"
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds = await nursery.start(partial(serve, peer.asgi, config))  # type: ignore[arg-type]
    peer.base_url = binds[0]
    return peer


async def test_place_call_over_real_sockets_is_signed_like_twilio(peer: TwilioFacingPeer) -> None:
    report = await place_call(
        peer.base_url,
        script=[Speak(60), Dtmf("1"), Silence(20), HangUp()],
        auth_token=TOKEN,
        from_number="+15551230000",
        to_number="+15559870000",
    )
    await peer.closed.wait()
    assert report.errors == [] and report.ended_by == "caller"
    assert peer.signatures_ok == [("/twiml", True), ("/call", True)]
    form = peer.webhook_forms[0]
    assert form["CallSid"] == report.call_sid and len(report.call_sid) == 34 and report.call_sid.startswith("CA")
    assert {k: form[k] for k in ("From", "To", "CallStatus", "Direction", "ApiVersion")} == {
        "From": "+15551230000",
        "To": "+15559870000",
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    assert form["AccountSid"].startswith("AC")
    kinds = [type(m).__name__ for m in peer.frames]
    assert kinds[:2] == ["Connected", "Start"] and kinds[-1] == "Stop" and "Dtmf" in kinds
    start = peer.frames[1]
    assert start.stream_sid == report.stream_sid and start.stream_sid.startswith("MZ")
    assert start.start.custom_parameters == {"From": "+15551230000", "To": "+15559870000", "CallSid": report.call_sid}
    assert start.start.account_sid == form["AccountSid"]
    assert report.frames_sent == kinds.count("Media") >= 4


async def test_wrong_token_gets_403_and_no_stream(peer: TwilioFacingPeer) -> None:
    report = await place_call(peer.base_url, script=[HangUp()], auth_token="wrong")
    assert report.ended_by == "error"
    assert report.errors == ["voice webhook answered HTTP 403: 'bad signature'"]
    assert peer.signatures_ok == [("/twiml", False)]
    assert peer.frames == []


async def test_simulate_calls_runs_calls_concurrently(peer: TwilioFacingPeer) -> None:
    done: list[str] = []
    reports = await simulate_calls(peer.base_url, calls=3, seconds=0.1, auth_token=TOKEN, progress=done.append)
    assert len(reports) == 3
    assert [line.split()[1] for line in done] == ["1/3", "2/3", "3/3"]
    assert all("ended by caller after" in line for line in done)
    assert len({r.call_sid for r in reports}) == 3
    assert all(r.ended_by == "caller" and r.frames_sent >= 4 for r in reports)
    assert {r.from_number for r in reports} == {"+15550000000", "+15550000001", "+15550000002"}


# trio-websocket 0.12 leaves the client's TCP socket to the garbage collector when the upgrade is
# rejected (its reader task raises ConnectionRejected without closing the stream): collect it here
# so the ResourceWarning is attributed to this test, and ignore it.
@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
async def test_stream_upgrade_signed_over_another_url_is_rejected(peer: TwilioFacingPeer) -> None:
    peer.ws_signed_url = peer.stream_url.replace("/call", "/elsewhere")
    report = await place_call(peer.base_url, script=[HangUp()], auth_token=TOKEN)
    gc.collect()
    assert report.ended_by == "error"
    assert report.errors == ["stream upgrade rejected with HTTP 403"]
    assert peer.signatures_ok == [("/twiml", True), ("/call", False)]


async def test_status_callback_is_signed_and_reports_the_duration(peer: TwilioFacingPeer) -> None:
    report = await place_call(peer.base_url, script=[Silence(40), HangUp()], auth_token=TOKEN, status_callback=True)
    assert report.errors == []
    assert peer.signatures_ok[-1] == ("/twilio/status", True)
    (form,) = peer.status_forms
    assert form["CallSid"] == report.call_sid
    assert form["CallStatus"] == "completed" and form["CallDuration"] == "0"


async def test_unreachable_server_is_an_error_not_an_exception() -> None:
    with trio.socket.socket() as sock:
        await sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        report = await place_call(f"http://127.0.0.1:{port}", script=[HangUp()])
    assert report.ended_by == "error"
    assert report.errors[0].startswith("HTTP request failed: ConnectError")
