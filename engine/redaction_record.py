"""The redaction rules a server runs under, kept in the log so every reader of the store honours them.

``CALLBRIDGE_REDACT`` is a server's setting, but the store is read by other processes too: ``callbridge
mcp`` (started by an AI assistant's configuration, which rarely passes the server's environment on) would
show the words unmasked. So a server records its rules (``RedactionRulesSet``, stream ``settings``) when
they differ from the last recorded, and such a reader masks those rules on top of its own. The owner's
own tools (``callbridge replay``) read the log as it is.
"""

from __future__ import annotations

from callbridge.engine.events import SETTINGS_STREAM, RedactionRulesSet
from callbridge.engine.redaction import Redaction
from callbridge.engine.store import EventStore


def recorded_rules(store: EventStore) -> RedactionRulesSet | None:
    """The last rules a server recorded in ``store`` (blocking), or None."""
    found = None
    for recorded in store.read_call(SETTINGS_STREAM):
        if isinstance(recorded.event, RedactionRulesSet):
            found = recorded.event
    return found


def rules_to_record(store: EventStore, redaction: Redaction, at: float) -> RedactionRulesSet | None:
    """The event saying ``redaction``'s rules, unless the log's last one says the same (blocking)."""
    last = recorded_rules(store)
    rules = list(redaction.rules)
    if last is None and not rules:
        return None
    if last is not None and (last.rules, last.in_log) == (rules, redaction.in_log):
        return None
    return RedactionRulesSet(call_id=SETTINGS_STREAM, at=at, rules=rules, in_log=redaction.in_log)


def honour_recorded_rules(store: EventStore) -> tuple[str, ...]:
    """Make ``store`` mask the rules its server recorded, too (blocking); the rules now in force."""
    last = recorded_rules(store)
    if last is not None:
        store.show_at_least(last.rules)
    return store.redaction.rules
