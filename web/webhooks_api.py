"""``/api/webhooks``: registering endpoints for event kinds, their delivery log, and redelivery.

- ``GET /api/webhooks`` — the endpoints (never a secret), each with counts of its deliveries by state.
- ``POST /api/webhooks`` ``{"url", "events": [...], "secret"?}`` — 201 with the endpoint; without a
  secret one is generated (``whsec_…``) and returned in this answer only. A registration is an event
  in the log (``WebhookRegistered``, its secret sealed with the webhook's own key), so every engine
  sees it.
- ``DELETE /api/webhooks/{id}`` — nothing more is sent to it; its secret is shredded (its key erased).
- ``GET /api/webhooks/{id}/deliveries?limit&state`` — newest first, each with every attempt.
- ``POST /api/webhooks/{id}/deliveries/{delivery_id}/redeliver`` — 202: queued again (same ``webhook-id``).

Bad input is a 400 naming the field and saying what is accepted; unknown ids 404.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import trio
from eventsourcing.persistence import IntegrityError
from quart import Blueprint, Response, request

from callbridge.adapters.standard_webhooks import PREFIX, new_secret, secret_key
from callbridge.engine.events import WEBHOOKS_STREAM, WebhookRedeliveryRequested, WebhookRegistered, WebhookRemoved
from callbridge.engine.privacy import webhook_key_id
from callbridge.projections.views_db import QueryError, iso, open_views
from callbridge.projections.webhook_messages import KINDS
from callbridge.projections.webhooks_view import get_delivery, get_endpoint, list_deliveries, list_endpoints
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import require_token

if TYPE_CHECKING:
    from callbridge.server import Server

MAX_ENDPOINTS = 50
MAX_URL = 2048


class Invalid(ValueError):
    """A registration that cannot be used; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_registration(body: Any) -> tuple[str, list[str], str | None]:
    """``(url, events, secret)`` from a ``POST /api/webhooks`` body, or :class:`Invalid`."""
    if not isinstance(body, dict):
        raise Invalid("body", 'must be a JSON object: {"url": "https://…", "events": ["call.ended"]}')
    unknown = sorted(set(body) - {"url", "events", "secret"})
    if unknown:
        raise Invalid(unknown[0], "is not a field of a webhook (url, events, secret)")
    url = body.get("url")
    if not isinstance(url, str) or not url.strip():
        raise Invalid("url", "is required: the endpoint's address, e.g. https://example.com/callbridge")
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise Invalid("url", f"{url[:100]!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise Invalid("url", "must not carry a user or password (they would be stored in the log): use the secret")
    if parts.fragment or len(url) > MAX_URL:
        raise Invalid("url", f"must have no #fragment and at most {MAX_URL} characters")
    events = body.get("events")
    if not isinstance(events, list) or not events or not all(isinstance(kind, str) for kind in events):
        raise Invalid("events", f"is required: a non-empty list of event kinds ({', '.join(KINDS)})")
    wrong = [kind for kind in events if kind not in KINDS]
    if wrong:
        raise Invalid("events", f"{wrong[0]!r} is not an event kind; known: {', '.join(KINDS)}")
    secret = body.get("secret")
    if secret is not None:
        if not isinstance(secret, str) or not secret.startswith(PREFIX):
            raise Invalid("secret", f"must be {PREFIX} followed by base64 of 24 to 64 random bytes (or left out)")
        try:
            size = len(secret_key(secret))
        except ValueError:
            size = 0
        if not 24 <= size <= 64:
            raise Invalid("secret", f"must be {PREFIX} followed by base64 of 24 to 64 random bytes (or left out)")
    return url, list(dict.fromkeys(events)), secret


def webhooks_blueprint(server: Server) -> Blueprint:
    """The webhook routes over ``server`` (its writer, store, views and read-your-writes)."""
    api = Blueprint("webhooks_api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))

    @api.errorhandler(QueryError)
    async def bad_query(error: QueryError) -> Response:
        return error_response(400, str(error), param=error.param)

    async def views(query: Any) -> Any:
        await server.fresh.views()

        def run() -> Any:
            db = open_views(server.views_path)
            try:
                return query(db)
            finally:
                db.close()

        return await trio.to_thread.run_sync(run, limiter=server.db_threads)

    def unknown(webhook_id: str) -> Response:
        return error_response(404, f"unknown webhook {webhook_id!r}; list them with GET /api/webhooks")

    @api.get("/api/webhooks")
    async def endpoints() -> Response:
        return json_response(await views(list_endpoints))

    @api.post("/api/webhooks")
    async def register() -> Response:
        try:
            url, kinds, given = check_registration(await request.get_json(force=True, silent=True))
        except Invalid as error:
            return error_response(400, str(error), field=error.field)
        if len(await views(list_endpoints)) >= MAX_ENDPOINTS:
            return error_response(409, f"at most {MAX_ENDPOINTS} webhooks: remove one first")
        webhook_id = "wh_" + secrets.token_hex(8)
        secret = given or new_secret()
        at = server.now()
        server.writer.record(
            WebhookRegistered(
                call_id=WEBHOOKS_STREAM, at=at, webhook_id=webhook_id, url=url, events=kinds, secret=secret
            )
        )
        await server.fresh.views()  # listed from now on, and picked up by the sender
        body: dict[str, Any] = {"id": webhook_id, "url": url, "events": kinds, "created_at": iso(at)}
        if given is None:
            body["secret"] = secret  # shown once: it is never shown again
        return json_response(body, 201)

    @api.delete("/api/webhooks/<webhook_id>")
    async def remove(webhook_id: str) -> Response:
        if await views(lambda db: get_endpoint(db, webhook_id)) is None:
            return unknown(webhook_id)
        server.writer.record(WebhookRemoved(call_id=WEBHOOKS_STREAM, at=server.now(), webhook_id=webhook_id))
        await server.fresh.views()
        await trio.to_thread.run_sync(server.store.keys.erase, webhook_key_id(webhook_id))  # its secret is shredded
        return json_response({"id": webhook_id, "removed": True})

    @api.get("/api/webhooks/<webhook_id>/deliveries")
    async def deliveries(webhook_id: str) -> Response:
        args = request.args
        found = await views(
            lambda db: (
                None
                if get_endpoint(db, webhook_id) is None
                else list_deliveries(db, webhook_id, limit=args.get("limit", 50), state=args.get("state") or None)
            )
        )
        return unknown(webhook_id) if found is None else json_response(found)

    @api.post("/api/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")
    async def redeliver(webhook_id: str, delivery_id: str) -> Response:
        found = await views(
            lambda db: None if get_endpoint(db, webhook_id) is None else get_delivery(db, webhook_id, delivery_id)
        )
        if found is None:
            return error_response(404, f"no delivery {delivery_id!r} to webhook {webhook_id!r}")
        requested = WebhookRedeliveryRequested(
            call_id=WEBHOOKS_STREAM, at=server.now(), webhook_id=webhook_id, delivery_id=delivery_id
        )
        position = await _append(server, requested)
        queued = f"{position}-{found['kind']}"
        return json_response({"queued": True, "delivery_id": queued, "redelivery_of": delivery_id}, 202)

    return api


async def _append(server: Server, event: WebhookRedeliveryRequested) -> int:
    """Append now (the new delivery's id is its position); another engine writing the same stream
    at the same moment is a conflict retried once."""
    await server.fresh.events()
    for attempt in range(3):
        try:
            return await trio.to_thread.run_sync(server.store.append, [event])
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
