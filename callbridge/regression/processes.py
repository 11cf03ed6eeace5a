"""Tests spread over processes, so every core carries reruns.

A rerun is a whole engine, the simulated model and the caller, all in one trio run: one process uses
one core however many tests it runs at once, and 20 calls need more than one core
(``benchmarks/regression.py``). The suite's tests are dealt round-robin to N worker processes
(``python -m callbridge test ARG… --worker-results``), each running its share at once; a worker prints
each result as one JSON line as it finishes (``{"index", "result"}``), which this process turns into
progress lines and the run. A worker that dies leaves its unfinished tests as errors saying so.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import trio

from callbridge.regression.suite import TestCase, TestResult


class WorkerLine(msgspec.Struct):
    index: int
    result: TestResult


@dataclass(frozen=True)
class WorkerOptions:
    store_url: str
    model: str
    agent: str | None = None
    live_tools: bool = False


def worker_line(index: int, result: TestResult) -> bytes:
    return msgspec.json.encode(WorkerLine(index, result)) + b"\n"


def worker_argv(arguments: Sequence[str], options: WorkerOptions, concurrency: int) -> list[str]:
    argv = [sys.executable, "-m", "callbridge", "test", *arguments, "--store", options.store_url]
    argv += ["--model", options.model, "--concurrency", str(concurrency), "--worker-results"]
    if options.agent:
        argv += ["--agent", options.agent]
    if options.live_tools:
        argv.append("--live-tools")
    return argv


async def run_in_processes(
    cases: Sequence[TestCase],
    options: WorkerOptions,
    *,
    processes: int,
    concurrency: int,
    progress: Callable[[int, int, TestResult], None] | None = None,
) -> list[TestResult]:
    """Every case, over ``processes`` workers running ``concurrency`` at once in all; results in
    the cases' order."""
    shards = [list(range(start, len(cases), processes)) for start in range(processes)]
    shards = [shard for shard in shards if shard]
    per_worker = max(1, math.ceil(concurrency / len(shards)))
    results: list[TestResult | None] = [None] * len(cases)
    done = 0

    def finished(index: int, result: TestResult) -> None:
        nonlocal done
        results[index] = result
        done += 1
        if progress is not None:
            progress(done, len(cases), result)

    async def worker(shard: list[int]) -> None:
        argv = worker_argv([cases[i].argument for i in shard], options, per_worker)
        process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        stderr = bytearray()

        async def collect_stderr() -> None:
            assert process.stderr is not None
            async for chunk in process.stderr:
                stderr.extend(chunk[-4000:])
                del stderr[:-4000]

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(collect_stderr)
                assert process.stdout is not None
                pending = b""
                async for chunk in process.stdout:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            item = msgspec.json.decode(line, type=WorkerLine)
                            finished(shard[item.index], item.result)
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        tail = bytes(stderr).decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        for index in shard:
            if results[index] is None:
                case = cases[index]
                error = f"the test's worker process exited with status {process.returncode}: {tail[0]}"
                finished(index, TestResult(name=case.name, source=case.source, passed=False, error=error))

    async with trio.open_nursery() as nursery:
        for shard in shards:
            nursery.start_soon(worker, shard)
    return [result for result in results if result is not None]
