"""What the read side says about call control, from hand-written logs and the golden call-control
logs (``engine/synthetic_call_control.py``): the conversations' outcome, the metrics' call-control
figures (per call, summed, Prometheus), the timeline's lines, the live feed's messages and the MCP
summary request (the MCP tools: ``tests/mcp_server/test_mcp_call_control.py``)."""

from __future__ import annotations

from pathlib import Path

from prometheus_text import sample_key
from test_projections_support import T0, views_after

from callbridge.engine import synthetic_call_control as golden
from callbridge.engine.events import (
    CallEnded,
    CallEndRequested,
    CallStarted,
    CallStatusReported,
    DtmfSent,
    Event,
    GoodbyeHeard,
    GreetingAudioStarted,
    MachineDetected,
    OutboundCallPlaced,
    PhoneHangUpSent,
    TransferDialed,
    TransferRefused,
    TransferRequested,
)
from callbridge.engine.store import EventStore
from callbridge.engine.synthetic import CallLog
from callbridge.mcp_server.resources import summary_request
from callbridge.projections.conversations import get_conversation, list_conversations
from callbridge.projections.live import LiveProjection
from callbridge.projections.metrics_prometheus import call_control_families
from callbridge.projections.metrics_query import get_call_metrics, metrics_summary
from callbridge.projections.timeline import build_timeline

TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response><Dial callerId="+15550001111" timeout="25"><Number>+15557654321</Number></Dial></Response>'  # noqa: E501


def transferred(call_id: str = "CAtransfer") -> list[Event]:
    at = T0
    return [
        CallStarted(call_id=call_id, at=at, stream_sid="MZ1", from_number="+15550100001", to_number="+15550109999"),
        GreetingAudioStarted(call_id=call_id, at=at + 0.4, response_id="resp_g", latency_ms=400),
        TransferRefused(call_id=call_id, at=at + 3, label="billing", reason="no transfer target 'billing'"),
        TransferRequested(call_id=call_id, at=at + 5, label="sales", to="+15557654321", mode="cold", reason="boiler"),
        GoodbyeHeard(call_id=call_id, at=at + 7, waited_ms=2000),
        TransferDialed(call_id=call_id, at=at + 7.1, label="sales", to="+15557654321", method="rest", twiml=TWIML),
        CallEnded(call_id=call_id, at=at + 7.3, reason="transferred"),
    ]


def voicemail(call_id: str = "CAmachine") -> list[Event]:
    at = T0 + 100
    return [
        OutboundCallPlaced(
            call_id=call_id,
            at=at,
            to_number="+15551230002",
            from_number="+15005550001",
            greeting=None,
            metadata={"ticket": 7},
            status="queued",
        ),
        CallStatusReported(call_id=call_id, at=at + 1, status="in-progress"),
        CallStarted(
            call_id=call_id,
            at=at + 1.2,
            stream_sid="MZ2",
            from_number="+15005550001",
            to_number="+15551230002",
            custom_parameters={"Direction": "outbound-api"},
        ),
        MachineDetected(call_id=call_id, at=at + 4, answered_by="machine_end_beep", detection_ms=2800),
        CallEndRequested(call_id=call_id, at=at + 4, by="voicemail", reason="machine_end_beep"),
        GoodbyeHeard(call_id=call_id, at=at + 8, waited_ms=4000),
        PhoneHangUpSent(call_id=call_id, at=at + 8.1, method="rest"),
        CallEnded(call_id=call_id, at=at + 8.2, reason="voicemail_left"),
        CallStatusReported(call_id=call_id, at=at + 8.5, status="completed", duration_s=8),
    ]


def busy(call_id: str = "CAbusy") -> list[Event]:
    at = T0 + 200
    return [
        OutboundCallPlaced(call_id=call_id, at=at, to_number="+15551230003", from_number="+15005550001"),
        CallStatusReported(call_id=call_id, at=at + 0.1, status="initiated"),
        CallStatusReported(call_id=call_id, at=at + 0.2, status="ringing"),
        CallStatusReported(call_id=call_id, at=at + 3, status="busy"),
    ]


def test_conversations_metrics_and_summaries_say_how_each_call_ended(sqlite_event_store: EventStore, tmp_path: Path):
    sqlite_event_store.append([*transferred(), *voicemail(), *busy()])
    db = views_after(sqlite_event_store, tmp_path / "views.db")
    rows = {row["call_id"]: row for row in list_conversations(db)}
    picked = {
        k: (r["direction"], r["status"], r["outcome"], r["transfer_target"], r["twilio_status"])
        for k, r in rows.items()
    }
    assert picked == {
        "CAtransfer": ("inbound", "completed", "transferred", "sales", None),
        "CAmachine": ("outbound", "completed", "voicemail_left", None, "completed"),
        "CAbusy": ("outbound", "busy", "busy", None, "busy"),
    }
    assert (
        rows["CAbusy"]["started_at"] == "2026-01-01T00:03:20.000Z" and rows["CAbusy"]["phone_number"] == "+15551230003"
    )

    control = get_call_metrics(db, "CAtransfer")["call_control"]  # type: ignore[index]
    assert (control["greeting_latency_ms"], control["transfers"], control["transfers_refused"]) == (400, 1, 1)
    assert control["transfer_target"] == "sales" and control["hung_up_by"] is None
    machine = get_call_metrics(db, "CAmachine")["call_control"]  # type: ignore[index]
    assert (machine["answered_by"], machine["hung_up_by"]) == ("machine_end_beep", "voicemail")
    summary = metrics_summary(db)["call_control"]
    assert summary["transfers"] == 1 and summary["voicemails_left"] == 1
    assert summary["hang_ups_by"]["voicemail"] == 1 and summary["greeting_latency_ms"]["p50"] == 400
    exposed = {sample_key(s.name, s.labels): s.value for family in call_control_families(db) for s in family.samples}
    assert exposed["callbridge_transfers_total"] == exposed["callbridge_transfers_refused_total"] == 1
    assert exposed['callbridge_hangups_total{by="voicemail"}'] == 1
    greeting = "callbridge_greeting_latency_seconds"
    assert exposed[f'{greeting}_bucket{{le="0.25"}}'] == 0 and exposed[f'{greeting}_bucket{{le="0.5"}}'] == 1
    assert exposed[f"{greeting}_sum"] == 0.4  # the greeting's 400 ms, in seconds

    conversation = get_conversation(db, "CAtransfer")
    assert conversation is not None and "transferred to sales" in summary_request(conversation)
    machine_row = get_conversation(db, "CAmachine")
    assert machine_row is not None and "left a voicemail" in summary_request(machine_row)
    assert "outbound call" in summary_request(machine_row)
    db.close()


def test_every_call_control_event_has_a_timeline_line_and_a_feed_message() -> None:
    lines = [entry.summary for entry in build_timeline(transferred())]
    assert "greeting starts playing (400 ms after the call began)" in lines
    assert "transfer to 'billing' refused: no transfer target 'billing'" in lines
    assert "transfer to sales (+15557654321, cold) requested by the agent: boiler" in lines
    assert "the goodbye was heard after 2000 ms" in lines
    assert "caller transferred to sales (+15557654321) through Twilio's REST API" in lines
    machine = [entry.summary for entry in build_timeline(voicemail())]
    assert "answered by machine_end_beep (detected in 2800 ms)" in machine
    assert "hang-up requested by voicemail (machine_end_beep)" in machine
    assert "phone hung up through Twilio's REST API" in machine
    never = build_timeline(busy())
    assert never[-1].summary == "the call never connected: busy" and never[0].t_ms == 0

    live = LiveProjection()
    messages = [m for event in voicemail() for m in live.messages(event)]
    kinds = [m["type"] for m in messages]
    for kind in ("callbridge.outbound.placed", "callbridge.machine.detected", "callbridge.hangup.requested",
                 "callbridge.goodbye.heard", "callbridge.phone.hung_up"):  # fmt: skip
        assert kind in kinds
    hung = next(m for m in messages if m["type"] == "callbridge.phone.hung_up")
    assert hung["method"] == "rest" and hung["call_id"] == "CAmachine" and hung["stream_sid"] == "MZ2"
    assert hung["summary"] == "phone hung up through Twilio's REST API"


def keypad_silence_limit_and_recycle() -> dict[str, CallLog]:
    """Four golden calls, one for each newer call-control fact, an hour apart."""

    def call(call_id: str, hour: int) -> CallLog:
        return golden.greeted(CallLog(call_id, start_at=T0 + hour * 3600).start(), "Acme Plumbing, hello.")

    return {
        "CAkeys": golden.agent_pressed(golden.caller_pressed(call("CAkeys", 1), "42"), "12#").end(),
        "CAsilent": golden.silent_caller_hung_up_on(call("CAsilent", 2), reprompt_s=10, hangup_s=15),
        "CAlimit": golden.duration_limit_reached(call("CAlimit", 3), limit_s=120, warning_s=60),
        "CArecycle": golden.session_recycled(call("CArecycle", 4), seeded_items=3).end(),
    }


def test_keys_silence_the_duration_limit_and_recycles_have_lines_feed_messages_and_figures(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    logs = keypad_silence_limit_and_recycle()
    lines = {call_id: [entry.summary for entry in build_timeline(log.events)] for call_id, log in logs.items()}
    tones = of_type_sent(logs["CAkeys"].events)
    assert tones.audio_ms == 540  # three keys, 100 ms of tone and 80 ms of gap each
    for line in ("keys 4 given to the model (model)", "keys 2 given to the model (model)",
                 "agent pressed 12# (540 ms of tones)"):  # fmt: skip
        assert line in lines["CAkeys"]
    assert "caller silent for 10000 ms: asked if they are still there" in lines["CAsilent"]
    assert "hang-up requested by silence (silent for 15 s)" in lines["CAsilent"]
    assert "duration limit near: 60 s left, told to wrap up" in lines["CAlimit"]
    assert "hang-up requested by the duration limit (120 s)" in lines["CAlimit"]
    assert "session 2 took over from 1 (3 items re-seeded)" in lines["CArecycle"]

    live = LiveProjection()
    feed = {call_id: [m for event in log.events for m in live.messages(event)] for call_id, log in logs.items()}
    expected = {
        "CAkeys": {"callbridge.dtmf.forwarded": ("digits", "4"), "callbridge.dtmf.sent": ("digits", "12#")},
        "CAsilent": {"callbridge.silence.reprompted": ("silent_ms", 10000)},
        "CAlimit": {"callbridge.duration.warning": ("remaining_s", 60)},
        "CArecycle": {"callbridge.model.recycled": ("to_session", 2)},
    }
    for call_id, kinds in expected.items():
        for kind, (field, value) in kinds.items():
            message = next(m for m in feed[call_id] if m["type"] == kind)
            assert (
                message[field] == value
                and message["call_id"] == call_id
                and message["stream_sid"] == "MZ" + call_id[2:]
            )
            assert message["summary"] in lines[call_id]  # the feed says what the timeline says
    assert [m["digits"] for m in feed["CAkeys"] if m["type"] == "callbridge.dtmf.forwarded"] == ["4", "2"]

    sqlite_event_store.append([event for log in logs.values() for event in log.events])
    db = views_after(sqlite_event_store, tmp_path / "views.db")
    figures = {call_id: get_call_metrics(db, call_id)["call_control"] for call_id in logs}  # type: ignore[index]
    picked = {
        call_id: (f["dtmf_received"], f["dtmf_sent"], f["silence_reprompts"], f["session_recycles"], f["hung_up_by"])
        for call_id, f in figures.items()
    }
    assert picked == {
        "CAkeys": (2, 3, 0, 0, None),
        "CAsilent": (0, 0, 1, 0, "silence"),
        "CAlimit": (0, 0, 0, 0, "max_duration"),
        "CArecycle": (0, 0, 0, 1, None),
    }
    summary = metrics_summary(db)["call_control"]
    assert (summary["dtmf_received"], summary["dtmf_sent"]) == (2, 3)
    assert (summary["silence_reprompts"], summary["session_recycles"]) == (1, 1)
    assert summary["hang_ups_by"]["silence"] == summary["hang_ups_by"]["max_duration"] == 1
    exposed = {sample_key(s.name, s.labels): s.value for family in call_control_families(db) for s in family.samples}
    served = ("dtmf_received", "dtmf_sent", "silence_reprompts", "session_recycles")
    assert [exposed[f"callbridge_{name}_total"] for name in served] == [2, 3, 1, 1]
    rows = {row["call_id"]: row["outcome"] for row in list_conversations(db)}
    assert (rows["CAsilent"], rows["CAlimit"]) == ("hung_up_silence", "hung_up_max_duration")
    db.close()


def of_type_sent(events: list[Event]) -> DtmfSent:
    return next(e for e in events if isinstance(e, DtmfSent))
