"""``callbridge serve``: logging, signals, the garbage collector's timing, one engine or several workers on
one port, and the truthful first lines (where the console is, where the token is, why a port is refused).

Apart from ``cli.py`` (the parser and the small commands) because serving is the one command with a life
cycle of its own.
"""

from __future__ import annotations

import argparse
import errno
import faulthandler
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from callbridge.engine.agent import Agent
    from callbridge.engine.context import Telephony
    from callbridge.web.settings import Settings
    from callbridge.web.worker_board import WorkerTurns

log = logging.getLogger("callbridge")


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    # twilio.http_client logs every REST request with its headers at INFO (12 lines per Setup load)
    for noisy in ("hypercorn.access", "httpx2", "httpcore2", "trio-websocket", "twilio.http_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


PRIVATE_UMASK = 0o077
"""Files the commands that write the data folder create (store, views, token) are 0600, folders 0700."""
STORE_HINT = (
    "Check CALLBRIDGE_STORE (a SQLite path, sqlite:///path or postgresql://user@host:5432/db) "
    "and that the database is running."
)


async def _until_signal(stop: Callable[[], None], drain: Callable[[], Awaitable[None]]) -> None:
    """SIGINT/SIGTERM: stop now (live calls ended cleanly); SIGUSR1: drain (live calls finish first)."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR1) as signals:
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    log.info("received SIGUSR1: draining for a deploy")
                    nursery.start_soon(drain)
                    continue
                log.info(
                    "received %s: stopping (live calls are ended cleanly, events flushed)", signal.Signals(signum).name
                )
                stop()
                nursery.cancel_scope.cancel()
                return


GC_FULL_COLLECTION_EVERY_S = 300.0
GIL_SWITCH_INTERVAL_S = 0.0005
"""How long the trio thread may wait for the GIL before the thread holding it is made to let go
(Python's default: 5 ms). See :func:`_tune_for_latency`."""


def _tune_for_latency() -> None:
    """Two interpreter defaults cost the media path its latency.

    The garbage collector: Python's automatic full collections paused the server for 55 to 69 ms
    every ~1.7 s at 100 calls (benchmarks/bridge.py), the largest part of the media path's p99.
    Everything alive after start-up (modules, the app) is frozen out of collection, the oldest
    generation is collected on a timer instead of by allocation counts, and the young ones keep
    their defaults.

    The GIL: the event writer's thread (sealing and inserting a batch) and, in the process that
    folds them, the views' thread run Python for milliseconds at a time; a frame arriving then
    waits for the GIL up to the switch interval before its thread can even ask for it to be
    handed over. A trio loop waking every 2 ms beside a thread busy in 20 ms bursts was up to
    9.0 ms late at p99 with the default 5 ms, 4.3 ms with 0.5 ms. ``benchmarks/bridge.py``,
    alternated five times (2026-12-07): at 30 calls uplink p99 3.3 against 4.2 ms (means) and 0.712
    against 0.738 CPU-s per call-minute; at 100 calls 0.577 against 0.596."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1_000_000)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)


async def _collect_garbage_every(seconds: float) -> None:
    while True:
        await trio.sleep(seconds)
        gc.collect()


def cmd_serve(args: argparse.Namespace) -> int:
    from callbridge.engine.apology import Apology, ApologyError
    from callbridge.engine.store import StoreOpenError
    from callbridge.server import Server
    from callbridge.web.connection_gate import ConnectionLimits, raise_fd_limit
    from callbridge.web.settings import SettingsError, data_dir_warning, load_settings
    from callbridge.workers import default_workers

    os.umask(PRIVATE_UMASK)
    # a crash below Python (a segfault in a C library) prints every thread's Python stack on stderr,
    # where the log goes, instead of a process that is simply gone
    faulthandler.enable(all_threads=True)
    try:
        settings = load_settings(host=args.host, port=args.port, store=args.store, model=args.model, agent=args.agent)
    except SettingsError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 2
    agent, telephony = _agent_and_telephony(settings)
    if agent is None:
        return 2
    try:
        apology = Apology.from_setting(settings.apology)
    except ApologyError as error:
        print(f"callbridge: CALLBRIDGE_APOLOGY: {error}", file=sys.stderr)
        return 2
    before, after = raise_fd_limit()
    raised = f" (soft limit raised from {before})" if after != before else ""
    log.info("open files limit %s%s: %s", after, raised, ConnectionLimits.from_process().describe())
    warning = data_dir_warning(settings.data_dir)
    if warning:
        log.warning("%s", warning)
    worker = _worker_place(args)
    early_stop: list[int] = []
    if worker is not None:  # the parent may pass a stop on before trio listens for it: remember it
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, _frame: early_stop.append(signum))
    if worker is None:
        try:
            workers = args.workers if args.workers is not None else default_workers()
        except ValueError as error:
            print(f"callbridge: {error}", file=sys.stderr)
            return 2
        if workers < 1:
            print("callbridge: --workers must be at least 1", file=sys.stderr)
            return 2
        if workers > 1:
            return _serve_with_workers(settings, workers)
    turns = _worker_turns(args, worker)
    try:
        server = Server(
            settings,
            agent=agent,
            telephony=telephony,
            apology=apology,
            fold_views=worker is None or worker == 0,
            turns=turns,
        )
    except SettingsError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 2
    except (StoreOpenError, ValueError) as error:
        print(f"callbridge: {error}\n{STORE_HINT}", file=sys.stderr)
        return 2
    _tune_for_latency()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_until_signal, server.shutdown.set, server.drain)
            nursery.start_soon(_collect_garbage_every, GC_FULL_COLLECTION_EVERY_S)
            port = await nursery.start(server.run)
            if worker is None:
                _announce(settings, port)
            else:
                log.info("worker %d listening (engine %s)", worker, server.identity.engine_id)
                if args.ready_fd is not None:
                    os.write(args.ready_fd, b".")  # tell the parent this worker takes calls
                    os.close(args.ready_fd)
                if early_stop:
                    server.shutdown.set()
            await server.shutdown.wait()
            with trio.move_on_after(9.5):  # docs/contract.md: exit within 10 s of SIGINT/SIGTERM
                await server.stopped.wait()
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except (OSError, BaseExceptionGroup) as error:
        refused = _bind_error(error)
        if refused is None:
            raise
        print(f"callbridge: {_bind_message(refused, settings.host, settings.port)}", file=sys.stderr)
        server.store.close()
        return 2
    return server.finish()  # the truth about the events, and the exit status


def _worker_place(args: argparse.Namespace) -> int | None:
    """This process's index when the parent started it as a worker (``--worker I/N``), else None."""
    if args.worker is None:
        return None
    return int(str(args.worker).partition("/")[0])


def _worker_turns(args: argparse.Namespace, worker: int | None) -> WorkerTurns | None:
    """A worker's listening socket and its turn on the board, both inherited from its parent
    (``web.worker_board``); None when this process is not a worker."""
    if worker is None or args.listen_fd is None or args.board_fd is None:
        return None
    from callbridge.web.worker_board import WorkerBoard, WorkerTurns
    from callbridge.workers import worker_fill

    count = int(str(args.worker).partition("/")[2])
    board = WorkerBoard(args.board_fd, count)
    return WorkerTurns(board, worker, worker_fill(), socket.socket(fileno=args.listen_fd))


def _serve_with_workers(settings: Any, workers: int) -> int:
    """The parent of ``serve --workers N``: bind once, start the workers, wait for them."""
    from callbridge.engine.engine_id import ENGINE_ID_ENV, EngineIdError, claim_engine_id
    from callbridge.workers import bind, run_workers, worker_fill

    try:
        worker_fill()
    except ValueError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 2

    problem = prepare_shared_files(settings)
    if problem is not None:
        print(f"callbridge: {problem}", file=sys.stderr)
        return 2
    try:
        identity = claim_engine_id(settings.data_dir, os.environ.get(ENGINE_ID_ENV))
    except EngineIdError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 2
    base = identity.engine_id
    identity.release()
    try:
        sock = bind(settings.host, settings.port)
    except OSError as error:
        refused = _bind_error(error)
        if refused is None:
            raise
        print(f"callbridge: {_bind_message(refused, settings.host, settings.port)}", file=sys.stderr)
        return 2
    port = sock.getsockname()[1]
    if settings.public_url_from_bind and settings.port != port:
        settings = replace(settings, public_url=f"http://{settings.host}:{port}")
    return run_workers(sys.argv[1:], workers, sock, base, announce=lambda: _announce(settings, port))


def prepare_shared_files(settings: Settings) -> str | None:
    """Create the store (tables, keys, WAL mode) and the views file before the workers start, so they
    open files that exist: N processes creating one store at once collide — SQLite answers "database
    is locked" at once to all but one switching a new file to WAL (a fresh ``serve --workers 2``
    stopped so), PostgreSQL's concurrent ``CREATE TABLE IF NOT EXISTS`` can fail on its catalogue.
    Returns what is wrong (a line for stderr), or None."""
    from callbridge.engine.redaction import Redaction
    from callbridge.engine.store import StoreOpenError, open_store_with_keys
    from callbridge.projections.views_db import open_views, views_path

    try:  # the rules in force are the workers' to check and report: nothing is read here
        open_store_with_keys(settings.store_url, redaction=Redaction()).close()
    except (StoreOpenError, ValueError) as error:
        return f"{error}\n{STORE_HINT}"
    path = views_path(settings.data_dir)
    try:
        open_views(path).close()
    except sqlite3.Error as error:
        return f"cannot open the views {path}: {error}; check that this user can write the file and its folder"
    return None


def _agent_and_telephony(settings: Settings) -> tuple[Agent | None, Telephony | None]:
    """The agent (``--agent``/``CALLBRIDGE_AGENT``; the built-in one without) and Twilio's REST API
    for hang-ups and transfers (None without credentials). A bad agent file is one line on stderr
    naming the key, and (None, None)."""
    from callbridge.adapters.twilio.rest import TwilioCalls
    from callbridge.engine.agent import DEFAULT_AGENT, AgentError, load_agent
    from callbridge.engine.default_tools import default_registry
    from callbridge.engine.http_tools import HttpToolError, agent_registry

    agent = DEFAULT_AGENT
    if settings.agent_path:
        try:
            agent = load_agent(settings.agent_path)
        except AgentError as error:
            print(f"callbridge: {error}", file=sys.stderr)
            return None, None
        try:  # its tools can be offered here: their secrets are set, the server has its server_tools
            simulated = settings.model == "sim"
            agent_registry(default_registry(weather_url=settings.weather_url, simulated=simulated), agent)
        except HttpToolError as error:
            print(f"callbridge: {settings.agent_path}: {error}", file=sys.stderr)
            return None, None
        log.info("agent: %s", settings.agent_path)
    telephony: Telephony | None = None
    if settings.twilio_credentials:
        assert settings.twilio_account_sid and settings.twilio_auth_token
        telephony = TwilioCalls(
            settings.twilio_account_sid, settings.twilio_auth_token, base_url=settings.twilio_api_base_url
        )
    return agent, telephony


def _bind_error(error: BaseException) -> OSError | None:
    """The listening socket's failure inside ``error`` (possibly grouped by trio), else None."""
    if isinstance(error, OSError):
        return error if error.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL) else None
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _bind_error(inner)
            if found is not None:
                return found
    return None


def _bind_message(error: OSError, host: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {host}:{port}: the port is already in use (another callbridge?). "
            "Choose another with --port N or PORT=N."
        )
    if error.errno == errno.EACCES:
        return f"cannot listen on {host}:{port}: permission denied (ports below 1024 need privileges); use --port N."
    return f"cannot listen on {host}:{port}: {host} is not an address of this machine; use --host or HOST."


def _console_url(host: str, port: int) -> str:
    """Where a browser on this machine opens the console."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it (``data/api-token``)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _announce(settings: object, port: int) -> None:
    from callbridge.web.settings import Settings

    assert isinstance(settings, Settings)
    if settings.model == "sim":
        banner = "SIMULATED realtime model (no OPENAI_API_KEY set): calls talk to callbridge's local fake"
        log.warning("=" * len(banner))
        log.warning(banner)
        log.warning("=" * len(banner))
    else:
        log.info("realtime model: %s", settings.openai_realtime_url)
    log.info("listening on http://%s:%d  (public URL %s)", settings.host, port, settings.public_url)
    log.info("Twilio voice webhook: %s/twiml", settings.public_url)
    if not settings.twilio_auth_token:
        log.warning("TWILIO_AUTH_TOKEN is not set: Twilio requests are NOT signature-checked")
    if settings.api_token_from_env:
        where = "the CALLBRIDGE_API_TOKEN environment variable"
    else:
        token_file = _shown_path(settings.data_dir / "api-token")
        where = f"{token_file}  (TOKEN=$(cat {token_file}))"
    lines = [f"  Console:   {_console_url(settings.host, port)}", f"  API token: {where}"]
    if settings.api_token_generated:
        lines.append(f"  New token (shown once): {settings.api_token}")
    print("\n" + "\n".join(lines) + "\n", flush=True)
