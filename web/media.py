"""``WS /call``: a Twilio media stream, accepted over ``adapters.websocket`` and handed to the engine.

The upgrade is refused with 403 (and nothing starts) when a Twilio auth token is configured and
``X-Twilio-Signature`` does not sign exactly the stream URL derived from ``PUBLIC_URL`` with empty
parameters (protocols.md A7). Custom parameters are not covered by that signature, so the TwiML
also carries a per-call token (an HMAC of the CallSid) that must come back in ``start``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable

import msgspec
import trio

from callbridge.adapters.twilio import codec, signature
from callbridge.adapters.websocket import WebSocket, WebSocketClosed, WebSocketHandshakeError, accept_request

log = logging.getLogger(__name__)

CALL_TOKEN_PARAMETER = "callbridge_token"
START_TIMEOUT_S = 10.0
MAX_MESSAGE_BYTES = 1024 * 1024
"""Twilio's frames are a few hundred bytes; anything near this is not a media stream."""


def call_token(secret: str, call_sid: str) -> str:
    """The per-call token put in the TwiML ``<Parameter>`` and checked on ``start``."""
    return hmac.new(secret.encode(), call_sid.encode(), hashlib.sha256).hexdigest()[:32]


async def read_start(link: WebSocket) -> codec.Start | None:
    """Skip ``connected`` (and anything unreadable) until ``start``; None if the stream ends first."""
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            try:
                data = await link.get_message()
            except WebSocketClosed:
                return None
            try:
                frame = codec.decode_inbound(data)
            except codec.TwilioFrameError as error:
                log.warning("media stream: unreadable frame before start: %s", error)
                continue
            if isinstance(frame, codec.Start):
                return frame
            if isinstance(frame, codec.Stop):
                return None
    log.warning("media stream: no start frame within %.0f s", START_TIMEOUT_S)
    return None


CallRunner = Callable[[WebSocket, codec.Start], Awaitable[object]]


async def handle_media_stream(
    stream: trio.abc.HalfCloseableStream,
    *,
    public_url: str,
    auth_token: str | None,
    accepting: Callable[[], bool],
    run: CallRunner,
) -> None:
    try:
        request = await accept_request(stream)
    except WebSocketHandshakeError as error:
        log.warning("media stream: %s", error)
        await stream.aclose()
        return
    if auth_token:
        headers = {name.lower(): value for name, value in request.headers}
        sent = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        url = signature.stream_url(public_url)
        if not signature.is_valid_signature(auth_token, url, {}, sent):
            log.warning("media stream refused: missing or wrong X-Twilio-Signature for %s", url)
            await request.reject(403, body=b"invalid or missing X-Twilio-Signature\n")
            return
    if not accepting():
        await request.reject(503, body=b"server is shutting down\n")
        return
    ws = await request.accept(max_message_size=MAX_MESSAGE_BYTES)
    link = ws
    try:
        start = await read_start(link)
        if start is None:
            return
        if auth_token:
            expected = call_token(auth_token, start.start.call_sid)
            got = start.start.custom_parameters.get(CALL_TOKEN_PARAMETER, "")
            if not hmac.compare_digest(expected, got):
                log.warning("media stream refused: start frame without a valid per-call token")
                await link.aclose(1008, "invalid call token")
                return
        params = {k: v for k, v in start.start.custom_parameters.items() if k != CALL_TOKEN_PARAMETER}
        start = msgspec.structs.replace(start, start=msgspec.structs.replace(start.start, custom_parameters=params))
        await run(link, start)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await ws.aclose()
