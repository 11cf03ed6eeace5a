"""The web console's pages: ``GET /`` (the console, or the sign-in page), ``/login`` and ``/logout``.

Why this shape:

- **One secret, one cookie.** Signing in is pasting the API token (docs/contract.md); a valid token gets
  the same HttpOnly, SameSite=Strict session cookie :mod:`web.auth` sets for ``?token=``, so the
  page's ``fetch`` calls and its ``/logs`` WebSocket carry it without any script ever seeing it.
- **The page holds no secret and no data.** The HTML is a static shell; everything it shows comes
  from the token-protected API as JSON and is written into the page as text, never as markup. The
  strict Content-Security-Policy (scripts, styles and connections from this origin only; no inline
  script) makes that a rule the browser enforces, not only a habit of the code.
- **No build step.** Plain ES modules and CSS under ``web/static``, served from here, so
  ``make run`` stays two commands on a fresh machine.
- ``/`` without a credential answers the sign-in page with status 401 (docs/contract.md: without the
  token, 401), so a script probing ``/`` learns it needs the token, and a person sees the form.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Blueprint, Response, redirect, render_template, request

from callbridge.web.auth import (
    SESSION_COOKIE,
    TOKEN_PARAMETER,
    AnyResponse,
    Credential,
    authenticate,
    credential_of,
    set_session_cookie,
)

if TYPE_CHECKING:
    from callbridge.server import Server

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""No inline script or style, nothing from another origin (everything the console uses is served here)."""

BAD_TOKEN_MESSAGE = "That is not the API token. Check CALLBRIDGE_API_TOKEN or the data folder's 'api-token' file."


def _page_headers(response: AnyResponse) -> AnyResponse:
    """Headers of every console page: strict CSP, no caching (the page depends on the cookie)."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # own form posts then carry a real Origin (request_guard)
    response.headers["Cache-Control"] = "no-store"
    return response


def console_blueprint(server: Server) -> Blueprint:
    """The console's pages and static files over ``server`` (its settings hold the API token)."""
    # under /assets: the app's own default /static route would shadow a blueprint's /static
    console = Blueprint(
        "console",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/assets",
    )

    async def sign_in_page(error: str | None = None, status: int = 200) -> AnyResponse:
        body = await render_template("login.html", error=error)
        response = Response(body, status=status, content_type="text/html; charset=utf-8")
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="callbridge"'
        return _page_headers(response)

    @console.get("/")
    async def index() -> AnyResponse:
        token = server.settings.api_token
        credential = credential_of(token, request)
        if credential is None:
            return await sign_in_page(status=401)
        if TOKEN_PARAMETER in request.args:  # keep the token out of the address bar and history
            response = redirect("/", 303)
            return _page_headers(set_session_cookie(response, token) if credential is Credential.QUERY else response)
        body = await render_template("console.html")
        return _page_headers(Response(body, content_type="text/html; charset=utf-8"))

    @console.get("/favicon.ico")
    async def favicon() -> AnyResponse:
        return Response(b"", status=204)  # browsers ask on every page, even the API's JSON ones

    @console.get("/login")
    async def login_form() -> AnyResponse:
        return await sign_in_page()

    @console.post("/login")
    async def login() -> AnyResponse:
        form = await request.form
        sent = form.get("token", "").strip()
        token = server.settings.api_token
        if not sent or authenticate(token, authorization=None, cookie=None, query_token=sent) is None:
            return await sign_in_page(BAD_TOKEN_MESSAGE, status=401)
        return _page_headers(set_session_cookie(redirect("/", 303), token))

    @console.post("/logout")
    async def logout() -> AnyResponse:
        response = redirect("/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
        return _page_headers(response)

    return console
