"""A bridge with a fake Twilio beside it, for the call-control tests: the simulated model, the
server (with an agent, and Twilio's REST API when ``credentials``), the fake Twilio REST API that
places and carries calls, all on real sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import trio
from bridge_harness import Bridge, running_bridge

from callbridge.adapters.sim.fake_openai_script import Script
from callbridge.adapters.sim.fake_twilio_rest import FakeTwilioRest, serve_fake_twilio_rest
from callbridge.adapters.twilio.rest import TwilioCalls
from callbridge.engine.agent import Agent
from callbridge.engine.events import Event

ACCOUNT_SID = "AC" + "c0ffee" * 5 + "00"
AUTH_TOKEN = "phone-test-auth-token"
OUR_NUMBER = "+15005550001"
TOKEN_HEADERS = {"Authorization": "Bearer test-token"}


@dataclass
class PhoneBridge:
    bridge: Bridge
    twilio: FakeTwilioRest
    http: httpx2.AsyncClient

    @property
    def base_url(self) -> str:
        return self.bridge.base_url

    async def events(self, call_id: str) -> list[Event]:
        return await self.bridge.events(call_id)

    async def post(self, path: str, body: Any = None) -> httpx2.Response:
        return await self.http.post(path, json=body)


@asynccontextmanager
async def phone_bridge(
    tmp_path: Path,
    *,
    agent: Agent,
    script: Script | None = None,
    credentials: bool = True,
    env: dict[str, str] | None = None,
) -> AsyncIterator[PhoneBridge]:
    async with trio.open_nursery() as nursery:
        twilio: FakeTwilioRest = await nursery.start(
            partial(serve_fake_twilio_rest, "127.0.0.1", 0, fake=FakeTwilioRest(ACCOUNT_SID, AUTH_TOKEN))
        )
        twilio.add_number(OUR_NUMBER, friendly_name="Our line")
        settings_env = dict(env or {})
        telephony = None
        if credentials:
            settings_env |= {
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_API_BASE_URL": twilio.url,
            }
            telephony = TwilioCalls(ACCOUNT_SID, AUTH_TOKEN, base_url=twilio.url)
        async with (
            running_bridge(tmp_path, script=script, env=settings_env, agent=agent, telephony=telephony) as bridge,
            httpx2.AsyncClient(base_url=bridge.base_url, headers=TOKEN_HEADERS, timeout=30) as http,
        ):
            yield PhoneBridge(bridge=bridge, twilio=twilio, http=http)
        nursery.cancel_scope.cancel()


def of_type(events: list[Event], kind: type[Any]) -> list[Any]:
    return [event for event in events if isinstance(event, kind)]
