"""The token-protected read API: conversations, call events, recordings, metrics (docs/contract.md,
"Console and API").

Why this shape:

- **Answers come from the views, after they caught up.** Each views request first flushes the
  event writer and waits (briefly, ``projections.freshness.FRESHNESS_TIMEOUT_S``) for the
  projections to reach the store head at request time, so a client that just ended a call sees it
  (read-your-writes: the server's :class:`projections.freshness.ReadYourWrites`, shared with
  ``/mcp``). If the projections are slow the answer is served anyway, a little stale, rather than
  not at all.
- **Blocking work runs in threads, bounded.** SQLite reads, store reads, JSON encoding of large
  event lists and WAV building go through ``trio.to_thread.run_sync`` with the server's shared
  ``CapacityLimiter``, so a burst of API requests cannot starve the calls. Each request opens its
  own read connection to the views (WAL mode: readers never block the projection writer).
- **Bad input is a 400 naming the parameter** (:class:`projections.views_db.QueryError`), unknown
  calls a 404, both with ``{"error": …}``.
- ``/metrics`` needs the token too (the contract lists it under the token), and accepts the bearer
  header, so Prometheus scrapes it with ``authorization: {credentials: TOKEN}``. Its text is
  ``prometheus_client``'s, from the server's own registry (:mod:`web.metrics_export`).
- **A call's events come a page at a time** (:mod:`projections.event_pages`): the body stays the contract's
  JSON array ``[{position, type, at, data}]``; ``?after=POSITION&limit=N`` pages, and a page that
  is not the last says where the next starts in ``X-Next-After: POSITION`` and a
  ``Link: <…?after=POSITION…>; rel="next"`` header (RFC 8288). Audio is left out unless ``?audio=1``.
- **The recording's file name is encoded** (RFC 6266 ``filename*``), with an ASCII fallback: a
  call id never reaches a header raw. An erased call has no recording: 410.
- ``POST /api/calls/{call_id}/erase`` (``projections.erasure``) answers once this engine's views hold
  the erasure, so the next read of any view says ``[erased]``.
"""

from __future__ import annotations

import re
import sqlite3
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

import msgspec
import trio
from quart import Blueprint, Response, request

from callbridge.engine.events import CallErased
from callbridge.engine.store import RecordedEvent
from callbridge.projections.conversations_query import get_conversation, list_conversations
from callbridge.projections.erasure import CallNotEnded, CallNotFound, checkpoint_views, erase_call
from callbridge.projections.event_pages import DEFAULT_LIMIT, MAX_LIMIT, read_event_page
from callbridge.projections.metrics_query import get_call_metrics, metrics_summary
from callbridge.projections.recording import iter_recording
from callbridge.projections.views_db import QueryError, check_limit, iso, open_views
from callbridge.web.auth import require_token
from callbridge.web.metrics_export import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from callbridge.web.metrics_export import EngineSnapshot, MetricsExport

if TYPE_CHECKING:
    from callbridge.server import Server

T = TypeVar("T")

ERASE_VIEWS_TIMEOUT_S = 10.0
"""How long an erasure waits for this engine's views to fold it before answering anyway."""
WAV_HEADER_BYTES = 44

_json = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_json.encode(body), status=status, content_type="application/json")


def error_response(status: int, message: str, **extra: Any) -> Response:
    return json_response({"error": message, **extra}, status)


# --- query values and headers ------------------------------------------------------------------

_FLAGS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


def position_param(value: str | None, param: str = "after") -> int:
    """A log position from the query (0 when absent), or :class:`QueryError`."""
    if value is None or value == "":
        return 0
    if not value.isdigit() or len(value) > 18:
        raise QueryError(param, f"{value[:40]!r} is not a log position (a whole number, 0 for the start)")
    return int(value)


def flag_param(value: str | None, param: str) -> bool:
    """``1``/``true``/``yes`` or ``0``/``false``/``no`` (absent: false), or :class:`QueryError`."""
    found = _FLAGS.get((value or "").strip().lower())
    if found is None:
        raise QueryError(param, f"{(value or '')[:40]!r} is not 1 or 0")
    return found


def content_disposition(call_id: str, extension: str) -> str:
    """``inline`` with the call id as file name: an ASCII-safe ``filename`` and the exact one in
    RFC 6266 ``filename*`` (UTF-8, percent-encoded), so no call id can break or extend the header."""
    fallback = re.sub(r"[^A-Za-z0-9_.-]", "_", call_id)[:100] or "call"
    exact = quote(f"{call_id}.{extension}", safe="")
    return f"inline; filename=\"{fallback}.{extension}\"; filename*=UTF-8''{exact}"


# --- the recording -----------------------------------------------------------------------------


def wav_data_size(header: bytes) -> int:
    """Total file size announced by a 44-byte WAV header (its ``data`` chunk size plus the header)."""
    (data_bytes,) = struct.unpack_from("<I", header, 40)
    return WAV_HEADER_BYTES + int(data_bytes)


# --- the blueprint -----------------------------------------------------------------------------


def api_blueprint(server: Server) -> Blueprint:
    """The API routes over ``server`` (its store, writer, projections, live calls, limiter)."""
    api = Blueprint("api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))

    @api.errorhandler(QueryError)
    async def bad_query(error: QueryError) -> Response:
        return error_response(400, str(error), param=error.param)

    async def in_thread(fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(fn, *args, limiter=server.db_threads)

    def with_views(query: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        def run() -> T:
            db = open_views(server.views_path)
            try:
                return query(db)
            finally:
                db.close()

        return run

    async def fresh() -> int:
        """Flush our writer and wait (bounded) for the views to reach the store head; return it."""
        return (await server.fresh.views()).head

    async def views(query: Callable[[sqlite3.Connection], T]) -> T:
        await fresh()
        return await in_thread(with_views(query))

    async def stored_events(call_id: str) -> list[RecordedEvent]:
        await server.fresh.events()
        return await in_thread(server.store.read_call, call_id)

    def unknown_call(call_id: str) -> Response:
        return error_response(404, f"unknown call {call_id!r}")

    @api.get("/api/conversations")
    async def conversations() -> Response:
        args = request.args
        found = await views(
            lambda db: list_conversations(
                db,
                limit=args.get("limit", 50),  # type: ignore[arg-type]  # validated by check_limit
                phone_number=args.get("phone_number") or None,
                caller_number=args.get("caller_number") or None,
                since=args.get("since"),
                until=args.get("until"),
                q=args.get("q"),
            )
        )
        return json_response(found)

    @api.get("/api/conversations/<call_id>")
    async def conversation(call_id: str) -> Response:
        found = await views(lambda db: get_conversation(db, call_id))
        return unknown_call(call_id) if found is None else json_response(found)

    @api.get("/api/calls/<call_id>/events")
    async def call_events(call_id: str) -> Response:
        args = request.args
        after = position_param(args.get("after"))
        limit = check_limit(args.get("limit", DEFAULT_LIMIT), maximum=MAX_LIMIT)
        audio = flag_param(args.get("audio"), "audio")
        await server.fresh.events()
        page = await in_thread(
            lambda: read_event_page(server.store, call_id, after=after, limit=limit, include_audio=audio)
        )
        if page is None:
            return unknown_call(call_id)
        body = await in_thread(_json.encode, page.records)
        response = Response(body, content_type="application/json")
        if page.next_after is not None:
            query = {"after": page.next_after, "limit": limit, **({"audio": 1} if audio else {})}
            response.headers["X-Next-After"] = str(page.next_after)
            response.headers["Link"] = f'<{quote(request.path)}?{urlencode(query)}>; rel="next"'
        return response

    @api.get("/api/calls/<call_id>/recording.wav")
    async def recording(call_id: str) -> Response:
        recorded = await stored_events(call_id)
        if not recorded:
            return unknown_call(call_id)
        erased = next((r.event for r in recorded if isinstance(r.event, CallErased)), None)
        if erased is not None:
            return error_response(410, f"call {call_id!r} was erased ({iso(erased.at)}): its audio is gone")
        blocks: Iterator[bytes] = iter_recording([r.event for r in recorded])
        try:
            header = await in_thread(next, blocks)  # lays out both tracks: the heavy part
        except ValueError as error:  # too long for one WAV file
            return error_response(422, str(error))

        async def body() -> AsyncIterator[bytes]:
            yield header
            while (block := await in_thread(next, blocks, b"")) != b"":
                yield block

        response = Response(body(), content_type="audio/wav")
        response.headers["Content-Length"] = str(wav_data_size(header))
        response.headers["Content-Disposition"] = content_disposition(call_id, "wav")
        response.timeout = None  # an hour-long call may take longer than RESPONSE_TIMEOUT to send
        return response

    @api.post("/api/calls/<call_id>/erase")
    async def erase(call_id: str) -> Response:
        body = await request.get_json(force=True, silent=True) if await request.get_data() else {}
        if not isinstance(body, dict) or not isinstance(body.get("force", False), bool):
            return error_response(400, 'the body must be empty or a JSON object such as {"force": true}')
        if server.live.get(call_id) is not None:
            return error_response(409, f"call {call_id!r} is live on this engine: hang it up first, then erase it")
        await server.fresh.events()  # the call's last events are in the store before its key goes
        try:
            force = bool(body.get("force", False))
            erasure = await in_thread(lambda: erase_call(server.store, call_id, by="api", force=force))
        except CallNotFound:
            return unknown_call(call_id)
        except CallNotEnded:
            return error_response(
                409,
                f"call {call_id!r} has not ended (no CallEnded in the log): hang it up first, "
                'or send {"force": true} if the engine carrying it is gone',
            )
        with trio.move_on_after(ERASE_VIEWS_TIMEOUT_S):
            await server.projections.wait_for_position(erasure.position)
        await in_thread(checkpoint_views, server.views_path)
        return json_response(erasure.as_json())

    @api.get("/api/calls/<call_id>/metrics")
    async def call_metrics(call_id: str) -> Response:
        found = await views(lambda db: get_call_metrics(db, call_id))
        return unknown_call(call_id) if found is None else json_response(found)

    @api.get("/api/metrics")
    async def summary() -> Response:
        since, until = request.args.get("since"), request.args.get("until")
        return json_response(await views(lambda db: metrics_summary(db, since, until)))

    exposition = MetricsExport(server.views_path, limiter=server.db_threads)

    async def engine_snapshot() -> EngineSnapshot:
        head = await fresh()
        return EngineSnapshot(live_calls=len(server.live), head=head, projected=server.projections.position)

    @api.get("/metrics")
    async def prometheus() -> Response:
        return Response(await exposition.render(engine_snapshot), content_type=PROMETHEUS_CONTENT_TYPE)

    return api
