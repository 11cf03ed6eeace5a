"""Redaction: masking card numbers, national ids, e-mail addresses and phone numbers in what was said.

``CALLBRIDGE_REDACT=cards,national_ids,emails,phones`` (any of them, or ``all``) masks them in
everything callbridge *shows or sends* — the views (so the API, the console and MCP), the call's
events and timeline, the live feed, webhooks — while the event log keeps the original words for its
owner (``callbridge replay`` without the setting). With ``CALLBRIDGE_REDACT_LOG=1`` the log stores
them masked too: what was masked is then gone for good.

It applies to what was said and to tool payloads (transcripts, the model's events, tool arguments,
outputs and errors, keypad entries collected as a whole, free-text reasons), not to call metadata
such as the caller's number: that is erasure's job (``callbridge erase``).

The rules (applied in this order, so a card number is never taken for a phone number):

- ``cards``: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the Luhn check → ``[card]``;
- ``national_ids``: US social security numbers (``123-45-6789``, ``123 45 6789``; not area 000, 666 or
  9xx, group 00 or serial 0000) → ``[national id]``;
- ``phones``: E.164 numbers (``+15551234567``) and North American numbers written ``(555) 123-4567``,
  ``555-123-4567`` or ``555.123.4567`` → ``[phone]``;
- ``emails``: ``name@domain.tld`` → ``[email]``.

Numbers spoken as words ("four one one one …") are not recognised. The model streams text in pieces
(``*.delta`` events, and the ``TranscriptDelta`` facts recorded from them), and a number split across
two pieces cannot be recognised in either: with rules in force the pieces are not shown at all (their
``delta`` reads empty), only the finished text is,
masked — so a live transcript appears an utterance at a time instead of word by word.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from callbridge.engine.events import Event
from callbridge.engine.privacy import STRUCTURAL_KEYS, walk_strings

REDACT_ENV = "CALLBRIDGE_REDACT"
REDACT_LOG_ENV = "CALLBRIDGE_REDACT_LOG"
RULES = ("cards", "national_ids", "phones", "emails")

_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d])")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])\+[1-9]\d{7,14}(?!\d)"
    r"|(?<![\w(])(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}(?!\d)"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        number = ord(char) - 48
        if index % 2:
            number *= 2
            if number > 9:
                number -= 9
        total += number
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)


_MASKS: dict[str, Callable[[str], str]] = {
    "cards": lambda text: _CARD.sub(_card, text),
    "national_ids": lambda text: _SSN.sub("[national id]", text),
    "phones": lambda text: _PHONE.sub("[phone]", text),
    "emails": lambda text: _EMAIL.sub("[email]", text),
}

TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "CallerSaid": ("text",),
    "AssistantSaid": ("text",),
    "TranscriptDelta": ("delta",),
    "ToolCallRequested": ("arguments",),
    "ToolCallCompleted": ("output",),
    "ToolCallFailed": ("output", "error"),
    "DtmfForwarded": ("digits",),
    "DtmfSent": ("digits",),
    "CallEndRequested": ("reason",),
    "TransferRequested": ("reason",),
    "ModelEventReceived": ("raw",),
    "ModelEventSent": ("raw",),
    "ModelEventUnknown": ("raw",),
}
"""Event class name → the fields redaction masks (text, or JSON text whose strings are masked)."""

_JSON = msgspec.json.Decoder()
_ENCODE = msgspec.json.Encoder()


class RedactionError(ValueError):
    """A redaction setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class Redaction:
    """The rules in force (none: nothing is masked)."""

    rules: tuple[str, ...] = ()
    in_log: bool = False
    """``CALLBRIDGE_REDACT_LOG``: the log stores masked text too."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Redaction:
        text = env.get(REDACT_ENV, "").strip().lower()
        names = [name.strip() for name in text.split(",") if name.strip()]
        if names == ["all"]:
            names = list(RULES)
        unknown = [name for name in names if name not in RULES]
        if unknown:
            raise RedactionError(
                f"{REDACT_ENV}: unknown rule {unknown[0]!r}; use any of {', '.join(RULES)} (comma-separated) or all"
            )
        flag = env.get(REDACT_LOG_ENV, "").strip().lower()
        if flag not in ("", "0", "1", "false", "true", "no", "yes"):
            raise RedactionError(f"{REDACT_LOG_ENV} must be 1 or 0, got {flag!r}")
        in_log = flag in ("1", "true", "yes")
        if in_log and not names:
            raise RedactionError(f"{REDACT_LOG_ENV}=1 needs rules in {REDACT_ENV} (e.g. {REDACT_ENV}=all)")
        return cls(tuple(rule for rule in RULES if rule in names), in_log)

    def with_rules(self, rules: list[str] | tuple[str, ...]) -> Redaction:
        """These rules and ``rules`` (names this code does not know are left out)."""
        return Redaction(tuple(rule for rule in RULES if rule in self.rules or rule in rules), self.in_log)

    @property
    def active(self) -> bool:
        return bool(self.rules)

    @property
    def fingerprint(self) -> str:
        """What views built under these rules depend on (empty when nothing is masked)."""
        return f"redact={','.join(self.rules)}" if self.rules else ""

    def text(self, value: str) -> str:
        """``value`` with every rule applied."""
        for rule in self.rules:
            value = _MASKS[rule](value)
        return value

    def json_text(self, value: str, keep: frozenset[str] = frozenset()) -> str:
        """JSON text with its strings (and numbers that look like a card or a phone) masked, still JSON
        (strings under a key in ``keep`` are left alone); text that is not JSON is masked as text."""
        try:
            data = _JSON.decode(value)
        except msgspec.DecodeError:
            return self.text(value)
        if not isinstance(data, dict | list):
            return self.text(value)
        masked = walk_strings(_numbers_as_text(data, self), self.text, keep)
        return value if masked == data else _ENCODE.encode(masked).decode()

    def model_json(self, raw: str) -> str:
        """A model event's JSON with what was said masked (ids and kinds stay); a streamed piece
        (``*.delta``) loses its text altogether: a number may be split across two of them."""
        try:
            data = _JSON.decode(raw)
        except msgspec.DecodeError:
            return self.text(raw)
        if not isinstance(data, dict):
            return self.json_text(raw, STRUCTURAL_KEYS)
        kind = data.get("type")
        if isinstance(kind, str) and kind.endswith(".delta") and isinstance(data.get("delta"), str):
            data = {**data, "delta": ""}
        masked = walk_strings(_numbers_as_text(data, self), self.text, STRUCTURAL_KEYS)
        return raw if masked == _JSON.decode(raw) else _ENCODE.encode(masked).decode()

    def touches(self, name: str) -> bool:
        """Whether :meth:`event` may change an event of the class ``name`` (a reader showing other
        classes can leave them as they are)."""
        return bool(self.rules) and name in TEXT_FIELDS

    def event(self, event: Event) -> Event:
        """``event`` with its said-and-typed fields masked (the same object when nothing changed)."""
        name = type(event).__name__
        fields = TEXT_FIELDS.get(name)
        if not fields or not self.rules:
            return event
        changes: dict[str, Any] = {}
        for field in fields:
            value = getattr(event, field)
            if not isinstance(value, str) or not value:
                continue
            if name == "TranscriptDelta":
                masked = ""  # a fragment cannot be judged (a card number spans deltas): as in model JSON
            elif field == "raw":
                masked = self.model_json(value)
            elif field in ("arguments", "output"):
                masked = self.json_text(value)
            else:
                masked = self.text(value)
            if masked != value:
                changes[field] = masked
        return msgspec.structs.replace(event, **changes) if changes else event


def _numbers_as_text(value: Any, redaction: Redaction) -> Any:
    """Integers that a rule would mask as text (a card number sent as a JSON number) become strings."""
    if isinstance(value, dict):
        return {key: _numbers_as_text(item, redaction) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_text(item, redaction) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10**7:
        text = str(value)
        masked = redaction.text(text)
        if masked == text and "phones" in redaction.rules:
            masked = redaction.text("+" + text)
            masked = text if masked == "+" + text else masked
        return masked if masked != text else value
    return value


NO_REDACTION = Redaction()
