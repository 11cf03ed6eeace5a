"""POSTing one webhook message to an operator's endpoint, and saying plainly how it went.

Why not ``adapters.http.Httpx2Client.post_json`` (the tools' door): a tool's answer is its result, so
an answer that is too large or not JSON is an error there. A webhook's answer means nothing but its
status: the body is ignored — read up to :data:`MAX_ANSWER_BYTES` so the connection can be reused,
then dropped — and only a 2xx counts as delivered. Every outcome is an :class:`Answer`, never an
exception: a redirect (never followed: it could point anywhere), a timeout (the whole exchange within
``timeout_s``), a refused connection, a 4xx/5xx.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import httpx2
import trio

from callbridge.adapters.http import describe_error, new_async_client

MAX_ANSWER_BYTES = 64 * 1024
"""An endpoint's answer is read at most this far (and ignored)."""
TIMEOUT_S = 10.0


class Answer(NamedTuple):
    ok: bool
    """The endpoint answered 2xx."""
    status: int | None
    """Its HTTP status (None: no answer at all)."""
    latency_ms: float
    error: str
    """Why it is not delivered (empty when ``ok``)."""


def new_client() -> httpx2.AsyncClient:
    """A client for webhooks: connections kept alive per endpoint, redirects never followed."""
    return new_async_client(follow_redirects=False, headers={"user-agent": "callbridge-webhooks"})


async def post_message(
    client: httpx2.AsyncClient, url: str, body: bytes, headers: dict[str, str], *, timeout_s: float = TIMEOUT_S
) -> Answer:
    """POST ``body`` (JSON) to ``url`` with ``headers``; how it went."""
    sent = {"content-type": "application/json", **headers}
    started = time.perf_counter()

    def took() -> float:
        return round((time.perf_counter() - started) * 1000, 1)

    try:
        with trio.fail_after(timeout_s):
            async with client.stream(
                "POST", url, content=body, headers=sent, timeout=timeout_s, follow_redirects=False
            ) as response:
                status = response.status_code
                read = 0
                async for piece in response.aiter_bytes():
                    read += len(piece)
                    if read >= MAX_ANSWER_BYTES:
                        break
    except (trio.TooSlowError, httpx2.TimeoutException):
        return Answer(False, None, took(), f"no answer within {timeout_s:g} s")
    except httpx2.HTTPError as exc:
        return Answer(False, None, took(), describe_error(exc))
    except OSError as exc:
        return Answer(False, None, took(), describe_error(exc))
    if 200 <= status < 300:
        return Answer(True, status, took(), "")
    if 300 <= status < 400:
        where = response.headers.get("location", "?")
        return Answer(False, status, took(), f"HTTP {status} redirect to {where[:200]} (redirects are not followed)")
    return Answer(False, status, took(), f"HTTP {status}")
