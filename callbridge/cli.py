"""``callbridge`` — the command line: serve, simulate, call, replay, erase, projections, mcp, test, fake-openai.

The commands, their flags and the environment they read are the outside contract
(``docs/contract.md`` in the repository; the README shows them in use). ``serve`` lives in
``callbridge.serve_command``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import trio

from callbridge.serve_command import PRIVATE_UMASK, cmd_serve, configure_logging


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
    serve.add_argument("--board-fd", type=int, help=argparse.SUPPRESS)  # the workers' shared board (web.worker_board)
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
    test.add_argument(
        "--live-tools",
        action="store_true",
        help="a recorded call's tools run for real (default: they answer what they answered then)",
    )
    test.set_defaults(func=cmd_test)

    fake = sub.add_parser("fake-openai", help="the simulated realtime model as a standalone server")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8090)
    fake.add_argument("--script", help="JSON file with scripted turns")
    fake.set_defaults(func=cmd_fake_openai)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
