"""Regression tests on the console, behind the API token (bearer header or console cookie).

- ``POST /api/calls/{call_id}/test`` — "Save as test": the recorded call's test file, with assertions
  suggested by what happened (its tools, its ending), written to the data folder's ``tests/`` → 201
  ``{"path", "toml", "command"}`` (404 for an unknown call, 409 for an erased one, whose audio is gone);
- ``GET /api/tests`` — the saved tests and the kept runs of ``callbridge test`` (newest first, with
  pass/fail counts and each test's name and result);
- ``GET /api/tests/runs/{run_id}`` — one run in full: each test's checks and its diff against the
  original, turn by turn.

Runs are made by ``callbridge test`` (a command, beside the server: a rerun is a whole fresh engine),
which keeps each in ``test-runs/``; the console shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio
from quart import Blueprint, Response

from callbridge.engine.events import CallErased
from callbridge.projections.call_turns import call_turns
from callbridge.projections.test_runs import SAVED_TESTS_DIR, list_runs, read_run, save_test, saved_tests
from callbridge.projections.test_suggestion import suggested_test_toml
from callbridge.web.api import error_response, json_response
from callbridge.web.auth import require_token

if TYPE_CHECKING:
    from callbridge.server import Server


def tests_blueprint(server: Server) -> Blueprint:
    api = Blueprint("tests_api", __name__)
    api.before_request(require_token(lambda: server.settings.api_token))
    data_dir = server.settings.data_dir

    @api.post("/api/calls/<call_id>/test")
    async def save_as_test(call_id: str) -> Response:
        await server.writer.flush()
        recorded = await trio.to_thread.run_sync(server.store.read_call, call_id, limiter=server.db_threads)
        events = [r.event for r in recorded]
        if not events:
            return error_response(404, f"no call {call_id}")
        if any(isinstance(e, CallErased) for e in events):
            return error_response(409, f"call {call_id} was erased: its audio is gone, it cannot be replayed")
        text = suggested_test_toml(call_turns(events))
        try:
            path = await trio.to_thread.run_sync(save_test, data_dir, call_id, text)
        except ValueError as error:
            return error_response(400, str(error))
        shown = f"{SAVED_TESTS_DIR}/{path.name}"
        return json_response(
            {"path": shown, "toml": text, "command": f"callbridge test {data_dir / shown}"},
            201,
        )

    @api.get("/api/tests")
    async def tests() -> Response:
        runs = await trio.to_thread.run_sync(list_runs, data_dir)
        saved = await trio.to_thread.run_sync(saved_tests, data_dir)
        return json_response({"saved": saved, "runs": runs, "tests_folder": str(data_dir / SAVED_TESTS_DIR)})

    @api.get("/api/tests/runs/<run_id>")
    async def run(run_id: str) -> Response:
        record = await trio.to_thread.run_sync(read_run, data_dir, run_id)
        if record is None:
            return error_response(404, f"no run {run_id}; list runs with GET /api/tests")
        return json_response(record)

    return api
