"""A recorded call saved as a regression test: the test file, with assertions suggested by what
happened (the same tools, with the same arguments; the same ending; no model errors).

Here, below the console and ``callbridge test`` both: the console's "Save as test" writes it and
``callbridge test CALL_ID`` (a call with no saved test) checks the same assertions. The file's keys
are ``callbridge/regression/spec.py``'s.
"""

from __future__ import annotations

import re

import msgspec

from callbridge.projections.call_turns import CallTurns

SUGGESTED_ENDINGS = ("caller", "agent", "transfer", "operator")


def suggested_test_toml(turns: CallTurns, name: str | None = None) -> str:
    """The test file (TOML) replaying ``turns.call_id`` and expecting what happened in it."""
    outcome = turns.outcome
    lines = [
        f"# A regression test from call {turns.call_id}: `callbridge test` replays its caller's audio.",
        f"name = {_toml_str(name or 'call ' + turns.call_id)}",
        f"call = {_toml_str(turns.call_id)}",
        "",
        "[expect]",
    ]
    tools = turns.tools()
    if tools:
        lines.append("tools = [")
        for tool in tools:
            arguments = tool.arguments.strip()
            literal = "^" + re.escape(arguments).replace("\\ ", " ") + "$"
            pattern = f", arguments = {_toml_str(literal)}" if arguments not in ("", "{}") else ""
            lines.append(f"  {{ name = {_toml_str(tool.name)}{pattern} }},")
        lines.append("]")
    else:
        lines.append("tools = []")
    if outcome.ended_by in SUGGESTED_ENDINGS:
        lines.append(f"ended_by = {_toml_str(outcome.ended_by)}")
        if outcome.ended_by == "transfer" and outcome.transfer_to:
            lines.append(f"transfer_to = {_toml_str(outcome.transfer_to)}")
    lines.append(f"no_model_errors = {'false' if turns.model_errors else 'true'}")
    lines += [
        "# more checks: max_dead_air_s = 3.0, max_barge_ins = 1, latency_p95_ms = 1500,",
        '# transcript_contains = ["regex"], transcript_not_contains = ["regex"], tools_not_called = ["name"]',
    ]
    return "\n".join(lines) + "\n"


def _toml_str(value: str) -> str:
    """A TOML basic string (a JSON string is one)."""
    return msgspec.json.encode(value).decode()
