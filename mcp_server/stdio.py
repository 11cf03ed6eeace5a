"""``callbridge mcp``: the MCP server over stdio, for assistants such as Claude Desktop.

A separate process from ``callbridge serve``, sharing only the event store. It keeps views of its
own (``<data dir>/views-mcp.db`` unless ``--views`` says otherwise) so that two processes never
write one views file, and folds new events in before every answer (:class:`FollowingCallData`),
so calls in progress on the server are visible here as soon as they are stored.

stdout carries the protocol: everything else (logs, errors) goes to stderr.
"""

from __future__ import annotations

import logging
import sqlite3
import sys
from pathlib import Path

import trio

from callbridge.engine.redaction_record import honour_recorded_rules
from callbridge.engine.store import EventStore, StoreOpenError, open_existing_store
from callbridge.mcp_server.data import MCP_VIEWS_FILE, FollowingCallData
from callbridge.mcp_server.server import CallbridgeMCP
from callbridge.projections.runner import ProjectionRunner
from callbridge.projections.views_db import data_dir_for_store, open_views

logger = logging.getLogger(__name__)


def mcp_views_path(store_url: str, views: str | Path | None = None) -> Path:
    """``views`` when given, else ``views-mcp.db`` in the store's data folder."""
    return Path(views).expanduser() if views else data_dir_for_store(store_url) / MCP_VIEWS_FILE


def prepare_views(store: EventStore, views_path: Path) -> None:
    """Create (or upgrade) the views' tables, so an unusable views file is reported before serving."""
    db = open_views(views_path)
    try:
        ProjectionRunner(store, db).setup()
    finally:
        db.close()


async def serve_stdio(store: EventStore, views_path: Path) -> None:
    """Answer MCP requests on stdin/stdout until the client closes stdin.

    The views are set up first (an unusable views file fails here, before the protocol starts);
    the first query then waits for them to catch up with the log, so a client's initialize never
    times out behind the folding of a long log.
    """
    data = FollowingCallData(store, views_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(data.run)
        await CallbridgeMCP(data).run_stdio_async()
        nursery.cancel_scope.cancel()


def mcp_cli(store_url: str, views: str | None = None) -> int:
    """Run ``callbridge mcp``; returns the exit status."""
    views_path = mcp_views_path(store_url, views)
    try:
        store = open_existing_store(store_url)
    except (StoreOpenError, ValueError) as exc:
        print(f"callbridge mcp: {exc}", file=sys.stderr)
        return 2
    try:
        rules = honour_recorded_rules(store)  # the server's CALLBRIDGE_REDACT, whatever this process was given
    except Exception as exc:
        store.close()
        print(f"callbridge mcp: cannot read the store's settings: {exc}", file=sys.stderr)
        return 2
    if rules:
        logger.info("masking %s in everything shown", ", ".join(rules))
    logger.info("MCP server on stdio over %s (views %s)", store.description, views_path)
    try:
        prepare_views(store, views_path)
    except (sqlite3.Error, OSError) as exc:
        store.close()
        print(f"callbridge mcp: cannot use the views database {views_path}: {exc}", file=sys.stderr)
        return 1
    try:
        trio.run(serve_stdio, store, views_path)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
    return 0
