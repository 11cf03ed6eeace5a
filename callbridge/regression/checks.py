"""A test's assertions, checked on the new call: each gives a ``Check`` (what was asked, whether it
held, and what happened instead). Timing checks use what the caller observed on the line (the audio
it heard and when it talked), not the engine's own view of itself."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import msgspec

from callbridge.projections.call_turns import CallTurns
from callbridge.regression.rerun import Rerun
from callbridge.regression.spec import Expect

EXPECTED_CALLER_NOTES = ("the other side did not hang up",)
"""Caller errors that are a test's finding, not a broken run: the outcome check reports them."""


class Check(msgspec.Struct, frozen=True):
    name: str
    ok: bool
    detail: str


def run_checks(expect: Expect, turns: CallTurns, rerun: Rerun) -> list[Check]:
    checks: list[Check] = []
    problems = [e for e in rerun.report.errors if not e.startswith(EXPECTED_CALLER_NOTES)]
    checks.append(Check("call completed", not problems, "; ".join(problems) or "the call ran to its end"))
    used = turns.tools()
    called = ", ".join(f"{t.name}({t.arguments})" for t in used) or "no tools"
    for tool in expect.tools:
        wanted = re.compile(tool.arguments) if tool.arguments is not None else None
        hit = any(t.name == tool.name and (wanted is None or wanted.search(t.arguments)) for t in used)
        shown = tool.name + (f" with arguments matching /{tool.arguments}/" if tool.arguments else "")
        checks.append(Check(f"tool called: {shown}", hit, f"called: {called}"))
    for name in expect.tools_not_called:
        uses = [t for t in used if t.name == name]
        checks.append(Check(f"tool not called: {name}", not uses, f"called: {called}"))
    transcript = turns.transcript()
    for pattern in expect.transcript_contains:
        found = re.search(pattern, transcript, re.MULTILINE)
        checks.append(Check(f"transcript contains /{pattern}/", found is not None, _found(found, transcript)))
    for pattern in expect.transcript_not_contains:
        found = re.search(pattern, transcript, re.MULTILINE)
        checks.append(Check(f"transcript does not contain /{pattern}/", found is None, _found(found, transcript)))
    outcome = turns.outcome
    if expect.ended_by is not None:
        ok = outcome.ended_by == expect.ended_by
        checks.append(Check(f"ended by {expect.ended_by}", ok, f"{outcome.describe()} (CallEnded: {outcome.ended})"))
    if expect.transfer_to is not None:
        ok = outcome.ended_by == "transfer" and (outcome.transfer_to or "").lower() == expect.transfer_to.lower()
        checks.append(Check(f"transferred to {expect.transfer_to}", ok, outcome.describe()))
    if expect.max_dead_air_s is not None:
        longest, at = dead_air(rerun)
        detail = f"longest silence {longest:.1f} s" + (f" at {at:.1f} s" if longest else "")
        checks.append(Check(f"no dead air over {expect.max_dead_air_s:g} s", longest <= expect.max_dead_air_s, detail))
    if expect.max_barge_ins is not None:
        ok = turns.barge_ins <= expect.max_barge_ins
        checks.append(Check(f"at most {expect.max_barge_ins} barge-ins", ok, f"{turns.barge_ins} barge-in(s)"))
    if expect.latency_p95_ms is not None:
        latencies = rerun.report.first_assistant_audio_after_speech_ms
        p95 = percentile(latencies, 95)
        detail = f"p95 {p95:.0f} ms over {len(latencies)} turn(s)" if latencies else "no replies after the caller spoke"
        checks.append(
            Check(f"turn latency p95 under {expect.latency_p95_ms:g} ms", p95 < expect.latency_p95_ms, detail)
        )
    if expect.no_model_errors:
        errors = turns.model_errors
        checks.append(Check("no model errors", not errors, "; ".join(errors) or "none"))
    return checks


def _found(found: re.Match[str] | None, transcript: str) -> str:
    if found is None:
        return "not found in the transcript"
    start = transcript.rfind("\n", 0, found.start()) + 1
    end = transcript.find("\n", found.end())
    return f"found: {transcript[start : end if end >= 0 else None]!r}"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile; +inf for no values (so a budget with nothing measured fails)."""
    if not values:
        return math.inf
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def dead_air(rerun: Rerun) -> tuple[float, float]:
    """The longest stretch with neither the caller talking nor agent audio heard, between the first
    sound and the end of the call (seconds since the caller's first frame): (length, where)."""
    spans = sorted([(h.start, h.end) for h in rerun.report.heard] + list(rerun.speech))
    if not spans:
        return 0.0, 0.0
    end = max(rerun.report.hung_up_s or 0.0, max(e for _, e in spans))
    longest, where = 0.0, 0.0
    reached = spans[0][0]
    for start, stop in [*spans, (end, end)]:
        if start - reached > longest:
            longest, where = start - reached, reached
        reached = max(reached, stop)
    return longest, where
