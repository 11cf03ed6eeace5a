"""Simulated callers that time every frame: the benchmark's Twilio side.

Each call is what ``adapters.sim.caller.place_call`` does — voice webhook, TwiML, Media Streams
WebSocket (``peer_sockets``: the same messages, on the media path's cheaper sockets), ``run_stream``
at real-time pace, every microphone woken by the process's one ``Metronome`` (``peer_clock``) —
with the stream socket wrapped by ``TimedSocket``,
which tags each outgoing ``media`` frame with its (call, frame) number (``frame_tags``) and notes
``time.monotonic()`` just before it is handed to the socket, and the arrival time and fingerprint
of each ``media`` frame coming back. ``direct=True`` skips the webhook and opens ``/call`` at once
(the floor has no TwiML endpoint).

The script never barges in and ends in silence: a lead-in silence (``lead_in_s``: calls are
staggered), then as many exchanges of "speak one second, wait for the whole reply to play, pause"
as surely fit, each padded to ``TURN_BUDGET_S`` so they spread over the whole call (the latency of
its last 10 s is measured as well as its first), then silence until the call's time is up, so no
assistant audio is legitimately lost unless the bridge is seconds late.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import httpx2
import msgspec
import trio
from frame_tags import is_media, media_fingerprint, tag_media_message
from peer_clock import Metronome
from peer_sockets import open_peer_socket
from trio_websocket import ConnectionClosed

from callbridge.adapters.sim.caller import CallReport, Silence, Speak, Step, WaitForAssistant
from callbridge.adapters.sim.caller_http import WebhookError, connect_url, new_sid, request_twiml, voice_webhook_params
from callbridge.adapters.sim.caller_pace import OWN_DEADLINE, Pace
from callbridge.adapters.sim.caller_stream import MediaSocket, run_stream
from callbridge.adapters.twilio.twiml import TwimlError
from callbridge.adapters.websocket import WebSocketHandshakeError

TURN_BUDGET_S = 7.0
"""One exchange, padded: ~5.15 s unloaded (1 s speech, 0.5 s end of speech, 3.25 s reply played,
0.4 s settle), then a pause to make it 7 s; the last reply has played before hang-up."""

QUIET_TAIL_S = 2.0

EXCHANGE_S = TURN_BUDGET_S
"""One exchange: calls are staggered over this much, so they do not all speak at once."""

UNLOADED_EXCHANGE_MS = 5150

_GOLDEN = 0.6180339887498949


def lead_in_s(index: int, stagger_s: float) -> float:
    """Silence before call ``index``'s first turn: spread evenly over ``stagger_s`` whatever the
    number of calls (golden-ratio sequence). Independent callers do not talk in lockstep; with
    ``stagger_s=0`` they do (the worst case: every reply streams at the same moment)."""
    return (index * _GOLDEN) % 1.0 * stagger_s


def bench_script(seconds: float, lead_s: float = 0.0) -> list[Step]:
    turns = max(1, math.floor((seconds - QUIET_TAIL_S - lead_s) / TURN_BUDGET_S))
    steps: list[Step] = [Silence(round(lead_s * 1000))] if lead_s >= 0.02 else []
    pause_ms = round(TURN_BUDGET_S * 1000) - UNLOADED_EXCHANGE_MS
    for _ in range(turns):
        steps += [Speak(1000), WaitForAssistant(timeout_s=TURN_BUDGET_S, settle_ms=400), Silence(pause_ms)]
    steps.append(Silence(int(seconds * 1000) + 60_000))  # the time limit hangs up during this
    return steps


class CallLog(msgspec.Struct, kw_only=True):
    """What one caller sent and received, with monotonic times."""

    index: int
    call_sid: str = ""
    sent: list[float] = []
    """Send time of media frame N (N = list index = the frame number in its tag)."""
    stop_at: float | None = None
    received: list[tuple[float, int]] = []
    """(arrival time, payload fingerprint) per assistant ``media`` frame."""
    connected_at: float | None = None
    report: CallReport | None = None


class TimedSocket:
    """A ``MediaSocket`` that tags and times media frames on their way through."""

    def __init__(self, ws: MediaSocket, log: CallLog) -> None:
        self._ws = ws
        self._log = log

    async def send_message(self, message: str) -> None:
        log = self._log
        if is_media(message):
            message = tag_media_message(message, log.index, len(log.sent))
            log.sent.append(time.monotonic())
        elif message.startswith('{"event":"stop"'):
            log.stop_at = time.monotonic()
        elif log.connected_at is None:
            log.connected_at = time.monotonic()
        await self._ws.send_message(message)

    async def get_message(self) -> str | bytes:
        message = await self._ws.get_message()
        if is_media(message):
            assert isinstance(message, str)
            fp = media_fingerprint(message)
            if fp is not None:
                self._log.received.append((time.monotonic(), fp))
        return message

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        await self._ws.aclose(code, reason)


async def timed_call(
    base_url: str,
    log: CallLog,
    *,
    seconds: float,
    client: httpx2.AsyncClient,
    stagger_s: float = EXCHANGE_S,
    direct: bool = False,
    pace: Pace = OWN_DEADLINE,
) -> None:
    """One call from webhook to close; failures end up in ``log.report.errors``. ``pace``: how its
    microphone waits for each frame's time (``run_callers`` gives every call one ``Metronome``)."""
    report = CallReport(call_sid=new_sid("CA"), stream_sid=new_sid("MZ"), from_number=f"+1555{log.index:07d}")
    log.call_sid, log.report = report.call_sid, report
    account_sid = new_sid("AC")
    parameters: dict[str, str] = {}
    try:
        if direct:
            url = base_url.replace("http", "ws", 1) + "/call"
        else:
            params = voice_webhook_params(
                call_sid=report.call_sid, account_sid=account_sid, from_number=report.from_number, to_number="+1500"
            )
            stream_url, parameters = await request_twiml(client, base_url, params, auth_token=None)
            url = connect_url(stream_url, base_url, None)
        ws = await open_peer_socket(url)
        try:
            await run_stream(
                TimedSocket(ws, log),
                report,
                script=bench_script(seconds, lead_in_s(log.index, stagger_s)),
                account_sid=account_sid,
                custom_parameters=parameters,
                max_duration_s=seconds,
                voice_offset_ms=log.index * 370,
                pace=pace,
            )
        finally:
            await ws.aclose()
    except (
        ConnectionClosed,
        WebSocketHandshakeError,
        WebhookError,
        TwimlError,
        httpx2.HTTPError,
        OSError,
    ) as exc:
        report.errors.append(f"{type(exc).__name__}: {exc}")
        report.ended_by = "error"


def http_client(calls: int) -> httpx2.AsyncClient:
    """The webhooks' HTTP client (making one takes ~80 ms of CPU: its TLS context)."""
    limits = httpx2.Limits(max_connections=max(10, calls), max_keepalive_connections=max(10, calls))
    return httpx2.AsyncClient(timeout=30.0, limits=limits)


class Progress(msgspec.Struct):
    connected: int
    live: int
    ended: int
    failed: int


async def run_callers(
    base_url: str,
    indexes: Sequence[int],
    *,
    seconds: float,
    ramp_s: float,
    stagger_s: float = EXCHANGE_S,
    direct: bool = False,
    progress: Callable[[Progress], None] | None = None,
    client: httpx2.AsyncClient | None = None,
) -> list[CallLog]:
    """Run one timed call per index, started evenly over ``ramp_s``; ``progress`` every second.
    ``client`` (closed at the end): the webhooks' HTTP client, made in advance by ``http_client``."""
    logs = [CallLog(index=index) for index in indexes]
    metronome = Metronome()
    ended = 0
    start = trio.current_time()

    async def one(position: int, log: CallLog, client: httpx2.AsyncClient) -> None:
        nonlocal ended
        await trio.sleep_until(start + ramp_s * position / max(1, len(logs)))
        await timed_call(
            base_url, log, seconds=seconds, client=client, stagger_s=stagger_s, direct=direct, pace=metronome
        )
        ended += 1

    def snapshot() -> Progress:
        connected = sum(1 for log in logs if log.connected_at is not None)
        failed = sum(1 for log in logs if log.report is not None and log.report.errors)
        return Progress(connected=connected, live=connected - ended, ended=ended, failed=failed)

    async def report_progress() -> None:
        while progress is not None:
            await trio.sleep(1.0)
            progress(snapshot())

    async with client or http_client(len(logs)) as client, trio.open_nursery() as nursery:
        nursery.start_soon(report_progress)
        nursery.start_soon(metronome.run)
        async with trio.open_nursery() as calls:
            for position, log in enumerate(logs):
                calls.start_soon(one, position, log, client)
        nursery.cancel_scope.cancel()
    if progress is not None:
        progress(snapshot())
    return logs
