"""``callbridge test [CALL_ID | TEST.toml | FOLDER ...] [--last N [--of-agent NAME]] [--junit FILE]
[--json] [--agent FILE] [--store URL] [--concurrency K] [--model sim|openai] [--live-tools]``.

Exit 0 when every test passed, 1 when one failed (or broke), 2 on bad input (one line naming the
file, line and key, or the call) before any call is placed. Each finished test prints one line
(``[ 3/20] PASS …``); then the failures with their checks and the diff against the original. Every
run is kept in the data folder's ``test-runs/`` for the console's Tests view. A recorded call's tools
answer what they answered then (``tool_answers.py``) unless ``--live-tools`` runs them for real; a test
file's ``[tools.NAME]`` stubs answer either way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TextIO

import trio

from callbridge.engine.agent import DEFAULT_AGENT, Agent, AgentError, load_agent
from callbridge.engine.events import CallStarted, Event
from callbridge.engine.store import EventStore, StoreOpenError, open_existing_store
from callbridge.projections.test_runs import TEST_RUNS_DIR, store_run
from callbridge.projections.views_db import data_dir_for_store
from callbridge.regression.output import Progress, render_json, render_junit, render_text, run_record
from callbridge.regression.processes import WorkerOptions, run_in_processes, worker_line
from callbridge.regression.recorded import (
    RecordedCallError,
    caller_steps,
    last_calls,
    model_script,
    read_recorded_call,
    stored_agent,
    stored_default_session,
    suggested_expect,
)
from callbridge.regression.rerun import ModelChoice, RerunPlan, starting_session
from callbridge.regression.scenario import scenario_agent, scenario_caller, scenario_script
from callbridge.regression.spec import LoadedSpec, SpecError, load_spec
from callbridge.regression.suite import TestCase, TestResult, run_suite
from callbridge.regression.tool_answers import ToolStubs, recorded_answers
from callbridge.regression.tool_secrets import missing_secrets
from callbridge.workers import default_workers

EXTRA_SECONDS = 30.0
"""A rerun may last this much longer than the recorded call before the caller hangs up anyway."""


class BadInput(Exception):
    """Exit 2 with this one line."""


def test_cli(args: argparse.Namespace, store_url: str, *, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not getattr(args, "verbose", False):  # the reruns' servers would log every call: only trouble is shown
        for noisy in ("callbridge", "mcp", "hypercorn"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        model = _model(args)
        cases = _cases(args, store_url, model.kind)
    except BadInput as error:
        print(f"callbridge test: {error}", file=sys.stderr)
        return 2
    if getattr(args, "worker_results", False):
        return _worker(cases, model, args.concurrency)
    started = time.time()
    shown = sys.stderr if args.json else out

    progress = Progress(shown, len(cases)).finished

    processes = min(len(cases), args.processes if args.processes is not None else default_workers())
    if processes > 1:
        options = WorkerOptions(
            store_url=store_url, model=model.kind, agent=args.agent, live_tools=getattr(args, "live_tools", False)
        )
        results = trio.run(
            lambda: run_in_processes(
                cases, options, processes=processes, concurrency=args.concurrency, progress=progress
            )
        )
    else:
        results = trio.run(lambda: run_suite(cases, model, concurrency=args.concurrency, progress=progress))
    record = run_record(results, started_at=started, model=model.kind)
    if args.json:
        out.write(render_json(record).decode())
    else:
        out.write("\n" + render_text(results))
    if args.junit:
        try:
            Path(args.junit).write_bytes(render_junit(record))
        except OSError as error:
            print(f"callbridge test: cannot write {args.junit}: {error.strerror or error}", file=sys.stderr)
            return 2
    try:
        store_run(data_dir_for_store(store_url), record.run_id, json.loads(render_json(record)))
    except OSError as error:
        print(f"callbridge test: the run was not kept in {TEST_RUNS_DIR}/: {error}", file=sys.stderr)
    return 0 if record.failed == 0 else 1


def _worker(cases: list[TestCase], model: ModelChoice, concurrency: int) -> int:
    """``--worker-results``: a worker process of a suite run over processes: each result, as it
    finishes, one JSON line on stdout (``processes.py`` reads them)."""

    def emit(index: int, result: TestResult) -> None:
        sys.stdout.buffer.write(worker_line(index, result))
        sys.stdout.buffer.flush()

    trio.run(lambda: run_suite(cases, model, concurrency=concurrency, on_result=emit))
    return 0


def _model(args: argparse.Namespace) -> ModelChoice:
    key = os.environ.get("OPENAI_API_KEY") or None
    kind = args.model or ("openai" if key else "sim")
    if kind == "openai" and not key:
        raise BadInput("--model openai needs OPENAI_API_KEY; unset --model for the simulated model")
    return ModelChoice(kind=kind, api_key=key, realtime_url=os.environ.get("OPENAI_REALTIME_URL") or None)


def _agent(path: str | Path | None) -> Agent:
    if not path:
        return DEFAULT_AGENT
    try:
        return load_agent(path)
    except AgentError as error:
        raise BadInput(str(error)) from None


def _test_files(given: str) -> list[Path]:
    path = Path(given)
    if path.is_dir():
        files = sorted(path.glob("*.toml"))
        if not files:
            raise BadInput(f"{given}: a folder with no test files (*.toml) in it")
        return files
    if given.endswith(".toml") or path.exists():
        if not path.is_file():
            raise BadInput(f"{given}: no such test file")
        return [path]
    return []


def _cases(args: argparse.Namespace, store_url: str, model_kind: str) -> list[TestCase]:
    given_agent = args.agent or os.environ.get("CALLBRIDGE_AGENT")
    default_agent = _agent(given_agent) if given_agent else None
    specs: list[LoadedSpec] = []
    call_ids: list[str] = []
    for given in args.tests:
        files = _test_files(given)
        if not files:
            call_ids.append(given)
        for file in files:
            try:
                specs.append(load_spec(file))
            except SpecError as error:
                raise BadInput(str(error)) from None
    if args.of_agent and args.last is None:
        raise BadInput("--of-agent NAME goes with --last N (the last N calls that agent answered)")
    if args.last is not None and args.last < 1:
        raise BadInput("--last N: N is at least 1")
    if args.concurrency < 1:
        raise BadInput("--concurrency K: K is at least 1")
    if args.processes is not None and args.processes < 1:
        raise BadInput("--processes N: N is at least 1")
    if args.junit and not Path(args.junit).resolve().parent.is_dir():
        raise BadInput(f"--junit {args.junit}: its folder does not exist")
    if not specs and not call_ids and args.last is None:
        raise BadInput("name what to test: a recorded call (CA…), a test file (.toml), a folder of them, or --last N")
    live_tools = bool(getattr(args, "live_tools", False))
    cases: list[TestCase] = []
    needs_store = bool(call_ids) or args.last is not None or any(s.spec.call for s in specs)
    store = _open_store(store_url) if needs_store else None
    try:
        if store is not None and args.last is not None:
            found = last_calls(store, args.last, args.of_agent)
            if not found:
                whose = f" answered by agent {args.of_agent!r}" if args.of_agent else ""
                raise BadInput(f"--last {args.last}: no recorded calls{whose} in {store.description}")
            call_ids += [call_id for call_id in found if call_id not in call_ids]
        for call_id in call_ids:
            cases.append(_recorded_case(store, call_id, call_id, None, default_agent, model_kind, live_tools))
        for loaded in specs:
            agent = _agent(loaded.agent_path()) if loaded.spec.agent else default_agent
            if loaded.spec.call:
                cases.append(
                    _recorded_case(store, loaded.spec.call, str(loaded.path), loaded, agent, model_kind, live_tools)
                )
            else:
                cases.append(_scenario_case(loaded, agent or DEFAULT_AGENT))
    finally:
        if store is not None:
            store.close()
    for case in cases:  # a tool that runs for real needs its secret: say so now, not once per call
        for missing in missing_secrets(case.plan.agent, case.plan.stubs, os.environ):
            raise BadInput(f"{case.source}: {missing}")
    return cases


def _open_store(store_url: str) -> EventStore:
    try:
        return open_existing_store(store_url)
    except (ValueError, StoreOpenError) as error:
        raise BadInput(str(error)) from None


def _recorded_case(
    store: EventStore | None,
    call_id: str,
    source: str,
    loaded: LoadedSpec | None,
    agent: Agent | None,
    model_kind: str,
    live_tools: bool = False,
) -> TestCase:
    """A recorded call's test. Its agent: the test's, else ``--agent``/``CALLBRIDGE_AGENT``, else
    today's version of the profile that answered the call (from the store), else the built-in one.
    Its tools: the test file's stubs, then what they answered then (``live_tools``: run for real)."""
    assert store is not None
    try:
        recorded = read_recorded_call(store, call_id)
    except RecordedCallError as error:
        raise BadInput(f"{source}: {error}" if loaded else str(error)) from None
    turns = recorded.turns
    if agent is None:
        agent = stored_agent(store, turns.agent_name) or DEFAULT_AGENT
    first, last = recorded.events[0].at, recorded.events[-1].at
    plan = RerunPlan(
        caller=caller_steps(recorded),
        script=model_script(turns),
        agent=agent,
        from_number=turns.from_number or "+15005550006",
        to_number=turns.to_number or "+15005550001",
        max_duration_s=max(10.0, last - first) + EXTRA_SECONDS,
        default_session=stored_default_session(store),
        stubs=_recorded_stubs(recorded.events, call_id, loaded, live_tools),
    )
    try:
        expect = loaded.spec.expect if loaded is not None else suggested_expect(turns)
    except SpecError as error:  # what happened could not be said as assertions: say so, run nothing
        raise BadInput(
            f"call {call_id}: no assertions could be suggested ({error}); save it as a test and edit it"
        ) from None
    name = loaded.name if loaded is not None else f"call {call_id}"
    argument = str(loaded.path) if loaded is not None else call_id
    notes = _instructions_note(recorded.events, plan, model_kind)
    return TestCase(name=name, source=source, plan=plan, expect=expect, original=turns, argument=argument, notes=notes)


def _recorded_stubs(events: list[Event], call_id: str, loaded: LoadedSpec | None, live_tools: bool) -> ToolStubs | None:
    given = loaded.spec.tools if loaded is not None else {}
    if live_tools:
        return ToolStubs(given=given, call_id=call_id) if given else None
    return ToolStubs(given=given, recorded=recorded_answers(events), call_id=call_id)


SIM_INSTRUCTIONS_NOTE = (
    "the instructions differ from the recorded call's, and the simulated model cannot follow instructions "
    "(it answers as the agent answered then): set OPENAI_API_KEY to see what they change"
)


def _instructions_note(events: list[Event], plan: RerunPlan, model_kind: str) -> tuple[str, ...]:
    """A note when the rerun's instructions changed but the simulated model answers: it says so."""
    if model_kind != "sim":
        return ()
    started = next((e for e in events if isinstance(e, CallStarted)), None)
    then = started.session_config.get("instructions") if started is not None else None
    return (SIM_INSTRUCTIONS_NOTE,) if then is not None and starting_session(plan).get("instructions") != then else ()


def _scenario_case(loaded: LoadedSpec, agent: Agent) -> TestCase:
    spec = loaded.spec
    plan = RerunPlan(
        caller=scenario_caller(spec),
        script=scenario_script(spec),
        agent=scenario_agent(spec, agent),
        from_number=spec.from_number,
        to_number=spec.to_number,
        stubs=ToolStubs(given=spec.tools) if spec.tools else None,
    )
    return TestCase(name=loaded.name, source=str(loaded.path), plan=plan, expect=spec.expect, argument=str(loaded.path))
