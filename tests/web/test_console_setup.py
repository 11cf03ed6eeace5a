"""The Setup check of the realtime model does a real handshake with the key calls use: a wrong
key, an unreachable endpoint or a good one, against the simulated model (which can demand one
key) — through ``GET /api/setup`` of a server running with ``--model openai``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import httpx2
import trio
from test_console_api import BEARER, closed_port

from callbridge.adapters.sim.fake_openai import serve_fake_openai
from callbridge.server import Server
from callbridge.web.settings import load_settings

GOOD_KEY = "sk-good-key-0123456789"
WRONG_KEY = "sk-wrong-key-0123456789"


@asynccontextmanager
async def openai_server(tmp_path: Path, key: str, realtime_url: str) -> AsyncIterator[httpx2.AsyncClient]:
    """A server with ``--model openai`` whose realtime endpoint is ``realtime_url``."""
    env = {
        "CALLBRIDGE_STORE": str(tmp_path / "callbridge.db"),
        "CALLBRIDGE_API_TOKEN": "test-token",
        "OPENAI_API_KEY": key,
        "OPENAI_REALTIME_URL": realtime_url,
    }
    server = Server(load_settings(env, port=0, model="openai"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(server.run)
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=BEARER, timeout=30) as http:
            yield http
        server.shutdown.set()
        await server.stopped.wait()


async def model_check_of(http: httpx2.AsyncClient) -> dict:
    response = await http.get("/api/setup")
    assert response.status_code == 200, response.text
    (found,) = [check for check in response.json()["checks"] if check["id"] == "openai"]
    assert GOOD_KEY not in response.text and WRONG_KEY not in response.text
    return dict(found)


async def test_the_model_check_opens_a_realtime_session_with_the_key(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        fake = await nursery.start(partial(serve_fake_openai, "127.0.0.1", 0, api_key=GOOD_KEY))
        async with openai_server(tmp_path / "wrong", WRONG_KEY, fake.url) as http:
            wrong = await model_check_of(http)
        async with openai_server(tmp_path / "good", GOOD_KEY, fake.url) as http:
            good = await model_check_of(http)
        nursery.cancel_scope.cancel()

    assert wrong["ok"] is False
    assert "rejected" in wrong["detail"] and "HTTP 401" in wrong["detail"]
    assert good["ok"] is True and "accepted OPENAI_API_KEY" in good["detail"]
    assert len(fake.sessions) == 1  # the good handshake opened one session; the wrong key none


async def test_an_unreachable_realtime_endpoint_fails_the_model_check(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{await closed_port()}/v1/realtime?model=gpt-realtime"
    async with openai_server(tmp_path, GOOD_KEY, url) as http:
        unreachable = await model_check_of(http)
    assert unreachable["ok"] is False
    assert "could not connect" in unreachable["detail"] and "OPENAI_REALTIME_URL" in unreachable["detail"]
