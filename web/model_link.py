"""The realtime client seen through the engine's ``ModelConnection`` protocol.

The engine knows one failure type for the model socket, ``ModelLinkError``; this adapter turns the
client's connect and close errors into it, so the model task's reconnect logic never has to know
which socket library is underneath.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from callbridge.adapters.openai.client import RealtimeConnection, open_realtime
from callbridge.adapters.openai.errors import RealtimeConnectError, RealtimeConnectionClosed
from callbridge.engine.context import ModelLinkError


class ModelLink:
    def __init__(self, conn: RealtimeConnection) -> None:
        self._conn = conn

    async def send_raw(self, text: str) -> None:
        try:
            await self._conn.send_raw(text)
        except RealtimeConnectionClosed as closed:
            raise ModelLinkError(f"model socket closed: {closed}", closed.code, closed.reason) from None

    async def receive_raw(self) -> str:
        try:
            return await self._conn.receive_raw()
        except RealtimeConnectionClosed as closed:
            raise ModelLinkError(f"model socket closed: {closed}", closed.code, closed.reason) from None


@asynccontextmanager
async def realtime_opener(url: str, api_key: str | None) -> AsyncIterator[ModelLink]:
    try:
        async with open_realtime(url, api_key) as conn:
            yield ModelLink(conn)
    except RealtimeConnectError as error:
        raise ModelLinkError(str(error), retryable=error.retryable) from None
    except RealtimeConnectionClosed as closed:
        raise ModelLinkError(f"model socket closed: {closed}", closed.code, closed.reason) from None
