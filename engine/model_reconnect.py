"""Keeping a model session open for the whole call: bounded reconnects, recorded.

The realtime socket can fail to open, drop, or be closed by the server (the 60-minute session
limit). ``keep_session`` opens it, lets the caller's code start and serve the session, and on a
network-level failure (``ModelLinkError``) records what happened, waits with bounded backoff — while
``offline`` keeps the call's other duties going — and tries again. A failure that retrying cannot
fix, or ``max_attempts`` failures in a row, raise ``ModelUnavailable``: the supervisor then ends
the call cleanly. Anything that is not a ``ModelLinkError`` is a bug and propagates.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from callbridge.engine.context import CallContext, ModelConnection, ModelLinkError
from callbridge.engine.events import ModelConnected, ModelConnectionFailed, ModelDisconnected


class ModelUnavailable(Exception):
    """Reconnects were exhausted: the call cannot go on without a model."""


def link_error_in(raised: BaseException) -> ModelLinkError:
    """The ModelLinkError behind ``raised`` (bare, or alone in nested exception groups, as a
    connection's own nursery may wrap it). Anything else is re-raised: it is a bug, not the network."""
    if isinstance(raised, ModelLinkError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        links, rest = raised.split(ModelLinkError)
        if rest is None and links is not None:
            leaf: BaseException = links
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            assert isinstance(leaf, ModelLinkError)
            return leaf
    raise raised


async def keep_session(
    ctx: CallContext,
    *,
    start: Callable[[ModelConnection], Awaitable[int]],
    serve: Callable[[ModelConnection], Awaitable[None]],
    offline: Callable[[float], Awaitable[None]],
    lost: Callable[[], None],
) -> None:
    """``start(conn)`` configures a new session and returns how many items it re-seeded;
    ``serve(conn)`` runs it until the call is over (then this returns) or the link fails;
    ``lost()`` is told when a session is gone; ``offline(delay)`` serves the wait before a retry."""
    policy = ctx.settings.reconnect
    attempt = 0
    failures = 0

    def record(event: Any) -> None:
        ctx.record(event)

    while True:
        connected = False
        try:
            async with ctx.settings.open_model() as conn:
                connected = True
                seeded = await start(conn)
                record(
                    ModelConnected(
                        call_id=ctx.call_id,
                        at=ctx.clock.now(),
                        url=ctx.settings.model_url,
                        attempt=attempt,
                        seeded_items=seeded,
                    )
                )
                failures = 0
                await serve(conn)
                return
        except (ModelLinkError, ExceptionGroup) as raised:
            error = link_error_in(raised)
            lost()
            if connected:
                record(
                    ModelDisconnected(
                        call_id=ctx.call_id, at=ctx.clock.now(), code=error.code, reason=error.reason, error=str(error)
                    )
                )
            failures += 1
            attempt += 1
            delay = None if failures > policy.max_attempts or not error.retryable else policy.delay(failures)
            if not connected or delay is None:
                record(
                    ModelConnectionFailed(
                        call_id=ctx.call_id, at=ctx.clock.now(), attempt=attempt - 1, error=str(error), retry_in_s=delay
                    )
                )
            if delay is None:
                raise ModelUnavailable(f"model unreachable after {failures} attempts: {error}") from error
            await offline(delay)
