"""``WS /call`` before a call starts, over real sockets against a running server: who may open a
media stream, with what, and what the server says about the ones it refuses.

The test plays Twilio by hand (``Twilio`` below): it asks ``/twiml`` for the stream parameters with
a signed webhook, opens the signed upgrade and sends ``connected`` and ``start`` itself, so it can
do what an attacker does with a captured ``start`` — send it again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
import trio
from bridge_harness import Bridge, of_type, running_bridge
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_http import new_sid, request_twiml, voice_webhook_params
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant
from callbridge.adapters.sim.fake_openai_script import Script, Turn
from callbridge.adapters.twilio import codec, signature
from callbridge.engine.events import CallEnded, CallStarted, TwilioFrameRejected
from callbridge.web import media
from callbridge.web.call_admission import TOKEN_VALIDITY_S, call_token

AUTH_TOKEN = "twilio-secret-token"
SIGNED = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN}
SCRIPT = Script(turns=[Turn(transcript="Hi there", reply="Hello! How can I help you today?")])
WAIT_S = 20.0
"""Guard against a hang (not synchronisation)."""


@dataclass
class Twilio:
    """Twilio's side of the media stream, by hand."""

    bridge: Bridge

    async def parameters(self, call_sid: str, from_number: str = "+15550001111") -> dict[str, str]:
        """What ``/twiml`` puts in the ``<Stream>`` for a new inbound call (signed webhook)."""
        params = voice_webhook_params(
            call_sid=call_sid, account_sid="AC" + "0" * 32, from_number=from_number, to_number="+15550002222"
        )
        async with httpx2.AsyncClient() as http:
            _, parameters = await request_twiml(
                http,
                self.bridge.base_url,
                params,
                auth_token=AUTH_TOKEN,
                public_url=self.bridge.server.settings.public_url,
            )
        return parameters

    @asynccontextmanager
    async def stream(self) -> AsyncIterator[WebSocketConnection]:
        url = signature.stream_url(self.bridge.server.settings.public_url)
        sent = signature.compute_signature(AUTH_TOKEN, url, {}).encode()
        async with open_websocket_url(url, extra_headers=[(b"X-Twilio-Signature", sent)]) as ws:
            yield ws

    @staticmethod
    def start(call_sid: str, parameters: dict[str, str], stream_sid: str | None = None) -> str:
        sid = stream_sid or new_sid("MZ")
        info = codec.StartInfo(stream_sid=sid, call_sid=call_sid, custom_parameters=parameters)
        return codec.encode_inbound(codec.Start(sequence_number="1", stream_sid=sid, start=info))

    async def send_start(self, ws: WebSocketConnection, call_sid: str, parameters: dict[str, str]) -> None:
        await ws.send_message(codec.encode_inbound(codec.Connected()))
        await ws.send_message(self.start(call_sid, parameters))

    async def stop(self, ws: WebSocketConnection, call_sid: str) -> None:
        stop = codec.Stop(sequence_number="2", stream_sid="MZ", stop=codec.StopInfo(call_sid=call_sid))
        await ws.send_message(codec.encode_inbound(stop))


async def closed_by_server(ws: WebSocketConnection) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    with trio.fail_after(WAIT_S):
        try:
            while True:
                await ws.get_message()
        except ConnectionClosed as closed:
            reason = closed.reason
            return (reason.code, reason.reason or "") if reason else (None, "")


async def wait_live(bridge: Bridge, call_id: str) -> None:
    with trio.fail_after(WAIT_S):
        while bridge.server.live.get(call_id) is None:
            await bridge.server.writer.wait_appended(await bridge.server.writer.flush())


# --- one stream per CallSid, ever ---------------------------------------------------------------


async def test_a_replayed_start_for_a_live_call_is_refused_and_the_first_call_still_ends_cleanly(
    tmp_path: Path,
) -> None:
    async with running_bridge(tmp_path, script=SCRIPT, env=SIGNED) as bridge:
        twilio = Twilio(bridge)
        call_sid = new_sid("CA")
        parameters = await twilio.parameters(call_sid)
        async with twilio.stream() as first:
            await twilio.send_start(first, call_sid, parameters)
            await wait_live(bridge, call_sid)
            live_call = bridge.server.live.get(call_sid)
            async with twilio.stream() as replay:
                await twilio.send_start(replay, call_sid, parameters)
                code, reason = await closed_by_server(replay)
            assert bridge.server.live.get(call_sid) is live_call  # the first call is still the live one
            bridge.server.shutdown.set()
            await bridge.server.stopped.wait()
        events = [r.event for r in bridge.server.store.read_call(call_sid)]
    assert (code, "already live") == (1008, reason[len(f"call {call_sid} is ") :][: len("already live")])
    assert len(of_type(events, CallStarted)) == 1
    assert [e.reason for e in of_type(events, CallEnded)] == ["server_shutdown"]


async def test_a_replayed_start_of_an_ended_call_is_refused_even_by_a_restarted_server(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=SCRIPT, env=SIGNED) as bridge:
        twilio = Twilio(bridge)
        call_sid = new_sid("CA")
        parameters = await twilio.parameters(call_sid, from_number="+15550001111")
        async with twilio.stream() as first:
            await twilio.send_start(first, call_sid, parameters)
            await wait_live(bridge, call_sid)
            await twilio.stop(first, call_sid)
            await bridge.wait_call_ended(call_sid)
        for _ in range(2):  # right away (in memory) and again
            async with twilio.stream() as replay:
                await twilio.send_start(replay, call_sid, parameters)
                code, reason = await closed_by_server(replay)
            assert (code, "has already ended") == (1008, reason.split(" ", 2)[2][: len("has already ended")])
    async with running_bridge(tmp_path, script=SCRIPT, env=SIGNED) as restarted:  # only the store remembers
        twilio = Twilio(restarted)
        async with twilio.stream() as replay:
            await twilio.send_start(replay, call_sid, parameters)
            code, reason = await closed_by_server(replay)
        events = await restarted.events(call_sid)
    assert code == 1008 and "already started (the event log has it)" in reason
    assert len(of_type(events, CallStarted)) == 1 and of_type(events, CallStarted)[0].from_number == "+15550001111"
    assert len(of_type(events, CallEnded)) == 1


async def test_a_per_call_token_older_than_its_window_or_for_another_call_is_refused(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=SCRIPT, env=SIGNED) as bridge:
        twilio = Twilio(bridge)
        call_sid = new_sid("CA")
        stale = call_token(AUTH_TOKEN, call_sid, time.time() - TOKEN_VALIDITY_S - 5)
        other = (await twilio.parameters(new_sid("CA")))["callbridge_token"]
        closes = []
        for token in (stale, other, "", "123.abc"):
            async with twilio.stream() as ws:
                await twilio.send_start(ws, call_sid, {"From": "+1", "callbridge_token": token})
                closes.append(await closed_by_server(ws))
        events = await bridge.events(call_sid)
    assert [code for code, _ in closes] == [1008] * 4
    assert "per-call token expired" in closes[0][1]
    assert all("without a valid per-call token" in reason for _, reason in closes[1:])
    assert events == []


# --- identifiers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call_sid", "stream_sid"),
    [("CA1\r\nINFO forged log line", "MZ1"), ('CA1"; filename=x.exe', "MZ1"), ("CA1\x00", "MZ1"), ("CA1", "MZ\n1")],
)
async def test_a_start_with_an_invalid_call_or_stream_sid_is_refused_and_never_logged_raw(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, call_sid: str, stream_sid: str
) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_websocket_url(stream_url(bridge)) as ws:
        await ws.send_message(codec.encode_inbound(codec.Connected()))
        await ws.send_message(Twilio.start(call_sid, {"From": "+1"}, stream_sid=stream_sid))
        code, reason = await closed_by_server(ws)
        events = await bridge.events(call_sid)
    assert code == 1008 and reason.startswith("invalid")
    assert events == [] and len(bridge.server.live) == 0
    messages = [record.getMessage() for record in caplog.records]
    assert any("refused: invalid" in message for message in messages)
    assert not any(bad in message for message in messages for bad in ("\r", "\n", "\x00", '"'))


def stream_url(bridge: Bridge) -> str:
    return signature.stream_url(bridge.server.settings.public_url)


# --- limits before and after start -----------------------------------------------------------------


async def test_garbage_before_start_is_logged_in_two_lines_and_the_connection_closed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    async with running_bridge(tmp_path) as bridge, open_websocket_url(stream_url(bridge)) as ws:
        sent = 0
        with trio.fail_after(WAIT_S):
            try:
                for index in range(1000):
                    await ws.send_message("{not json" if index % 2 else json.dumps({"event": "telepathy"}))
                    sent += 1
            except ConnectionClosed:
                pass
        code, reason = await closed_by_server(ws)
    warnings = [r.getMessage() for r in caplog.records if r.name == "callbridge.web.media"]
    assert code == 1008 and "start frame" in reason
    assert sent < 1000 or len(warnings) <= 3
    assert len(warnings) == 3, warnings  # the first unreadable frame, the counts, the close
    assert "unreadable frame before start" in warnings[0]
    assert "4 unreadable and 4 unexpected frame(s) before start" in warnings[1]
    assert "no start frame in 8 frames" in warnings[2]


async def test_a_stream_without_start_in_time_is_closed_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media, "START_TIMEOUT_S", 0.2)
    async with running_bridge(tmp_path) as bridge, open_websocket_url(stream_url(bridge)) as ws:
        await ws.send_message(codec.encode_inbound(codec.Connected()))
        code, reason = await closed_by_server(ws)
    assert (code, reason) == (1008, "no start frame within 0.2 s")


async def test_a_message_over_8_kib_on_call_closes_the_socket_with_1009(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge, open_websocket_url(stream_url(bridge)) as ws:
        await ws.send_message(json.dumps({"event": "connected", "padding": "x" * 9000}))
        code, _ = await closed_by_server(ws)
    assert code == 1009


async def test_a_media_payload_longer_than_twilio_sends_is_rejected_naming_the_limit(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, script=SCRIPT) as bridge, open_websocket_url(stream_url(bridge)) as ws:
        call_sid = new_sid("CA")
        await ws.send_message(codec.encode_inbound(codec.Connected()))
        await ws.send_message(Twilio.start(call_sid, {"From": "+1"}))
        await wait_live(bridge, call_sid)
        big = codec.MediaChunk(chunk="1", timestamp="0", payload="/" * 1000)
        await ws.send_message(codec.encode_inbound(codec.Media(sequence_number="2", stream_sid="MZ", media=big)))
        await Twilio(bridge).stop(ws, call_sid)
        await bridge.wait_call_ended(call_sid)
        events = await bridge.events(call_sid)
    (rejected,) = of_type(events, TwilioFrameRejected)
    assert "longer than 432 characters" in rejected.error


# --- one line per call start and end -----------------------------------------------------------------


async def test_each_call_logs_one_line_at_start_and_one_at_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="callbridge")
    async with running_bridge(tmp_path, script=SCRIPT) as bridge:
        steps = [Speak(900), WaitForAssistant(timeout_s=15), HangUp()]
        report = await place_call(bridge.base_url, script=steps, from_number="+15550003333")
        await bridge.wait_call_ended(report.call_sid)
    lines = [r.getMessage() for r in caplog.records if report.call_sid in r.getMessage() and r.name.endswith("media")]
    assert lines[0] == f"call {report.call_sid} started: from +15550003333 to +15005550001"
    assert lines[1].startswith(f"call {report.call_sid} ended: caller_hangup after ") and len(lines) == 2
