"""What callbridge's read side answers about a store: the same questions asked of the v1 fixture
before and after a change (``tests/projections/test_old_logs.py``), through the entry points users take — the
HTTP API of a running server and ``callbridge replay``."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path
from typing import Any

import httpx2
from bridge_harness import running_bridge

from callbridge.projections.replay_cli import replay_cli

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "v1"


def _fresh_copy(store: Path, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copy(store, work / "callbridge.db")


async def collect_answers(store: Path, work: Path) -> dict[str, Any]:
    """Serve a copy of ``store`` and ask it everything a user can ask of each call."""
    _fresh_copy(store, work)
    answers: dict[str, Any] = {}
    async with running_bridge(work) as bridge:
        headers = {"Authorization": "Bearer test-token"}
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=headers, timeout=30) as http:

            async def get(path: str) -> httpx2.Response:
                response = await http.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text)
                return response

            listed = (await get("/api/conversations")).json()
            answers["conversations"] = listed
            for call in listed:
                call_id = call["call_id"]
                answers[f"conversation {call_id}"] = (await get(f"/api/conversations/{call_id}")).json()
                answers[f"metrics {call_id}"] = (await get(f"/api/calls/{call_id}/metrics")).json()
                wav = (await get(f"/api/calls/{call_id}/recording.wav")).content
                answers[f"recording {call_id}"] = {"bytes": len(wav), "sha256": hashlib.sha256(wav).hexdigest()}
                out = io.StringIO()
                assert replay_cli(str(work / "callbridge.db"), call_id, wav=None, as_json=False, out=out) == 0
                answers[f"timeline {call_id}"] = out.getvalue().splitlines()
    return answers
