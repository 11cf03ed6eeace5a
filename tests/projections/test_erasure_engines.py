"""An erasure made on one engine holds on every engine sharing the PostgreSQL log: the other engine
(which carried the call, and held its key in memory) reads the call as erased, and no file of either
engine's data folder nor any row of the log keeps its words. Real ``callbridge serve`` processes."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import trio
from privacy_calls import CALLER_NUMBER, files_holding
from serve_process import serve

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.caller_script import HangUp, Speak, WaitForAssistant

FAST = {"CALLBRIDGE_HEARTBEAT_SECONDS": "0.5", "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "2"}
DEADLINE = 300  # a safety net that turns a hang into a failure, not a timing assumption


@pytest.mark.postgres
async def test_a_call_erased_on_one_engine_reads_erased_on_the_engine_that_carried_it(
    postgres_store_url: str, tmp_path: Path
) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    one.mkdir()
    other.mkdir()
    with trio.fail_after(DEADLINE):
        async with (
            serve(postgres_store_url, one, env=FAST) as carrier,
            serve(postgres_store_url, other, env=FAST) as eraser,
        ):
            report = await place_call(
                carrier.base_url,
                script=[Speak(900), WaitForAssistant(timeout_s=60), HangUp()],
                from_number=CALLER_NUMBER,
            )
            assert report.ok, report.errors
            call_id = report.call_sid
            async with carrier.http() as http:
                before = (await http.get(f"/api/conversations/{call_id}")).json()
            said = [item["text"] for item in before["items"] if item["text"]]
            assert said and before["caller_number"] == CALLER_NUMBER  # there is something to erase

            async with eraser.http() as http:
                erased = await http.post(f"/api/calls/{call_id}/erase")
            assert erased.status_code == 200, erased.text
            await carrier.wait_for_line(f"call {call_id} was erased")
            async with carrier.http() as http:
                after = (await http.get(f"/api/conversations/{call_id}")).json()
                events = (await http.get(f"/api/calls/{call_id}/events", params={"audio": 1})).text
                wav = await http.get(f"/api/calls/{call_id}/recording.wav")
            assert after["erased_at"] is not None and after["caller_number"] == "[erased]"
            assert not any(text in events for text in [*said, CALLER_NUMBER])
            assert wav.status_code == 410
    assert files_holding(tmp_path, (CALLER_NUMBER, *said)) == {}
    schema = postgres_store_url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgres_store_url.split("?")[0]) as db:
        states = b"".join(bytes(row[0]) for row in db.execute(f'SELECT state FROM "{schema}".callbridge_events'))
        keys = db.execute(
            f'SELECT key IS NULL, erased_at IS NOT NULL FROM "{schema}_keys".keys WHERE key_id = %s',
            (f"call:{call_id}",),
        ).fetchall()
    assert not any(text.encode() in states for text in [*said, CALLER_NUMBER])
    assert keys == [(True, True)]
