"""``WS /call``: a Twilio media stream, accepted over ``adapters.websocket`` and handed to the engine.

Before anything starts:

- the upgrade is refused with 403 when a Twilio auth token is configured and
  ``X-Twilio-Signature`` does not sign exactly the stream URL derived from ``PUBLIC_URL`` with
  empty parameters (docs/protocols.md A7);
- every message on the socket is capped at :data:`MAX_MESSAGE_BYTES` (a Twilio frame is under
  1 KiB; a bigger one closes the socket with 1009);
- until ``start`` arrives, at most :data:`MAX_FRAMES_BEFORE_START` other frames are read, for at
  most :data:`START_TIMEOUT_S`; unreadable ones are logged once per kind with a count, never one
  line each, and the socket is closed (1008) when the peer keeps sending something else;
- the ``start`` frame must pass :mod:`web.call_admission` (CallSid/StreamSid shapes, the per-call
  token when the auth token is set, a CallSid never started before — or, with a
  ``callbridge_resume`` parameter, a held call coming back from a warm transfer nobody answered),
  else the socket is closed with 1008 and the reason, and nothing is recorded under that CallSid.

Then the engine runs the call; one INFO line says it started (call id, from, to) and one that it
ended (reason, duration). Peer strings in log lines go through ``printable`` (no forged lines).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import msgspec
import trio

from callbridge.adapters.twilio import codec, signature
from callbridge.adapters.websocket import WebSocket, WebSocketClosed, WebSocketHandshakeError, accept_request
from callbridge.engine.apology import Apology
from callbridge.web.call_admission import (
    CallAdmission,
    StartRefused,
    check_call_token,
    check_sid,
    printable,
)

log = logging.getLogger(__name__)

CALL_TOKEN_PARAMETER = "callbridge_token"
RESUME_PARAMETER = "callbridge_resume"
"""The ``<Parameter>`` that brings a held call back to the agent (``web/warm_transfer.py``)."""
START_TIMEOUT_S = 10.0
MAX_FRAMES_BEFORE_START = 8
"""Twilio sends one ``connected`` before ``start``; a peer sending more than this is not Twilio."""
MAX_MESSAGE_BYTES = 8 * 1024
"""Twilio's frames are a few hundred bytes (a ``start`` with its parameters about 1 KiB)."""
CLOSE_POLICY_VIOLATION = 1008


def _kind(error: codec.TwilioFrameError) -> str:
    """What is wrong with a frame, without the details that differ frame by frame."""
    return str(error).split(":", 1)[0].split(" at `", 1)[0]


async def read_start(link: WebSocket, peer: str) -> codec.Start | None:
    """Skip ``connected`` until ``start``; None (after one log line) if the stream ends first, sends
    too many other frames or takes too long."""
    unreadable: Counter[str] = Counter()
    ignored = 0
    outcome = "timed out"
    with trio.move_on_after(START_TIMEOUT_S):
        while True:
            try:
                data = await link.get_message()
            except WebSocketClosed:
                outcome = "closed"
                break
            try:
                frame = codec.decode_inbound(data)
            except codec.TwilioFrameError as error:
                kind = _kind(error)
                if not unreadable:
                    log.warning("media stream from %s: unreadable frame before start: %s", peer, printable(str(error)))
                unreadable[kind] += 1
                frame = None
            if isinstance(frame, codec.Start):
                _log_skipped(peer, unreadable, ignored)
                return frame
            if isinstance(frame, codec.Stop):
                outcome = "stopped"
                break
            if not isinstance(frame, codec.Connected) and frame is not None:
                ignored += 1
            if sum(unreadable.values()) + ignored >= MAX_FRAMES_BEFORE_START:
                outcome = "too many frames"
                await link.aclose(CLOSE_POLICY_VIOLATION, f"expected a start frame within {MAX_FRAMES_BEFORE_START}")
                break
    _log_skipped(peer, unreadable, ignored)
    if outcome == "timed out":
        await link.aclose(CLOSE_POLICY_VIOLATION, f"no start frame within {START_TIMEOUT_S:g} s")
    if outcome in ("timed out", "too many frames"):
        what = f"within {START_TIMEOUT_S:g} s" if outcome == "timed out" else f"in {MAX_FRAMES_BEFORE_START} frames"
        log.warning("media stream from %s: no start frame %s; closed", peer, what)
    return None


def _log_skipped(peer: str, unreadable: Counter[str], ignored: int) -> None:
    """One line for every frame skipped before ``start`` beyond the first unreadable one."""
    if sum(unreadable.values()) > 1 or ignored:
        counts = ", ".join(f"{printable(kind)}: {count}" for kind, count in unreadable.most_common())
        log.warning(
            "media stream from %s: %d unreadable and %d unexpected frame(s) before start (%s)",
            peer,
            sum(unreadable.values()),
            ignored,
            counts or "none unreadable",
        )


CallRunner = Callable[[WebSocket, codec.Start], Awaitable[object]]


def peer_of(stream: trio.abc.HalfCloseableStream) -> str:
    """``host:port`` of the connection's far end, for log lines."""
    try:
        host, port = getattr(stream, "socket").getpeername()[:2]  # noqa: B009 - not every stream has one
    except (AttributeError, OSError, TypeError, ValueError):
        return "?"
    return f"{host}:{port}"


async def check_start(
    start: codec.Start, *, auth_token: str | None, admission: CallAdmission | None
) -> tuple[str, codec.Start]:
    """The call id and the ``start`` frame to run (per-call and resume tokens removed), or
    :class:`StartRefused`. On success the call id is claimed: release it when the call ends (a
    resumed call's history is then ``admission.resumed_history(call_id)``)."""
    info = start.start
    check_sid("StreamSid", start.stream_sid)
    check_sid("CallSid", info.call_sid)
    if auth_token:
        token = info.custom_parameters.get(CALL_TOKEN_PARAMETER, "")
        now = admission.clock() if admission is not None else time.time()
        check_call_token(auth_token, info.call_sid, token, now)
    resume = info.custom_parameters.get(RESUME_PARAMETER)
    if resume is not None:
        if admission is None:
            raise StartRefused("this server does not resume held calls")
        await admission.claim_resumed(info.call_sid, resume, auth_token)
    elif admission is not None:
        await admission.claim(info.call_sid)
    tokens = (CALL_TOKEN_PARAMETER, RESUME_PARAMETER)
    params = {k: v for k, v in info.custom_parameters.items() if k not in tokens}
    return info.call_sid, msgspec.structs.replace(start, start=msgspec.structs.replace(info, custom_parameters=params))


async def handle_media_stream(
    stream: trio.abc.HalfCloseableStream,
    *,
    public_url: str,
    auth_token: str | None,
    accepting: Callable[[], bool],
    run: CallRunner,
    admission: CallAdmission | None = None,
    refusal: Callable[[], Apology | None] = lambda: None,
) -> None:
    """Serve one ``/call`` upgrade: authenticate it, read ``start``, and carry the call (``run``).
    ``accepting`` False (shutting down) refuses the upgrade; ``refusal`` returning an apology (the
    event log cannot take a call now) lets the caller hear it before the stream is closed, instead
    of a call that could not be recorded."""
    peer = peer_of(stream)
    try:
        request = await accept_request(stream)
    except WebSocketHandshakeError as error:
        log.warning("media stream from %s: %s", peer, printable(str(error), 200))
        await stream.aclose()
        return
    if auth_token:
        headers = {name.lower(): value for name, value in request.headers}
        sent = headers.get(b"x-twilio-signature", b"").decode("latin-1")
        url = signature.stream_url(public_url)
        if not signature.is_valid_signature(auth_token, url, {}, sent):
            log.warning("media stream from %s refused: missing or wrong X-Twilio-Signature for %s", peer, url)
            await request.reject(403, body=b"invalid or missing X-Twilio-Signature\n")
            return
    if not accepting():
        await request.reject(503, body=b"server is shutting down\n")
        return
    ws = await request.accept(max_message_size=MAX_MESSAGE_BYTES)
    link = ws
    try:
        start = await read_start(link, peer)
        if start is None:
            return
        try:
            call_id, start = await check_start(start, auth_token=auth_token, admission=admission)
        except StartRefused as refused:
            log.warning("media stream from %s refused: %s", peer, refused)
            await link.aclose(CLOSE_POLICY_VIOLATION, str(refused))
            return
        apology = refusal()
        if apology is not None:
            if admission is not None:
                admission.release(call_id)
            await _apologize(link, start.stream_sid, call_id, apology)
            return
        await _run_logged(link, start, call_id, run, admission)
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await ws.aclose()


APOLOGY_GRACE_S = 2.0


async def _apologize(link: WebSocket, stream_sid: str, call_id: str, apology: Apology) -> None:
    """Play ``apology`` and wait (bounded) until Twilio echoes the mark after it: the caller heard it."""
    log.warning("call %s refused: the event log cannot take calls now; the caller hears the apology", call_id)
    frames = [codec.encode_media(stream_sid, chunk) for chunk in apology.chunks]
    with trio.move_on_after(apology.duration_ms / 1000 + APOLOGY_GRACE_S):
        try:
            await link.send_messages([*frames, codec.encode_mark(stream_sid, "apology")])
            while True:
                frame = codec.decode_inbound(await link.get_message())
                if isinstance(frame, codec.Mark | codec.Stop):
                    break
        except (WebSocketClosed, codec.TwilioFrameError):
            pass
    await link.aclose(1000, "the service cannot take calls right now")


async def _run_logged(
    link: WebSocket, start: codec.Start, call_id: str, run: CallRunner, admission: CallAdmission | None
) -> None:
    params = start.start.custom_parameters
    log.info(
        "call %s started: from %s to %s",
        call_id,
        printable(params.get("From", "")) or "?",
        printable(params.get("To", "")) or "?",
    )
    began = trio.current_time()
    reason: object = "error"
    try:
        reason = await run(link, start)
    finally:
        if admission is not None:
            admission.release(call_id)
        log.info("call %s ended: %s after %.1f s", call_id, printable(str(reason)), trio.current_time() - began)
