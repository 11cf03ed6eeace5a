"""A rerun that cannot run is one result saying why — the error itself, not the nursery that carried it."""

from __future__ import annotations

from pathlib import Path

import pytest

from callbridge.adapters.sim.fake_openai_script import Script
from callbridge.engine.agent import DEFAULT_AGENT
from callbridge.regression import suite
from callbridge.regression.rerun import ModelChoice, RerunPlan
from callbridge.regression.spec import Expect
from callbridge.regression.suite import TestCase, run_case


async def test_an_error_raised_through_nurseries_is_reported_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(plan: RerunPlan, workdir: Path, model: ModelChoice) -> None:
        raise ExceptionGroup("Exceptions from Trio nursery", [ExceptionGroup("inner", [OSError("port taken")])])

    monkeypatch.setattr(suite, "rerun_call", broken)
    plan = RerunPlan(caller=[], script=Script(turns=[]), agent=DEFAULT_AGENT)
    result = await run_case(TestCase(name="t", source="t.toml", plan=plan, expect=Expect()), ModelChoice())

    assert not result.passed
    assert result.error == "OSError: port taken"
