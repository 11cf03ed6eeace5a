"""Redaction (``CALLBRIDGE_REDACT``, ``engine.redaction``): card numbers, national ids, e-mails and phone
numbers masked in everything callbridge shows, the log keeping them unless ``CALLBRIDGE_REDACT_LOG=1``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest
from bridge_harness import running_bridge
from privacy_calls import ONE_TURN, order_registry

from callbridge.adapters.sim.caller import place_call
from callbridge.adapters.sim.fake_openai_script import FunctionCall, Script, Turn
from callbridge.engine.events import CallerSaid, ToolCallRequested, TranscriptDelta
from callbridge.engine.redaction import NO_REDACTION, Redaction, RedactionError, luhn_valid
from callbridge.engine.store import EventStore

ALL = Redaction(("cards", "national_ids", "phones", "emails"))
SAID = "card 4111 1111 1111 1111, ssn 123-45-6789, mail ada@example.com, phone +15551234567"
MASKED = "card [card], ssn [national id], mail [email], phone [phone]"
BEARER = {"Authorization": "Bearer test-token"}
CARD_DIGITS = re.compile(r"4111[ -]?1111|card 4111")
"""Any piece of the card number as said or as the tool's argument; not a bare "4111", which a timestamp,
a position or a duration in the events holds by chance (one test run in a few)."""


def test_each_rule_masks_what_it_names_and_nothing_else() -> None:
    assert ALL.text(SAID) == MASKED
    assert ALL.text("4111-1111-1111-1111 and 4111111111111112") == "[card] and 4111111111111112"  # Luhn
    assert ALL.text("order 1234567890123 shipped") == "order 1234567890123 shipped"  # 13 digits, not Luhn
    assert (
        ALL.text("ssn 000-12-3456, 666-12-3456, 123-00-4567, 123 45 6789")
        == "ssn 000-12-3456, 666-12-3456, 123-00-4567, [national id]"
    )
    assert ALL.text("(555) 123-4567 or 555.123.4567, room 1234") == "[phone] or [phone], room 1234"
    assert ALL.text("write to a.b+c@mail.example.co.uk") == "write to [email]"
    assert (
        Redaction(("emails",)).text(SAID)
        == "card 4111 1111 1111 1111, ssn 123-45-6789, mail [email], phone +15551234567"
    )
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


def test_json_payloads_stay_json_with_their_numbers_masked() -> None:
    masked = json.loads(ALL.json_text('{"card": 4111111111111111, "note": "mail ada@example.com", "n": 3}'))
    assert masked == {"card": "[card]", "note": "mail [email]", "n": 3}


def test_settings_are_checked_and_name_the_variable() -> None:
    assert Redaction.from_env({"CALLBRIDGE_REDACT": "all"}).rules == ALL.rules
    assert Redaction.from_env({}) == NO_REDACTION
    with pytest.raises(RedactionError, match="CALLBRIDGE_REDACT: unknown rule 'cats'"):
        Redaction.from_env({"CALLBRIDGE_REDACT": "cards,cats"})
    with pytest.raises(RedactionError, match="CALLBRIDGE_REDACT_LOG=1 needs rules"):
        Redaction.from_env({"CALLBRIDGE_REDACT_LOG": "1"})


SCRIPT = Script(
    turns=[
        Turn(
            transcript=SAID,
            function_call=FunctionCall(name="lookup_order", arguments={"order": "4111111111111111"}),
            after_tool="Noted, I will call +15551234567.",
        )
    ]
)


async def _call(tmp_path: Path) -> tuple[str, dict]:
    async with running_bridge(tmp_path, script=SCRIPT, registry=order_registry()) as bridge:
        report = await place_call(bridge.base_url, script=ONE_TURN)
        assert report.ok, report.errors
        await bridge.wait_call_ended(report.call_sid)
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            conversation = (await http.get(f"/api/conversations/{report.call_sid}")).json()
            events = (await http.get(f"/api/calls/{report.call_sid}/events")).text
            found = (await http.get("/api/conversations", params={"q": "4111"})).json()
        return report.call_sid, {"conversation": conversation, "events": events, "search": found}


def _stored(tmp_path: Path, call_id: str) -> str:
    store = EventStore(str(tmp_path / "callbridge.db"), redaction=NO_REDACTION)  # the owner reading the log
    try:
        return str([r.event for r in store.read_call(call_id) if isinstance(r.event, CallerSaid | ToolCallRequested)])
    finally:
        store.close()


async def test_what_is_shown_is_masked_while_the_log_keeps_the_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    call_id, plain = await _call(tmp_path)  # first without rules: the views hold the words
    assert any("4111 1111 1111 1111" in (item["text"] or "") for item in plain["conversation"]["items"])

    monkeypatch.setenv("CALLBRIDGE_REDACT", "all")
    async with running_bridge(tmp_path) as bridge:  # the views are rebuilt under the new rules
        async with httpx2.AsyncClient(base_url=bridge.base_url, headers=BEARER, timeout=30) as http:
            conversation = (await http.get(f"/api/conversations/{call_id}")).json()
            events = (await http.get(f"/api/calls/{call_id}/events")).text
            found = (await http.get("/api/conversations", params={"q": "4111"})).json()
    texts = [item[key] for item in conversation["items"] for key in ("text", "arguments", "output") if item[key]]
    assert MASKED in texts[0]
    assert any('"[card]"' in text for text in texts)  # the tool's argument, still JSON
    assert not CARD_DIGITS.search(str(texts) + events)
    assert not any(secret in str(texts) + events for secret in ("123-45-6789", "ada@example.com", "5551234567"))
    assert found == []
    assert conversation["caller_number"] == "+15005550006"  # metadata is erasure's business, not redaction's
    assert SAID in _stored(tmp_path, call_id) and "4111111111111111" in _stored(tmp_path, call_id)


async def test_with_redact_log_the_log_stores_the_masked_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLBRIDGE_REDACT", "cards,emails")
    monkeypatch.setenv("CALLBRIDGE_REDACT_LOG", "1")
    call_id, shown = await _call(tmp_path)
    stored = _stored(tmp_path, call_id)
    assert "card [card], ssn 123-45-6789, mail [email]" in stored and not CARD_DIGITS.search(stored)
    assert not CARD_DIGITS.search(str(shown))


def test_transcript_pieces_read_empty_under_rules_as_the_models_own_deltas_do() -> None:
    piece = TranscriptDelta(call_id="CA1", at=1.0, item_id="item_1", role="user", delta="card 4111 1111")
    assert Redaction(rules=("cards",)).event(piece).delta == ""  # the rest of the number is elsewhere
    assert NO_REDACTION.event(piece) is piece
