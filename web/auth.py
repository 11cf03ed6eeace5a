"""Who may read the console and the API: holders of the API token (CONTRACT "Console and API").

Three ways in, checked in this order:

- ``Authorization: Bearer TOKEN`` — scripts, Prometheus (``authorization`` in its scrape config);
- a session cookie, set by an earlier request that carried a valid token;
- ``?token=TOKEN`` — for a browser (and WebSockets, which cannot send headers from a page): it
  works once and sets the HttpOnly, SameSite=Strict cookie, so later requests need neither.

Why the cookie is not the token: it is an HMAC of a fixed label under the token, so it proves
possession of the token without storing it in the browser, needs no server-side session state
(and no Quart ``SECRET_KEY``), and stops working when the token changes. Every comparison is
constant-time. The token and the cookie are never logged and never echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from enum import Enum

from quart import Response, after_this_request, jsonify, request
from quart.wrappers.base import BaseRequestWebsocket
from werkzeug.wrappers import Response as WerkzeugResponse

AnyResponse = Response | WerkzeugResponse

SESSION_COOKIE = "callbridge_session"
TOKEN_PARAMETER = "token"
_SESSION_LABEL = b"callbridge console session v1"
UNAUTHORIZED_MESSAGE = (
    "missing or invalid API token: send 'Authorization: Bearer TOKEN', or open the URL once with "
    "'?token=TOKEN' to get a session cookie (the token is CALLBRIDGE_API_TOKEN, or the one printed at "
    "first start and kept in the data folder's 'api-token' file)"
)


class Credential(Enum):
    """How a request proved it holds the token."""

    BEARER = "bearer"
    COOKIE = "cookie"
    QUERY = "query"


def session_value(token: str) -> str:
    """The session cookie's value for ``token`` (an HMAC: the cookie never holds the token)."""
    return hmac.new(token.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()


def _same(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def authenticate(
    token: str,
    *,
    authorization: str | None,
    cookie: str | None,
    query_token: str | None,
) -> Credential | None:
    """Which credential of a request (or WebSocket handshake) matches ``token``; None when none does.

    ``authorization`` is the header, ``cookie`` the :data:`SESSION_COOKIE` value, ``query_token``
    the ``?token=`` value. An empty configured token matches nothing: the API is closed, not open.
    """
    if not token:
        return None
    sent = bearer_token(authorization)
    if sent is not None and _same(sent, token):
        return Credential.BEARER
    if cookie and _same(cookie, session_value(token)):
        return Credential.COOKIE
    if query_token and _same(query_token, token):
        return Credential.QUERY
    return None


def unauthorized() -> Response:
    """401 with a JSON body saying how to authenticate."""
    response = jsonify({"error": UNAUTHORIZED_MESSAGE})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
    return response


def set_session_cookie(response: AnyResponse, token: str) -> AnyResponse:
    """The console session: HttpOnly, SameSite=Strict, an HMAC of the token (never the token)."""
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
    )
    return response


def credential_of(token: str, incoming: BaseRequestWebsocket) -> Credential | None:
    """What authenticates this HTTP request or WebSocket handshake, if anything."""
    return authenticate(
        token,
        authorization=incoming.headers.get("Authorization"),
        cookie=incoming.cookies.get(SESSION_COOKIE),
        query_token=incoming.args.get(TOKEN_PARAMETER),
    )


def require_token(get_token: Callable[[], str]) -> Callable[[], Awaitable[Response | None]]:
    """A ``before_request`` hook: 401 unless the request holds the token; a valid ``?token=``
    also sets the session cookie on the response. ``get_token`` is read per request (settings
    may be replaced while the server runs)."""

    async def check() -> Response | None:
        token = get_token()
        credential = credential_of(token, request)
        if credential is None:
            return unauthorized()
        if credential is Credential.QUERY:

            @after_this_request
            async def set_cookie(response: AnyResponse) -> AnyResponse:
                return set_session_cookie(response, token)

        return None

    return check
