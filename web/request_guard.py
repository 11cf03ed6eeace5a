"""Cross-site requests are refused before any route runs: one hook for every HTTP request and
every WebSocket handshake of the Quart app (``create_app`` installs it).

Why it is needed: the console signs browsers in with a ``SameSite=Strict`` cookie, but "same
site" ignores ports and schemes, and a WebSocket handshake is never subject to CORS. A page on
another port of the same host could open ``/logs`` with the victim's cookie and send
``session.update``, and could ``POST`` a ``text/plain`` body (a "simple" request: no preflight)
to ``/api/session``. Both changed the default instructions of every future call.

The rules, in this order:

1. **Origin.** A WebSocket handshake, or a request with a state-changing method (anything but
   GET, HEAD, OPTIONS), that carries an ``Origin`` header must come from an allowed origin:
   ``PUBLIC_URL``'s, loopback (127.0.0.1, localhost, [::1]) on the port the server is bound to,
   or the request's own ``Host`` (same origin, e.g. the console opened at a LAN address).
   Otherwise 403. ``Origin: null`` is accepted only with ``Sec-Fetch-Site: same-origin`` (a header
   the browser sets and no page can forge): Chromium sends ``null`` for a page's own form posts
   when its ``Referrer-Policy`` is ``no-referrer``; from sandboxed frames, ``file://`` or another
   site it is refused. Requests
   without ``Origin`` pass this rule: browsers send it on every cross-origin POST and every
   WebSocket handshake, and programs (curl, Twilio, MCP clients) authenticate with a header a
   page cannot attach to someone else's browser (bearer token, ``X-Twilio-Signature``).
2. **JSON bodies.** A state-changing request under ``/api/`` that has a body must say
   ``Content-Type: application/json`` (or ``…+json``); otherwise 415. A form, multipart or
   ``text/plain`` body is exactly what a cross-site page can send without a preflight.

Both answers are JSON ``{"error": …}`` saying what to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from quart import Response, jsonify, request, websocket
from quart.wrappers.base import BaseRequestWebsocket

from callbridge.adapters.http_security import allowed_hosts_and_origins, normalize_origin

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_PREFIX = "/api/"


def same_origin(origin: str, scheme: str, host_header: str) -> bool:
    """Whether ``origin`` is the origin of a request to ``host_header`` over ``scheme``."""
    web_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    if not host_header:
        return False
    own = normalize_origin(f"{web_scheme}://{host_header}")
    return own is not None and own == normalize_origin(origin)


def origin_allowed(origin: str, *, public_url: str, port: int | None, scheme: str, host_header: str) -> bool:
    """Whether a browser page at ``origin`` may change state on this server (see the module doc)."""
    sent = normalize_origin(origin)
    if sent is None:
        return False
    _, origins = allowed_hosts_and_origins(public_url, port)
    if sent in {normalize_origin(allowed) for allowed in origins}:
        return True
    return same_origin(origin, scheme, host_header)


def is_json_content_type(content_type: str | None) -> bool:
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def _has_body(incoming: BaseRequestWebsocket) -> bool:
    length = incoming.headers.get("Content-Length")
    if length is not None:
        return length.strip() not in ("", "0")
    return "chunked" in incoming.headers.get("Transfer-Encoding", "").lower()


def _from_this_server(origin: str, incoming: BaseRequestWebsocket, *, public_url: str, port: int | None) -> bool:
    if origin.strip() == "null":
        return incoming.headers.get("Sec-Fetch-Site", "").strip().lower() == "same-origin"
    host_header = incoming.headers.get("Host", "")
    return origin_allowed(origin, public_url=public_url, port=port, scheme=incoming.scheme, host_header=host_header)


def _refused(status: int, message: str) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


def refusal(
    incoming: BaseRequestWebsocket, *, public_url: str, port: int | None, handshake: bool
) -> tuple[int, str] | None:
    """Why ``incoming`` must be refused (status and message), or None when it may go on."""
    changes_state = handshake or incoming.method.upper() not in SAFE_METHODS
    if not changes_state:
        return None
    origin = incoming.headers.get("Origin")
    if origin is not None and not _from_this_server(origin, incoming, public_url=public_url, port=port):
        return 403, (
            f"cross-origin request refused: Origin {origin[:200]!r} is not this server; open the console at "
            f"{public_url} (or set PUBLIC_URL to the address browsers use)"
        )
    if not handshake and incoming.path.startswith(JSON_PREFIX) and _has_body(incoming):
        content_type = incoming.headers.get("Content-Type")
        if not is_json_content_type(content_type):
            return 415, (
                f"the request body must be JSON sent with 'Content-Type: application/json' "
                f"(got {content_type[:100] if content_type else 'no Content-Type'!r})"
            )
    return None


def request_guard(
    public_url: Callable[[], str], port: Callable[[], int | None]
) -> tuple[Callable[[], Awaitable[Response | None]], Callable[[], Awaitable[Response | None]]]:
    """The ``before_request`` and ``before_websocket`` hooks; ``public_url`` and ``port`` are read
    per request (the port is known only once the server is bound)."""

    async def check_request() -> Response | None:
        found = refusal(request, public_url=public_url(), port=port(), handshake=False)
        return None if found is None else _refused(*found)

    async def check_websocket() -> Response | None:
        found = refusal(websocket, public_url=public_url(), port=port(), handshake=True)
        return None if found is None else _refused(*found)

    return check_request, check_websocket
