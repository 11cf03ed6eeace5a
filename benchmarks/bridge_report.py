"""The benchmark's result: what the event store holds, the numbers, and the Markdown table.

``check_store`` opens the store the server wrote (after it stopped and flushed) and checks, per
call, ``CallStarted``, ``CallEnded`` and that the stored caller audio covers every frame the
caller sent (frames counted in ``CallerAudioReceived.frame_sizes``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgspec
from bench_stats import Summary
from bridge_analysis import Direction
from bridge_callers import CpuSample
from peer_callers import CallLog

from callbridge.engine.events import CallEnded, CallerAudioReceived, CallStarted, TaskCrashed
from callbridge.engine.store import EventStore

TARGET_P99_MS = 20.0
TAINT_CORES = 0.3
"""A second in which other programs used more than this much CPU taints the run's latencies."""


class StoreCheck(msgspec.Struct, kw_only=True):
    calls: int
    complete: int
    """Calls with CallStarted, CallEnded and every sent caller frame stored."""
    missing_started: int
    missing_ended: int
    frames_sent: int
    frames_stored: int
    events: int
    end_reasons: dict[str, int]
    tasks_crashed: int


def check_store(url: str, logs: Sequence[CallLog]) -> StoreCheck:
    store = EventStore(url)
    try:
        complete = no_start = no_end = sent_total = stored_total = events = crashed = 0
        reasons: Counter[str] = Counter()
        for log in logs:
            recorded = [r.event for r in store.read_call(log.call_sid)] if log.call_sid else []
            events += len(recorded)
            started = any(isinstance(e, CallStarted) for e in recorded)
            ended = [e for e in recorded if isinstance(e, CallEnded)]
            stored = sum(len(e.frame_sizes) for e in recorded if isinstance(e, CallerAudioReceived))
            crashed += sum(1 for e in recorded if isinstance(e, TaskCrashed))
            reasons.update(e.reason for e in ended)
            no_start += not started
            no_end += not ended
            sent_total += len(log.sent)
            stored_total += stored
            complete += started and bool(ended) and stored >= len(log.sent)
    finally:
        store.close()
    return StoreCheck(
        calls=len(logs),
        complete=complete,
        missing_started=no_start,
        missing_ended=no_end,
        frames_sent=sent_total,
        frames_stored=stored_total,
        events=events,
        end_reasons=dict(reasons),
        tasks_crashed=crashed,
    )


class PeerLoad(msgspec.Struct, kw_only=True):
    """How busy the peers were: their CPU and how late their event loops woke up (a late peer
    inflates the latencies it timestamps)."""

    model_cores: float
    model_loop_lag_ms_p99: float
    callers_cores: float
    callers_loop_lag_ms_p99: float
    caller_processes: int
    interrupt_cores: float
    """Kernel interrupt time (loopback networking for all of the above), charged to no process."""
    other_cores: float
    """CPU the rest of the machine used meanwhile, on average (other programs compete for the cores)."""
    other_cores_peak: float
    """The busiest second of the rest of the machine."""


class RunResult(msgspec.Struct, kw_only=True):
    target: str
    """``bridge`` (callbridge serve) or ``baseline`` (the trivial forwarding proxy)."""
    calls: int
    seconds: float
    lockstep: bool
    """Every call spoke at the same moments (else their turns were staggered)."""
    peak_concurrent_calls: int
    failed_calls: int
    call_errors: list[str]
    clears_received: int
    call_minutes: float
    uplink: Direction
    downlink: Direction
    server_cpu_s: float
    server_cpu_s_per_call_minute: float
    server_cpu_share: float
    """Server CPU over the calls' wall time, in cores (1.0 = one core busy)."""
    server_peak_rss_mb: float
    store: StoreCheck | None
    peers: PeerLoad
    server_log_errors: list[str]
    cpu_timeline: list[CpuSample]


def _ms(summary: Summary) -> str:
    if summary.count == 0 or math.isnan(summary.p50):
        return "n/a"
    return f"{summary.p50:.1f} / {summary.p99:.1f} / {summary.max:.1f}"


def _verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def render_table(runs: Sequence[RunResult]) -> str:
    """The Markdown table: one column per run (the bridge, then the baseline if measured)."""
    main = runs[0]
    header = "| | " + " | ".join(_title(run) for run in runs) + " | target |"
    rule = "|---|" + "---|" * len(runs) + "---|"
    rows: list[tuple[str, list[str], str]] = [
        ("simultaneous calls (peak)", [f"{r.peak_concurrent_calls} of {r.calls}, {r.seconds:g} s each" for r in runs],
         f"{main.calls} {_verdict(main.peak_concurrent_calls == main.calls and main.failed_calls == 0)}"),
        ("uplink added latency p50 / p99 / max (ms)", [_ms(r.uplink.latency_ms) for r in runs],
         f"p99 ≤ {TARGET_P99_MS:g} {_verdict(main.uplink.latency_ms.p99 <= TARGET_P99_MS)}"),
        ("downlink added latency p50 / p99 / max (ms)", [_ms(r.downlink.latency_ms) for r in runs],
         f"p99 ≤ {TARGET_P99_MS:g} {_verdict(main.downlink.latency_ms.p99 <= TARGET_P99_MS)}"),
        ("caller frames lost (sent → appended)", [_lost(r.uplink) for r in runs],
         f"0 {_verdict(main.uplink.lost == 0)}"),
        ("model audio lost (deltas → caller media)", [_lost(r.downlink) for r in runs],
         f"0 {_verdict(main.downlink.lost == 0 and main.clears_received == 0)}"),
        ("every event stored", [_stored(r.store) for r in runs],
         _verdict(main.store is not None and main.store.complete == main.calls)),
        ("server CPU per call-minute", [f"{r.server_cpu_s_per_call_minute:.3f} s ({r.server_cpu_share:.2f} cores)"
                                        for r in runs], ""),
        ("server peak RSS", [f"{r.server_peak_rss_mb:.0f} MiB" for r in runs], ""),
        ("peers: model / callers CPU (cores), loop lag p99 (ms)", [_peers(r) for r in runs], ""),
        ("kernel interrupts (loopback networking, cores)", [f"{r.peers.interrupt_cores:.2f}" for r in runs], ""),
        ("other programs' CPU meanwhile: mean / busiest second (cores)",
         [f"{r.peers.other_cores:.2f} / {r.peers.other_cores_peak:.2f}" for r in runs], "~0"),
    ]  # fmt: skip
    lines = [header, rule]
    lines += [f"| {name} | " + " | ".join(values) + f" | {target} |" for name, values, target in rows]
    return "\n".join(lines)


def _title(run: RunResult) -> str:
    return "callbridge serve" if run.target == "bridge" else "baseline: trivial forwarder"


def _lost(direction: Direction) -> str:
    text = f"{direction.lost} of {direction.sent:,}"
    if direction.lost_at_hangup:
        text += f" ({direction.lost_at_hangup} at hang-up)"
    return text


def _stored(store: StoreCheck | None) -> str:
    if store is None:
        return "n/a"
    return f"{store.complete}/{store.calls} calls complete; {store.frames_stored:,} of {store.frames_sent:,} frames"


def _peers(run: RunResult) -> str:
    peers = run.peers
    return (
        f"{peers.model_cores:.2f} / {peers.callers_cores:.2f}; "
        f"{peers.model_loop_lag_ms_p99:.1f} / {peers.callers_loop_lag_ms_p99:.1f}"
    )


def render_details(run: RunResult) -> str:
    """The lines under the table: matching counts and anything that went wrong."""
    lines = [f"{_title(run)}:"]
    for name, direction in (("uplink", run.uplink), ("downlink", run.downlink)):
        lines.append(
            f"  {name}: {direction.matched:,} of {direction.sent:,} matched (in {direction.messages:,} messages; "
            f"{direction.distinct_contents:,} distinct "
            f"contents), {direction.lost} lost, {direction.duplicates} duplicated, "
            f"{direction.unmatched_arrivals} unmatched arrivals, {direction.out_of_order} out of order; "
            f"mean {direction.latency_ms.mean:.2f} ms"
            + (f"; worst calls (index, lost): {direction.worst_calls}" if direction.worst_calls else "")
        )
        setup = direction.setup_latency_ms
        if setup is not None and setup.count:
            lines.append(
                f"    of which {setup.count:,} sent before the call's model session was open (set-up): "
                f"p50 / p99 / max {_ms(setup)} ms"
            )
    lines.append(
        f"  server: {run.server_cpu_s:.1f} CPU s over {run.call_minutes:.1f} call-minutes; "
        f"clears received by callers: {run.clears_received}; failed calls: {run.failed_calls}"
    )
    if run.store is not None:
        store = run.store
        lines.append(
            f"  store: {store.events:,} events; missing CallStarted {store.missing_started}, CallEnded "
            f"{store.missing_ended}; end reasons {store.end_reasons}; TaskCrashed {store.tasks_crashed}"
        )
    if run.peers.other_cores_peak > TAINT_CORES:
        lines.append(
            f"  ⚠ other programs used up to {run.peers.other_cores_peak:.2f} cores during this run (mean "
            f"{run.peers.other_cores:.2f}): the latencies are inflated by them; re-run on a quiet machine"
        )
    lines += [f"  call error: {error}" for error in run.call_errors[:5]]
    lines += [f"  server log: {line}" for line in run.server_log_errors[:5]]
    return "\n".join(lines)
