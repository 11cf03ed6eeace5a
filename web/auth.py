"""Who may read the console and the API: holders of the API token (docs/contract.md, "Console and API").

Three ways in, checked in this order:

- ``Authorization: Bearer TOKEN`` — scripts, Prometheus (``authorization`` in its scrape config);
- a session cookie, set by an earlier request that carried a valid token;
- ``?token=TOKEN`` — for a browser (and WebSockets, which cannot send headers from a page): it
  works once and sets the HttpOnly, SameSite=Strict cookie, so later requests need neither.

The cookie is not the token: it is a session of :mod:`web.sessions` — an HMAC under the token
that expires (``Max-Age`` and, whatever the browser does, on the server) and that logout revokes.
A response that clears the session cookie revokes the session the request carried (the hook
:func:`install_sessions` adds), so whichever route signs out, the old cookie is dead even if it was
copied. The cookie is ``Secure`` when the request came over https, or through ``PUBLIC_URL``'s
host when ``PUBLIC_URL`` is https (a TLS proxy such as ngrok in front of plain http). Every
comparison is constant-time. The token and the cookie are never logged and never echoed in an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import Enum
from urllib.parse import urlsplit

import trio
from quart import Quart, Response, after_this_request, current_app, has_app_context, jsonify, request
from quart.wrappers.base import BaseRequestWebsocket
from werkzeug.wrappers import Response as WerkzeugResponse

from callbridge.adapters.http_security import bearer_token, same_secret
from callbridge.web.sessions import SessionKeeper

AnyResponse = Response | WerkzeugResponse

SESSION_COOKIE = "callbridge_session"
TOKEN_PARAMETER = "token"
_SESSIONS = "callbridge.sessions"
_PUBLIC_URL = "callbridge.public_url"
_STATELESS = SessionKeeper()
"""Checks signature and expiry only: for code running outside an app with :func:`install_sessions`."""
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


def authenticate(
    token: str,
    *,
    authorization: str | None,
    cookie: str | None,
    query_token: str | None,
    sessions: SessionKeeper | None = None,
) -> Credential | None:
    """Which credential of a request (or WebSocket handshake) matches ``token``; None when none does.

    ``authorization`` is the header, ``cookie`` the :data:`SESSION_COOKIE` value (checked by
    ``sessions``: signature, expiry, revocation), ``query_token`` the ``?token=`` value. An empty
    configured token matches nothing: the API is closed, not open.
    """
    if not token:
        return None
    sent = bearer_token(authorization)
    if sent is not None and same_secret(sent, token):
        return Credential.BEARER
    if cookie and (sessions or _STATELESS).valid(token, cookie):
        return Credential.COOKIE
    if query_token and same_secret(query_token, token):
        return Credential.QUERY
    return None


def unauthorized() -> Response:
    """401 with a JSON body saying how to authenticate."""
    response = jsonify({"error": UNAUTHORIZED_MESSAGE})
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
    return response


def install_sessions(app: Quart, sessions: SessionKeeper, public_url: Callable[[], str]) -> None:
    """Make ``sessions`` the app's console sessions, and revoke a session whenever a response
    clears the session cookie (logout)."""
    app.extensions[_SESSIONS] = sessions
    app.extensions[_PUBLIC_URL] = public_url

    @app.after_request
    async def revoke_cleared_session(response: AnyResponse) -> AnyResponse:
        sent = request.cookies.get(SESSION_COOKIE)
        if sent and _clears_session_cookie(response):
            token = current_app.config["CALLBRIDGE"].settings.api_token
            await trio.to_thread.run_sync(sessions.revoke, token, sent)
        return response


def _clears_session_cookie(response: AnyResponse) -> bool:
    prefix = f"{SESSION_COOKIE}="
    for header in response.headers.getlist("Set-Cookie"):
        if header.startswith(prefix) and (header.startswith(prefix + ";") or "Max-Age=0" in header):
            return True
    return False


def current_sessions() -> SessionKeeper:
    """The app's console sessions (signature and expiry checks only outside such an app)."""
    if has_app_context():
        found = current_app.extensions.get(_SESSIONS)
        if isinstance(found, SessionKeeper):
            return found
    return _STATELESS


def _secure_cookie() -> bool:
    """https to us, or through PUBLIC_URL's host when PUBLIC_URL is https (TLS ends at a proxy)."""
    if request.scheme == "https":
        return True
    public_url = current_app.extensions.get(_PUBLIC_URL) if has_app_context() else None
    if public_url is None:
        return False
    public = urlsplit(public_url())
    try:
        host = urlsplit("//" + request.headers.get("Host", "")).hostname
    except ValueError:
        return False
    return public.scheme == "https" and host is not None and host == public.hostname


def set_session_cookie(response: AnyResponse, token: str) -> AnyResponse:
    """A new console session: HttpOnly, SameSite=Strict, expiring, Secure behind https (never the token)."""
    sessions = current_sessions()
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(token),
        max_age=sessions.max_age_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_secure_cookie(),
    )
    return response


def credential_of(token: str, incoming: BaseRequestWebsocket) -> Credential | None:
    """What authenticates this HTTP request or WebSocket handshake, if anything."""
    return authenticate(
        token,
        authorization=incoming.headers.get("Authorization"),
        cookie=incoming.cookies.get(SESSION_COOKIE),
        query_token=incoming.args.get(TOKEN_PARAMETER),
        sessions=current_sessions(),
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
