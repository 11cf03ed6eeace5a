"""A suite's results for people and for CI: text (progress lines, failures, the diff side by side),
JSON (``--json``, the console's runs) and JUnit XML (``--junit FILE``)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import zip_longest
from typing import TextIO
from xml.etree import ElementTree as ET

import msgspec

from callbridge.regression.diff import CallDiff
from callbridge.regression.suite import TestResult

COLUMN = 44
STUB_MARK = "  [stub]"
"""After a tool of the rerun a stub answered (it did not run)."""


def progress_line(done: int, total: int, result: TestResult) -> str:
    """``[ 3/20] PASS order status (CA… → CA…, 12.3 s)``."""
    width = len(str(total))
    mark = "PASS" if result.passed else ("ERROR" if result.error else "FAIL")
    calls = f"{result.original_call} -> {result.new_call}" if result.original_call else result.new_call
    why = ""
    if result.error:
        why = f": {result.error}"
    elif result.failures:
        why = f": {result.failures[0].name} ({result.failures[0].detail})"
    return f"[{done:>{width}}/{total}] {mark} {result.name} ({calls}, {result.seconds:.1f} s){why}"


BAR_WIDTH = 30


class Progress:
    """One line per finished test; on a terminal also a bar under them (``[#####·····] 8/20, 3
    failed``), redrawn as each test finishes and cleared at the end."""

    def __init__(self, out: TextIO, total: int) -> None:
        self.out = out
        self.total = total
        self.failed = 0
        isatty = getattr(out, "isatty", None)
        self.bar = bool(isatty and isatty())
        if self.bar:
            self._draw(0)

    def finished(self, done: int, total: int, result: TestResult) -> None:
        self.failed += not result.passed
        prefix = "\r\033[K" if self.bar else ""
        self.out.write(f"{prefix}{progress_line(done, total, result)}\n")
        if self.bar and done < total:
            self._draw(done)
        self.out.flush()

    def _draw(self, done: int) -> None:
        filled = BAR_WIDTH * done // max(1, self.total)
        failed = f", {self.failed} failed" if self.failed else ""
        self.out.write(f"[{'#' * filled}{'·' * (BAR_WIDTH - filled)}] {done}/{self.total}{failed}")
        self.out.flush()


def render_diff(diff: CallDiff) -> str:
    """Turns side by side: then on the left, now on the right; ``!`` marks a turn that changed."""
    lines: list[str] = []
    if diff.compared:
        lines.append(f"  {'':3}{'then':<{COLUMN}} | now")
    for turn in diff.turns:
        mark = "!" if turn.changed else " "
        who = f"caller: {turn.caller}" if turn.caller else "(before the caller spoke)"
        changed = f"   [changed: {', '.join(turn.changed)}]" if turn.changed else ""
        lines.append(f"  {mark} turn {turn.index}: {who}{changed}")
        then = [f"agent: {said}" for said in turn.agent_then] + [f"tool: {t}" for t in turn.tools_then]
        now = [f"agent: {said}" for said in turn.agent_now] + [
            f"tool: {t}{STUB_MARK if stubbed else ''}"
            for t, stubbed in zip_longest(turn.tools_now, turn.tools_now_stubbed[: len(turn.tools_now)])
        ]
        for left, right in _pairs(then, now):
            if diff.compared:
                lines.append(f"    {_cut(left):<{COLUMN}} | {right}")
            else:
                lines.append(f"    {right}")
    if diff.compared:
        mark = "!" if diff.outcome_changed else " "
        lines.append(f"  {mark} ended: {_cut(diff.outcome_then):<{COLUMN - 7}} | {diff.outcome_now}")
    else:
        lines.append(f"    ended: {diff.outcome_now}")
    return "\n".join(lines)


def _pairs(left: list[str], right: list[str]) -> list[tuple[str, str]]:
    count = max(len(left), len(right))
    return [(left[i] if i < len(left) else "", right[i] if i < len(right) else "") for i in range(count)]


def _cut(text: str) -> str:
    return text if len(text) <= COLUMN else text[: COLUMN - 1] + "…"


def render_text(results: Sequence[TestResult], *, show_diff_of_passed: bool = False) -> str:
    """The summary after the progress lines: each failure's checks and diff, then the counts."""
    blocks: list[str] = []
    for result in results:
        quiet = not result.notes and (result.diff is None or result.diff.empty)
        if result.passed and not show_diff_of_passed and quiet:
            continue
        head = f"{'PASS' if result.passed else 'FAIL'} {result.name} ({result.source})"
        lines = [head]
        if result.error:
            lines.append(f"  error: {result.error}")
        lines += [f"  note: {note}" for note in result.notes]
        for check in result.checks:
            lines.append(f"  {'ok ' if check.ok else 'NOT'} {check.name}: {check.detail}")
        if result.diff is not None:
            title = "diff (then | now):" if result.diff.compared else "the call:"
            lines.append(f"  {title}" + (" no differences" if result.diff.compared and result.diff.empty else ""))
            lines.append(render_diff(result.diff))
        blocks.append("\n".join(lines))
    passed = sum(result.passed for result in results)
    blocks.append(f"{passed} passed, {len(results) - passed} failed, {len(results)} test(s)")
    return "\n\n".join(blocks) + "\n"


class RunRecord(msgspec.Struct, kw_only=True):
    """One ``callbridge test`` run, as ``--json`` prints it and the console lists it."""

    run_id: str
    started_at: float
    finished_at: float
    model: str
    passed: int
    failed: int
    results: list[TestResult]


def run_record(results: Sequence[TestResult], *, started_at: float, model: str) -> RunRecord:
    passed = sum(result.passed for result in results)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
    return RunRecord(
        run_id=f"{stamp}-{int(started_at * 1000) % 1000:03d}",
        started_at=started_at,
        finished_at=time.time(),
        model=model,
        passed=passed,
        failed=len(results) - passed,
        results=list(results),
    )


def render_json(record: RunRecord) -> bytes:
    return msgspec.json.format(msgspec.json.encode(record), indent=2) + b"\n"


def render_junit(record: RunRecord) -> bytes:
    """JUnit XML: one testsuite, a testcase per test; a failing check is a ``failure`` (its message the
    first failed check, its text every check and the diff), a broken run an ``error``."""
    suite = ET.Element(
        "testsuite",
        name="callbridge",
        tests=str(len(record.results)),
        failures=str(sum(1 for r in record.results if not r.passed and not r.error)),
        errors=str(sum(1 for r in record.results if r.error)),
        time=f"{record.finished_at - record.started_at:.3f}",
    )
    for result in record.results:
        case = ET.SubElement(
            suite, "testcase", classname="callbridge.test", name=result.name, time=f"{result.seconds:.3f}"
        )
        details = "\n".join(f"{'ok ' if c.ok else 'NOT'} {c.name}: {c.detail}" for c in result.checks)
        if result.diff is not None:
            details += "\n" + render_diff(result.diff)
        if result.error:
            ET.SubElement(case, "error", message=result.error).text = result.error
        elif result.failures:
            first = result.failures[0]
            ET.SubElement(case, "failure", message=f"{first.name}: {first.detail}").text = details
        ET.SubElement(case, "system-out").text = f"source: {result.source}\nnew call: {result.new_call}\n{details}"
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True) + b"\n"
