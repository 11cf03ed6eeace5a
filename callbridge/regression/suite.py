"""Running tests: many at once (bounded), one progress line per finished test, each a fresh call
(``rerun``) checked (``checks``) and compared with its original (``diff``).

Preparing a suite (reading test files, recorded calls, agents) happens before anything runs, so a bad
input is one clear line and exit 2 before any call is placed.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import trio

from callbridge.projections.call_turns import CallTurns, call_turns
from callbridge.regression.checks import Check, run_checks
from callbridge.regression.diff import CallDiff, diff_calls
from callbridge.regression.load import LoopLag, overload_note
from callbridge.regression.rerun import ModelChoice, RerunPlan, rerun_call
from callbridge.regression.spec import Expect

DEFAULT_CONCURRENCY = 20


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest test class

    name: str
    source: str
    """The test file, or the recorded call's id when it was named on the command line."""
    plan: RerunPlan
    expect: Expect
    original: CallTurns | None = None
    argument: str = ""
    """What names this test on the command line (its file, or the call's id): for worker processes."""
    notes: tuple[str, ...] = ()
    """What the reader should know about this rerun (shown with the result)."""


class TestResult(msgspec.Struct, kw_only=True):
    __test__ = False  # not a pytest test class

    name: str
    source: str
    passed: bool
    original_call: str | None = None
    new_call: str = ""
    error: str | None = None
    """The run itself broke (not an assertion): what happened."""
    checks: list[Check] = []
    diff: CallDiff | None = None
    seconds: float = 0.0
    notes: list[str] = []

    @property
    def failures(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]


def _leaves(error: BaseException) -> list[BaseException]:
    """What went wrong, out of the nurseries' exception groups it came through."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def run_case(case: TestCase, model: ModelChoice, lag: LoopLag | None = None) -> TestResult:
    started = time.monotonic()
    original = case.original.call_id if case.original is not None else None
    try:
        with tempfile.TemporaryDirectory(prefix="callbridge-test-") as workdir:
            rerun = await rerun_call(case.plan, Path(workdir), model)
    except Exception as error:  # one broken run must not stop the suite: it is reported as an error
        return TestResult(
            name=case.name,
            source=case.source,
            passed=False,
            original_call=original,
            error="; ".join(f"{type(leaf).__name__}: {leaf}" for leaf in _leaves(error)),
            seconds=time.monotonic() - started,
        )
    now = call_turns(rerun.events)
    checks = run_checks(case.expect, now, rerun)
    timed = case.expect.max_dead_air_s is not None or case.expect.latency_p95_ms is not None
    overloaded = overload_note(lag.worst_between(*rerun.call_window)) if lag is not None and timed else None
    return TestResult(
        name=case.name,
        source=case.source,
        passed=all(check.ok for check in checks),
        original_call=original,
        new_call=rerun.call_id,
        checks=checks,
        diff=diff_calls(case.original, now),
        seconds=time.monotonic() - started,
        notes=[*case.notes, *rerun.notes, *([overloaded] if overloaded else [])],
    )


async def run_suite(
    cases: list[TestCase],
    model: ModelChoice,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int, TestResult], None] | None = None,
    on_result: Callable[[int, TestResult], None] | None = None,
) -> list[TestResult]:
    """Every case, at most ``concurrency`` at once; results in the cases' order. ``progress`` is
    told (done, total, result) as each finishes, ``on_result`` (the case's index, result)."""
    results: list[TestResult | None] = [None] * len(cases)
    limiter = trio.CapacityLimiter(max(1, concurrency))
    lag = LoopLag()
    done = 0

    async def one(index: int) -> None:
        nonlocal done
        async with limiter:
            result = await run_case(cases[index], model, lag)
        results[index] = result
        done += 1
        if on_result is not None:
            on_result(index, result)
        if progress is not None:
            progress(done, len(cases), result)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lag.run)
        async with trio.open_nursery() as tests:
            for index in range(len(cases)):
                tests.start_soon(one, index)
        nursery.cancel_scope.cancel()
    return [result for result in results if result is not None]
