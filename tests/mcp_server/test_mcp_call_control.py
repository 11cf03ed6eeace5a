"""Call control as an assistant sees it over MCP: the golden call-control logs
(``engine/synthetic_call_control.py``) stored, and the official client asking ``get_call_timeline``,
``get_call_events`` and ``get_call_metrics`` about them."""

from __future__ import annotations

from pathlib import Path

from test_mcp_support import T0, mcp_over, structured

from callbridge.engine import synthetic_call_control as golden
from callbridge.engine.synthetic import CallLog


def golden_calls() -> list[CallLog]:
    def call(call_id: str, hour: int) -> CallLog:
        return golden.greeted(CallLog(call_id, start_at=T0 + hour * 3600).start(), "Acme Plumbing, hello.")

    return [
        golden.agent_pressed(golden.caller_pressed(call("CAkeys", 1), "42"), "12#").end(),
        golden.silent_caller_hung_up_on(call("CAsilent", 2), reprompt_s=10, hangup_s=15),
        golden.duration_limit_reached(call("CAlimit", 3), limit_s=120, warning_s=60),
        golden.session_recycled(call("CArecycle", 4), seeded_items=3).end(),
        golden.transferred(golden.greeted(CallLog("CAsales", start_at=T0 + 5 * 3600).start(), "Hi.").caller_says(
            "Sales please."), "sales", "+15557654321", reason="boiler"),
        golden.hung_up_by_the_agent(call("CAbye", 6).caller_says("That's all."), "done"),
    ]  # fmt: skip


async def test_an_assistant_reads_every_call_control_fact_in_timelines_events_and_metrics(tmp_path: Path) -> None:
    async with mcp_over(tmp_path, golden_calls()) as (client, _):
        timelines, metrics = {}, {}
        for call_id in ("CAkeys", "CAsilent", "CAlimit", "CArecycle", "CAsales", "CAbye"):
            timeline = await structured(client, "get_call_timeline", {"call_id": call_id})
            timelines[call_id] = [entry["summary"] for entry in timeline["entries"]]
            figures = await structured(client, "get_call_metrics", {"call_id": call_id})
            metrics[call_id] = figures["call"]["call_control"]
        keys = await structured(
            client, "get_call_events", {"call_id": "CAkeys", "types": ["DtmfForwarded", "DtmfSent"]}
        )
        period = (await structured(client, "get_call_metrics"))["period"]["call_control"]

    assert "agent pressed 12# (540 ms of tones)" in timelines["CAkeys"]
    assert "keys 4 given to the model (model)" in timelines["CAkeys"]
    assert "caller silent for 10000 ms: asked if they are still there" in timelines["CAsilent"]
    assert "duration limit near: 60 s left, told to wrap up" in timelines["CAlimit"]
    assert "session 2 took over from 1 (3 items re-seeded)" in timelines["CArecycle"]
    assert "caller transferred to sales (+15557654321) through Twilio's REST API" in timelines["CAsales"]
    assert "the goodbye was heard" in " ".join(timelines["CAbye"])
    assert all(any(line.startswith("greeting starts playing") for line in lines) for lines in timelines.values())
    assert [(e["type"], e["data"]["digits"]) for e in keys["events"]] == [
        ("DtmfForwarded", "4"), ("DtmfForwarded", "2"), ("DtmfSent", "12#")
    ]  # fmt: skip
    assert (metrics["CAkeys"]["dtmf_received"], metrics["CAkeys"]["dtmf_sent"]) == (2, 3)
    assert metrics["CAsilent"]["silence_reprompts"] == 1 and metrics["CAsilent"]["hung_up_by"] == "silence"
    assert metrics["CAlimit"]["hung_up_by"] == "max_duration"
    assert metrics["CArecycle"]["session_recycles"] == 1
    assert (metrics["CAsales"]["transfers"], metrics["CAsales"]["transfer_target"]) == (1, "sales")
    assert metrics["CAbye"]["hung_up_by"] == "model"
    assert (period["dtmf_received"], period["dtmf_sent"], period["silence_reprompts"]) == (2, 3, 1)
    assert period["session_recycles"] == 1 and period["transfers"] == 1
    assert {by: n for by, n in period["hang_ups_by"].items() if n} == {"model": 1, "silence": 1, "max_duration": 1}
