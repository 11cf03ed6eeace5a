"""HTTP for tools: the one door their handlers have to the network.

A handler fetches JSON through an ``HttpClient`` it is given (``engine.tools.ToolContext.http``),
never through a library directly, so tests swap in fakes or point the real client at a local server,
and every failure arrives as one ``HttpError`` whose message is safe to show the model.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import httpx2
import trio

from callbridge.adapters.tls import http_tls_context


def new_async_client(**options: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` verifying with the process's one context (``adapters.tls``): the
    one way this package makes a client, and a cheap one (~0.1 ms instead of ~20 ms)."""
    return httpx2.AsyncClient(verify=http_tls_context(), **options)


class HttpError(Exception):
    """A GET through an ``HttpClient`` failed; the message is safe to show to the model."""


class HttpUnreachable(HttpError):
    """No HTTP answer at all: DNS, refused connection, reset, no network."""


class HttpTimeout(HttpUnreachable):
    """The server did not answer within the request's timeout."""


class HttpStatusError(HttpError):
    """The server answered with a 4xx/5xx status. ``body`` is the start of its answer."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


class HttpBadResponse(HttpError):
    """The server answered 2xx but the body is not JSON."""


class HttpTooLarge(HttpError):
    """The answer was larger than the caller allows."""


class HttpRedirected(HttpError):
    """The server answered with a redirect: never followed (it could point anywhere, a private
    address included)."""


class HttpClient(Protocol):
    """What a handler may do on the network: fetch JSON, post JSON. Raises only ``HttpError``s."""

    async def get_json(self, url: str, params: dict[str, str], timeout_s: float) -> Any: ...

    async def post_json(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, max_bytes: int
    ) -> tuple[int, bytes]:
        """POST ``body`` (JSON); returns the status and at most ``max_bytes`` of the answer (more is
        ``HttpTooLarge``); a 3xx is ``HttpRedirected``, a 4xx/5xx ``HttpStatusError``."""
        ...


class Httpx2Client:
    """``HttpClient`` over ``httpx2.AsyncClient`` (mcp's httpx fork; runs natively under trio).

    Without a ``client`` each request opens and closes its own connection pool: tool calls are
    rare, and it leaves no pool for anyone to close. Pass a client to share one; its owner closes it.
    """

    def __init__(self, client: httpx2.AsyncClient | None = None) -> None:
        self._client = client

    async def get_json(self, url: str, params: dict[str, str], timeout_s: float) -> Any:
        if self._client is not None:
            return await self._get_json(self._client, url, params, timeout_s)
        async with new_async_client() as client:
            return await self._get_json(client, url, params, timeout_s)

    async def post_json(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, max_bytes: int
    ) -> tuple[int, bytes]:
        if self._client is not None:
            return await self._post(self._client, url, body, headers, timeout_s, max_bytes)
        async with new_async_client() as client:
            return await self._post(client, url, body, headers, timeout_s, max_bytes)

    @staticmethod
    async def _post(
        client: httpx2.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout_s: float, max_bytes: int
    ) -> tuple[int, bytes]:
        sent = {"content-type": "application/json", "user-agent": "callbridge", **headers}
        try:
            with trio.fail_after(timeout_s):
                async with client.stream(
                    "POST", url, content=body, headers=sent, timeout=timeout_s, follow_redirects=False
                ) as response:
                    if 300 <= response.status_code < 400:
                        where = response.headers.get("location", "?")
                        raise HttpRedirected(f"HTTP {response.status_code} redirect to {where} (not followed)")
                    data = bytearray()
                    async for piece in response.aiter_bytes():
                        data += piece
                        if len(data) > max_bytes:
                            raise HttpTooLarge(f"answer larger than {max_bytes} bytes")
        except trio.TooSlowError as exc:
            raise HttpTimeout(f"no answer within {timeout_s:g} s") from exc
        except httpx2.TimeoutException as exc:
            raise HttpTimeout(f"no answer within {timeout_s:g} s") from exc
        except httpx2.HTTPError as exc:
            raise HttpUnreachable(describe_error(exc)) from exc
        if response.status_code >= 400:
            raise HttpStatusError(response.status_code, bytes(data[:500]).decode("utf-8", "replace"))
        return response.status_code, bytes(data)

    @staticmethod
    async def _get_json(client: httpx2.AsyncClient, url: str, params: dict[str, str], timeout_s: float) -> Any:
        try:
            response = await client.get(url, params=params, timeout=timeout_s)
        except httpx2.TimeoutException as exc:
            raise HttpTimeout(f"no answer within {timeout_s:g} s") from exc
        except httpx2.HTTPError as exc:  # connection refused, DNS, reset, bad URL, protocol errors
            raise HttpUnreachable(describe_error(exc)) from exc
        if response.status_code >= 400:
            raise HttpStatusError(response.status_code, response.text[:500])
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise HttpBadResponse(f"answer is not JSON ({exc})") from exc


def describe_error(exc: BaseException) -> str:
    """An exception as one line: its type and message."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
