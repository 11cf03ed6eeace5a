"""``callbridge`` — the command line: serve, simulate, call, replay, erase, projections, mcp, test, fake-openai.

The commands, their flags and the environment they read are the outside contract
(``docs/contract.md`` in the repository; the README shows them in use).
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from callbridge.engine.agent import Agent
    from callbridge.engine.context import Telephony
    from callbridge.web.settings import Settings

log = logging.getLogger("callbridge")


def _configure_logging(verbose: bool = False) -> None:
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


def _tune_gc_for_latency() -> None:
    """Python's automatic full collections paused the server for 55 to 69 ms every ~1.7 s at 100
    calls (benchmarks/bridge.py), the largest part of the media path's p99. Everything alive after
    start-up (modules, the app) is frozen out of collection, the oldest generation is collected on
    a timer instead of by allocation counts, and the young ones keep their defaults."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 1_000_000)


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
    listen_socket = socket.socket(fileno=args.listen_fd) if args.listen_fd is not None else None
    try:
        server = Server(
            settings,
            agent=agent,
            telephony=telephony,
            apology=apology,
            fold_views=worker is None or worker == 0,
            listen_socket=listen_socket,
        )
    except SettingsError as error:
        print(f"callbridge: {error}", file=sys.stderr)
        return 2
    except (StoreOpenError, ValueError) as error:
        print(
            f"callbridge: {error}\n"
            "Check CALLBRIDGE_STORE (a SQLite path, sqlite:///path or postgresql://user@host:5432/db) "
            "and that the database is running.",
            file=sys.stderr,
        )
        return 2
    _tune_gc_for_latency()

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


def _serve_with_workers(settings: Any, workers: int) -> int:
    """The parent of ``serve --workers N``: bind once, start the workers, wait for them."""
    from callbridge.engine.engine_id import ENGINE_ID_ENV, EngineIdError, claim_engine_id
    from callbridge.workers import bind, run_workers

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


def cmd_simulate(args: argparse.Namespace) -> int:
    from callbridge.adapters.sim.caller import format_report, simulate_calls

    token = os.environ.get("TWILIO_AUTH_TOKEN") or None
    base = args.url or f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8081')}"

    def progress(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        reports = trio.run(
            lambda: simulate_calls(
                base,
                calls=args.calls,
                seconds=args.seconds,
                auth_token=token,
                public_url=os.environ.get("PUBLIC_URL") or None,
                progress=progress,
                barge_in=args.barge_in,
            )
        )
    except OSError as error:
        print(f"callbridge simulate: cannot reach {base}: {error}. Is `callbridge serve` running?", file=sys.stderr)
        return 1
    print(format_report(reports))
    return 0 if all(not report.errors for report in reports) else 1


def cmd_call(args: argparse.Namespace) -> int:
    from callbridge.call_command import place_call_command

    return place_call_command(args, _store_url(args))


def cmd_fake_openai(args: argparse.Namespace) -> int:
    from callbridge.adapters.sim.fake_openai import run_fake_openai_cli

    return run_fake_openai_cli(host=args.host, port=args.port, script_path=args.script)


def _store_url(args: argparse.Namespace) -> str:
    from callbridge.web.settings import DEFAULT_STORE

    return str(getattr(args, "store", None) or os.environ.get("CALLBRIDGE_STORE") or DEFAULT_STORE)


def cmd_replay(args: argparse.Namespace) -> int:
    from callbridge.projections.replay_cli import replay_cli

    return replay_cli(_store_url(args), args.call_id, wav=args.wav, as_json=args.json)


def cmd_erase(args: argparse.Namespace) -> int:
    from callbridge.projections.erasure import erase_cli

    os.umask(PRIVATE_UMASK)
    return erase_cli(_store_url(args), args.call_id, views=args.views, force=args.force)


def cmd_projections(args: argparse.Namespace) -> int:
    from callbridge.projections.runner import rebuild_cli

    os.umask(PRIVATE_UMASK)
    return rebuild_cli(_store_url(args), args.views)


def cmd_mcp(args: argparse.Namespace) -> int:
    from callbridge.mcp_server.stdio import mcp_cli

    os.umask(PRIVATE_UMASK)
    return mcp_cli(_store_url(args), args.views)


def cmd_test(args: argparse.Namespace) -> int:
    from callbridge.regression.command import test_cli

    os.umask(PRIVATE_UMASK)  # the runs it keeps in the data folder hold what was said
    return test_cli(args, _store_url(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbridge", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the bridge, console and API")
    serve.add_argument("--host", help="listen address (env HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (env PORT, default 8081)")
    serve.add_argument(
        "--store", help="event store: SQLite path, sqlite:///path or postgresql://… (env CALLBRIDGE_STORE)"
    )
    serve.add_argument(
        "--model", choices=["openai", "sim"], help="realtime model (default: openai with OPENAI_API_KEY, else sim)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="engine processes sharing the port, the store and the views (env CALLBRIDGE_WORKERS, default: the cores)",
    )
    serve.add_argument("--worker", help=argparse.SUPPRESS)  # I/N: set by the parent for each worker
    serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # the socket a worker inherits
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)  # where a worker says it listens
    serve.add_argument(
        "--agent", metavar="FILE", help="agent TOML file: greeting, hang-up, transfers, limits (env CALLBRIDGE_AGENT)"
    )
    serve.set_defaults(func=cmd_serve)

    simulate = sub.add_parser("simulate", help="place simulated phone calls against a running server")
    simulate.add_argument("--url", help="server base URL (default http://HOST:PORT)")
    simulate.add_argument("--calls", type=int, default=1, help="simultaneous calls (default 1)")
    simulate.add_argument("--seconds", type=float, default=8.0, help="length of each call (default 8)")
    simulate.add_argument(
        "--barge-in", action="store_true", help="each caller talks over the reply to its second question"
    )
    simulate.set_defaults(func=cmd_simulate)

    call = sub.add_parser("call", help="place an outbound call through a running server (Twilio credentials needed)")
    call.add_argument("to", help="the number to call, E.164 (+15551234567)")
    call.add_argument(
        "--from", dest="from_number", help="caller ID, E.164 (default: CALLBRIDGE_CALLER_ID on the server)"
    )
    call.add_argument("--greeting", help="what the agent says first on this call (default: the agent's greeting)")
    call.add_argument("--metadata", help="a JSON object kept with the call")
    call.add_argument(
        "--agent", metavar="NAME", help="the saved agent profile that answers this call (default: the routing rules)"
    )
    call.add_argument("--url", help="server base URL (default http://HOST:PORT)")
    call.add_argument("--store", help="where the server keeps its data, for the API token (env CALLBRIDGE_STORE)")
    call.set_defaults(func=cmd_call)

    replay = sub.add_parser("replay", help="replay a recorded call: timeline, stereo WAV or JSON events")
    replay.add_argument("call_id", help="the Twilio CallSid")
    replay.add_argument("--wav", metavar="FILE", help="write the stereo recording (caller left, assistant right)")
    replay.add_argument("--json", action="store_true", help="print the call's events as JSON")
    replay.add_argument("--store", help="event store (env CALLBRIDGE_STORE)")
    replay.set_defaults(func=cmd_replay)

    erase = sub.add_parser(
        "erase", help="make one call's audio, transcripts, tool payloads and numbers unreadable everywhere"
    )
    erase.add_argument("call_id", help="the Twilio CallSid")
    erase.add_argument("--store", help="event store (env CALLBRIDGE_STORE)")
    erase.add_argument("--views", help="the views file to update now (default: this data folder's views files)")
    erase.add_argument("--force", action="store_true", help="erase a call that has not ended (its engine is gone)")
    erase.set_defaults(func=cmd_erase)

    projections = sub.add_parser("projections", help="the read models rebuilt from the event log")
    projections_sub = projections.add_subparsers(dest="action", required=True)
    rebuild = projections_sub.add_parser("rebuild", help="drop every projection and rebuild it from the events")
    rebuild.add_argument("--store", help="event store (env CALLBRIDGE_STORE)")
    rebuild.add_argument("--views", help="views database (env CALLBRIDGE_VIEWS, default <data dir>/views.db)")
    rebuild.set_defaults(func=cmd_projections)

    mcp = sub.add_parser("mcp", help="the MCP server over stdio (for Claude Desktop and other assistants)")
    mcp.add_argument("--store", help="event store (env CALLBRIDGE_STORE)")
    mcp.add_argument("--views", help="this process's own views database (default <data dir>/views-mcp.db)")
    mcp.set_defaults(func=cmd_mcp)

    test = sub.add_parser("test", help="regression tests: replay recorded calls and scenario files, check, diff")
    test.add_argument("tests", nargs="*", metavar="CALL_ID|TEST.toml", help="recorded calls, test files, folders")
    test.add_argument("--last", type=int, metavar="N", help="also the last N recorded calls")
    test.add_argument("--of-agent", metavar="NAME", help="with --last: only calls this agent profile answered")
    test.add_argument("--junit", metavar="FILE", help="write JUnit XML here (for CI)")
    test.add_argument("--json", action="store_true", help="print the run as JSON instead of text")
    test.add_argument("--agent", metavar="FILE", help="the agent the reruns talk to (env CALLBRIDGE_AGENT)")
    test.add_argument("--store", metavar="URL", help="recorded calls are read, runs kept, here (env CALLBRIDGE_STORE)")
    test.add_argument("--concurrency", type=int, default=20, metavar="K", help="tests run at once (default 20)")
    test.add_argument(
        "--processes", type=int, metavar="N", help="spread the tests over N processes (default: the cores)"
    )
    test.add_argument("--worker-results", action="store_true", help=argparse.SUPPRESS)  # one of --processes
    test.add_argument("--model", choices=["sim", "openai"], help="default: openai with OPENAI_API_KEY, else sim")
    test.set_defaults(func=cmd_test)

    fake = sub.add_parser("fake-openai", help="the simulated realtime model as a standalone server")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)
    fake.add_argument("--script", help="JSON file with scripted turns")
    fake.set_defaults(func=cmd_fake_openai)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
