"""``callbridge call TO [--from N] [--greeting TEXT] [--metadata JSON] [--agent NAME]``: place an
outbound call through a running server's ``POST /api/calls`` (``--agent``: the saved agent profile
that answers it, over the routing rules).

The API token comes from ``CALLBRIDGE_API_TOKEN``, else from the data folder's ``api-token`` file
(the folder of ``CALLBRIDGE_STORE``/``--store``, ``./data`` by default), as ``serve`` wrote it; the
server is ``--url`` or ``http://HOST:PORT``. Refusals print the server's reason (which parameter is
wrong, what to set, Twilio's code and message) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx2

from callbridge.projections.views_db import data_dir_for_store
from callbridge.web.settings import TOKEN_FILE


def place_call_command(args: argparse.Namespace, store_url: str) -> int:
    """Ask a running server to place an outbound call; the exit status (0 placed, 1 refused or
    unreachable, 2 no token or bad arguments)."""
    base = (args.url or f"http://{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8081')}").rstrip("/")
    token = os.environ.get("CALLBRIDGE_API_TOKEN")
    if not token:
        token_file = data_dir_for_store(store_url) / TOKEN_FILE
        try:
            token = token_file.read_text().strip()
        except OSError:
            print(
                f"callbridge call: no API token: set CALLBRIDGE_API_TOKEN or run from the folder whose {token_file} "
                "the server wrote (or pass --store)",
                file=sys.stderr,
            )
            return 2
    body: dict[str, object] = {"to": args.to}
    if args.from_number:
        body["from"] = args.from_number
    if args.greeting:
        body["greeting"] = args.greeting
    if args.agent:
        body["agent"] = args.agent
    if args.metadata:
        try:
            body["metadata"] = json.loads(args.metadata)
        except ValueError as error:
            print(f"callbridge call: --metadata is not JSON: {error}", file=sys.stderr)
            return 2
    try:
        response = httpx2.post(
            f"{base}/api/calls", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
        )
    except httpx2.HTTPError as error:
        print(f"callbridge call: cannot reach {base}: {error}. Is `callbridge serve` running?", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:200]}
    if response.status_code != 201:
        retry = response.headers.get("Retry-After")
        hint = f" (retry after {retry} s)" if retry else ""
        print(f"callbridge call: HTTP {response.status_code}: {answer.get('error', answer)}{hint}", file=sys.stderr)
        return 1
    print(f"calling {answer['to']} from {answer['from']}: call {answer['call_id']} {answer['status']}")
    return 0
