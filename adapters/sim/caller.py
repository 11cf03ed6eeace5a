"""The simulated caller: a faithful fake of Twilio's side of a call, over real sockets.

``place_call`` does what Twilio does for one inbound call: POST the voice webhook (signed over the
public URL), read the ``<Connect><Stream>`` TwiML, open the Media Streams WebSocket (signed over the
``wss`` URL with no parameters) and play the call (``caller_stream.run_stream``): ``connected``,
``start``, a ``media`` frame every 20 ms, mark echoes as the assistant's audio plays, ``stop``.
``simulate_calls`` runs many calls at once for ``callbridge simulate`` and the benchmark;
``format_report`` says what each call heard and how long it took.

Used by the CLI, integration tests and the benchmark; the pieces live beside it: ``caller_http``
(webhooks), ``caller_stream`` (the stream), ``caller_script`` (what the caller does),
``caller_report`` (what it observed), ``playback`` (Twilio's buffer) and ``voice`` (audio).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import httpx2
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    DisconnectionTimeout,
    HandshakeError,
    open_websocket_url,
)

from callbridge.adapters.sim.caller_http import (
    WebhookError,
    connect_url,
    new_sid,
    post_status_callback,
    request_twiml,
    voice_webhook_params,
)
from callbridge.adapters.sim.caller_report import CallReport, FrameSent, MediaReceived, format_report
from callbridge.adapters.sim.caller_script import (
    BargeIn,
    Beep,
    Dtmf,
    HangUp,
    Murmur,
    Silence,
    Speak,
    Step,
    WaitForAssistant,
    WaitForHangUp,
    default_script,
    voicemail_script,
)
from callbridge.adapters.sim.caller_stream import FrameCallback, MediaCallback, run_stream
from callbridge.adapters.twilio.signature import SIGNATURE_HEADER, compute_signature
from callbridge.adapters.twilio.twiml import TwimlError

__all__ = [
    "BargeIn",
    "Beep",
    "CallReport",
    "Dtmf",
    "FrameSent",
    "HangUp",
    "MediaReceived",
    "Murmur",
    "Silence",
    "Speak",
    "Step",
    "WaitForAssistant",
    "WaitForHangUp",
    "default_script",
    "format_report",
    "place_call",
    "simulate_calls",
    "voicemail_script",
]


async def place_call(
    base_url: str,
    *,
    script: Sequence[Step] | None = None,
    auth_token: str | None = None,
    public_url: str | None = None,
    from_number: str = "+15005550006",
    to_number: str = "+15005550001",
    account_sid: str | None = None,
    max_duration_s: float | None = None,
    voice_offset_ms: int = 0,
    keep_audio: bool = False,
    status_callback: bool = False,
    http_client: httpx2.AsyncClient | None = None,
    on_frame_sent: FrameCallback | None = None,
    on_media_received: MediaCallback | None = None,
    call_sid: str | None = None,
) -> CallReport:
    """Place one simulated inbound call against the server at ``base_url`` and report on it.

    ``public_url`` is the origin Twilio believes it calls (the server's ``PUBLIC_URL``); webhook
    signatures are made over it. Network and protocol failures do not raise: they end the call with
    ``ended_by="error"`` and a message in ``errors``. ``max_duration_s`` hangs up on time whatever
    the script is doing; ``status_callback`` also POSTs ``/twilio/status`` after the call.
    ``call_sid`` is the CallSid to use (a new one when None), for callers that must know it first.
    """
    if script is None:  # the default caller talks for max_duration_s (10 s unless given)
        max_duration_s = 10.0 if max_duration_s is None else max_duration_s
        script = default_script(max_duration_s)
    account_sid = account_sid or new_sid("AC")
    call_sid = call_sid or new_sid("CA")
    report = CallReport(call_sid=call_sid, stream_sid=new_sid("MZ"), from_number=from_number, to_number=to_number)
    params = voice_webhook_params(
        call_sid=report.call_sid, account_sid=account_sid, from_number=from_number, to_number=to_number
    )
    started = trio.current_time()
    client = http_client or httpx2.AsyncClient(timeout=10.0)
    try:
        twiml_stream_url, parameters = await request_twiml(
            client, base_url, params, auth_token=auth_token, public_url=public_url
        )
        headers = []
        if auth_token:
            signature = compute_signature(auth_token, twiml_stream_url, {})
            headers.append((SIGNATURE_HEADER.encode(), signature.encode()))
        url = connect_url(twiml_stream_url, base_url, public_url)
        async with open_websocket_url(
            url, extra_headers=headers, max_message_size=16 * 1024 * 1024, connect_timeout=10, disconnect_timeout=5
        ) as ws:
            await run_stream(
                ws,
                report,
                script=script,
                account_sid=account_sid,
                custom_parameters=parameters,
                max_duration_s=max_duration_s,
                voice_offset_ms=voice_offset_ms,
                keep_audio=keep_audio,
                on_frame_sent=on_frame_sent,
                on_media_received=on_media_received,
            )
        if status_callback:
            await _status_callback(
                client, base_url, params, report, trio.current_time() - started, auth_token, public_url
            )
    except ConnectionRejected as exc:
        _failed(report, f"stream upgrade rejected with HTTP {exc.status_code}")
    except ConnectionClosed as exc:
        _failed(report, f"stream closed unexpectedly: {exc.reason}")
    except (HandshakeError, DisconnectionTimeout) as exc:
        _failed(report, f"stream connection failed: {exc!r}")
    except (WebhookError, TwimlError, ValueError) as exc:
        _failed(report, str(exc))
    except (httpx2.HTTPError, OSError) as exc:
        _failed(report, f"HTTP request failed: {exc!r}")
    finally:
        report.duration_s = trio.current_time() - started
        if http_client is None:
            await client.aclose()
    return report


async def _status_callback(
    client: httpx2.AsyncClient,
    base_url: str,
    params: dict[str, str],
    report: CallReport,
    duration_s: float,
    auth_token: str | None,
    public_url: str | None,
) -> None:
    """POST the end-of-call status callback; a failure is reported but does not undo the call."""
    try:
        await post_status_callback(
            client, base_url, params, duration_s=duration_s, auth_token=auth_token, public_url=public_url
        )
    except (WebhookError, httpx2.HTTPError, OSError) as exc:
        report.errors.append(f"status callback failed: {exc}")


def _failed(report: CallReport, message: str) -> None:
    report.errors.append(message)
    report.ended_by = "error"


async def simulate_calls(
    base_url: str,
    *,
    calls: int,
    seconds: float,
    auth_token: str | None = None,
    public_url: str | None = None,
    ramp_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
    barge_in: bool = False,
) -> list[CallReport]:
    """Run ``calls`` simulated calls of about ``seconds`` each concurrently (the default script;
    with ``barge_in`` each caller talks over the reply to its second question),
    started evenly over ``ramp_s``. ``progress`` gets a one-line message as each call ends
    (``call 2/5 CA… ended by caller after 8.0 s``). Reports come back in call order."""
    reports: list[CallReport | None] = [None] * calls
    done = 0
    start = trio.current_time()

    async def one(index: int, client: httpx2.AsyncClient) -> None:
        nonlocal done
        await trio.sleep_until(start + (ramp_s * index / calls if calls else 0.0))
        report = await place_call(
            base_url,
            script=default_script(seconds, barge_in=barge_in),
            auth_token=auth_token,
            public_url=public_url,
            from_number=f"+1555{index:07d}",
            max_duration_s=seconds,
            voice_offset_ms=index * 370,
            http_client=client,
        )
        reports[index] = report
        done += 1
        if progress is not None:
            trouble = f", {len(report.errors)} error(s): {report.errors[0]}" if report.errors else ""
            progress(
                f"call {done}/{calls} {report.call_sid} ended by {report.ended_by} "
                f"after {report.duration_s:.1f} s{trouble}"
            )

    limits = httpx2.Limits(max_connections=max(10, calls), max_keepalive_connections=max(10, calls))
    async with httpx2.AsyncClient(timeout=30.0, limits=limits) as client, trio.open_nursery() as nursery:
        for index in range(calls):
            nursery.start_soon(one, index, client)
    return [report for report in reports if report is not None]
