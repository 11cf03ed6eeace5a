"""Console sessions against a real running server: the cookie expires on the server, sign-out
revokes it for good (across a restart), it is ``Secure`` behind an https ``PUBLIC_URL``, and the
data folder that holds the token is private from its first byte."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import httpx2
from bridge_harness import Bridge, running_bridge

from callbridge.web.auth import SESSION_COOKIE
from callbridge.web.sessions import SESSION_MAX_AGE_S, SessionKeeper
from callbridge.web.settings import load_settings

TOKEN = "test-token"  # what running_bridge configures


async def sign_in(bridge: Bridge) -> tuple[str, str]:
    """Sign in with ?token= as a browser does; the session cookie's value and its Set-Cookie header."""
    async with httpx2.AsyncClient(base_url=bridge.base_url) as browser:
        response = await browser.get("/", params={"token": TOKEN})
        assert response.status_code == 303
        return browser.cookies[SESSION_COOKIE], response.headers["set-cookie"]


async def status_with(bridge: Bridge, cookie: str, path: str = "/api/conversations") -> int:
    async with httpx2.AsyncClient(base_url=bridge.base_url, cookies={SESSION_COOKIE: cookie}) as browser:
        return (await browser.get(path)).status_code


async def test_a_session_expires_on_the_server_whatever_the_browser_keeps(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        cookie, set_cookie = await sign_in(bridge)
        assert f"Max-Age={SESSION_MAX_AGE_S}" in set_cookie
        assert await status_with(bridge, cookie) == 200
        # the same token's session, issued just over the lifetime ago (a cookie copied long ago)
        old = SessionKeeper(clock=lambda: time.time() - SESSION_MAX_AGE_S - 1).issue(TOKEN)
        assert await status_with(bridge, old) == 401
        assert await status_with(bridge, SessionKeeper(clock=time.time).issue("another-token")) == 401


async def test_sign_out_revokes_the_session_even_for_a_copy_and_after_a_restart(tmp_path: Path) -> None:
    async with running_bridge(tmp_path) as bridge:
        cookie, _ = await sign_in(bridge)
        kept, _ = await sign_in(bridge)  # another browser's session stays valid
        async with httpx2.AsyncClient(base_url=bridge.base_url, cookies={SESSION_COOKIE: cookie}) as browser:
            signed_out = await browser.post("/logout")
        assert signed_out.status_code == 303
        assert await status_with(bridge, cookie) == 401  # the copy no longer works
        assert await status_with(bridge, kept) == 200
    revoked = tmp_path / "revoked-sessions"
    assert stat.S_IMODE(revoked.stat().st_mode) == 0o600
    assert TOKEN not in revoked.read_text() and cookie not in revoked.read_text()
    async with running_bridge(tmp_path) as restarted:
        assert await status_with(restarted, cookie) == 401
        assert await status_with(restarted, kept) == 200


async def test_the_cookie_is_secure_through_an_https_public_url(tmp_path: Path) -> None:
    async with running_bridge(tmp_path, env={"PUBLIC_URL": "https://callbridge.example"}) as bridge:
        async with httpx2.AsyncClient(base_url=bridge.base_url) as http:
            proxied = await http.get("/", params={"token": TOKEN}, headers={"Host": "callbridge.example"})
            local = await http.get("/", params={"token": TOKEN})
    assert "Secure" in proxied.headers["set-cookie"]
    assert "Secure" not in local.headers["set-cookie"]  # http://127.0.0.1 directly: a Secure cookie would be lost


def test_the_data_folder_and_the_token_are_private_from_the_start(tmp_path: Path) -> None:
    old_umask = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        settings = load_settings({"CALLBRIDGE_STORE": str(tmp_path / "data" / "callbridge.db")}, port=0)
    finally:
        os.umask(old_umask)
    assert settings.api_token_generated
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    token_file = tmp_path / "data" / "api-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token_file.read_text().strip() == settings.api_token
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["api-token"]  # no temporary file left
    again = load_settings({"CALLBRIDGE_STORE": str(tmp_path / "data" / "callbridge.db")}, port=0)
    assert (again.api_token, again.api_token_generated) == (settings.api_token, False)
