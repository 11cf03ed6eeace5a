"""The benchmark's Markdown: per sitting (one number of calls), the runs side by side, the ratios
of callbridge to the mainstream stack round by round, and the latency per 10 s of call.

Verdicts (the target column) judge the callbridge runs only, all of them: a target is met when
every callbridge run of the sitting meets it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

from bench_stats import Summary
from bridge_analysis import WINDOW_S, Direction
from bridge_report import RunResult, StoreCheck

TARGET_P99_MS = 20.0
GROWTH_TOLERANCE_MS = 5.0
"""Latency that never piles up: the last 10 s of a call may be this much worse at p99 than the
first 10 s (run-to-run noise), no more."""
TAINT_CORES = 0.3
"""A second in which other programs used more than this much CPU taints the run's latencies."""
PEER_LAG_MS = 20.0
"""A peer process whose loop lag p99 exceeds this could not keep up: its timestamps are late."""


def _ms(summary: Summary) -> str:
    if summary.count == 0 or math.isnan(summary.p50):
        return "n/a"
    return f"{summary.p50:.1f} / {summary.p99:.1f} / {summary.max:.1f}"


def _num(value: float, spec: str = ".1f", sign: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "all lost"  # a growth whose last window had nothing arrive
    return format(value, ("+" if sign else "") + spec)


def _verdict(ok: bool) -> str:
    return "✅" if ok else "❌"


def _all(runs: Sequence[RunResult], test: Callable[[RunResult], bool]) -> str:
    mine = [run for run in runs if run.target == "callbridge"]
    return _verdict(all(test(run) for run in mine)) if mine else ""


def title(run: RunResult, rounds: int) -> str:
    return run.target if rounds == 1 else f"{run.target} r{run.round}"


def _lost(direction: Direction) -> str:
    text = f"{direction.lost} of {direction.sent:,}"
    if direction.lost_at_hangup:
        text += f" ({direction.lost_at_hangup} at hang-up)"
    return text


def _stored(store: StoreCheck | None) -> str:
    if store is None:
        return "n/a"
    refused = f" (+{store.frames_refused_as_flood:,} refused as a flood)" if store.frames_refused_as_flood else ""
    return (
        f"{store.complete}/{store.calls} calls complete; {store.frames_stored:,} of {store.frames_sent:,} frames"
        + refused
    )


def _growth(direction: Direction, seconds: float) -> float:
    return direction.window_p99_growth(seconds)


def _growth_ok(run: RunResult) -> bool:
    growths = (_growth(run.uplink, run.seconds), _growth(run.downlink, run.seconds))
    return all(math.isnan(g) or g <= GROWTH_TOLERANCE_MS for g in growths)


def render_runs(runs: Sequence[RunResult]) -> str:
    """One column per run, in the order measured."""
    rounds = max(run.round for run in runs)
    header = "| | " + " | ".join(title(run, rounds) for run in runs) + " | target |"
    rule = "|---|" + "---|" * len(runs) + "---|"
    rows: list[tuple[str, list[str], str]] = [
        ("served by", [run.stack for run in runs], ""),
        ("simultaneous calls (peak)", [f"{r.peak_concurrent_calls} of {r.calls}, {r.seconds:g} s each" for r in runs],
         f"all {_all(runs, lambda r: r.peak_concurrent_calls == r.calls and r.failed_calls == 0)}"),
        ("uplink added latency p50 / p99 / max (ms)", [_ms(r.uplink.latency_ms) for r in runs],
         f"p99 ≤ {TARGET_P99_MS:g} {_all(runs, lambda r: r.uplink.latency_ms.p99 <= TARGET_P99_MS)}"),
        ("uplink latency from each frame's due time (Twilio's clock) p50 / p99 / max (ms)",
         [_ms(r.uplink.due_latency_ms) if r.uplink.due_latency_ms else "n/a" for r in runs], ""),
        ("downlink added latency p50 / p99 / max (ms)", [_ms(r.downlink.latency_ms) for r in runs],
         f"p99 ≤ {TARGET_P99_MS:g} {_all(runs, lambda r: r.downlink.latency_ms.p99 <= TARGET_P99_MS)}"),
        (f"p99 growth, last {WINDOW_S:g} s - first {WINDOW_S:g} s: uplink / downlink (ms)",
         [f"{_num(_growth(r.uplink, r.seconds), sign=True)} / {_num(_growth(r.downlink, r.seconds), sign=True)}"
          for r in runs], f"≤ {GROWTH_TOLERANCE_MS:g} {_all(runs, _growth_ok)}"),
        ("caller frames lost (sent → appended)", [_lost(r.uplink) for r in runs],
         f"0 {_all(runs, lambda r: r.uplink.lost == 0)}"),
        ("model audio lost (deltas → caller media)", [_lost(r.downlink) for r in runs],
         f"0 {_all(runs, lambda r: r.downlink.lost == 0 and r.clears_received == 0)}"),
        ("every event stored", [_stored(r.store) for r in runs],
         _all(runs, lambda r: r.store is not None and r.store.complete == r.calls)),
        ("server CPU per call-minute", [f"{r.server_cpu_s_per_call_minute:.3f} s ({r.server_cpu_share:.2f} cores)"
                                        for r in runs], ""),
        ("server peak RSS", [f"{r.server_peak_rss_mb:.0f} MiB" for r in runs], ""),
        ("peer process(es): CPU (cores), niceness; loop lag p99 / max (ms)",
         [f"{r.peers.cores:.2f}{f' in {r.peers.processes}' if r.peers.processes > 1 else ''}, {r.peers.nice}; "
          f"{r.peers.loop_lag_ms_p99:.1f} / {r.peers.loop_lag_ms_max:.1f}" for r in runs],
         f"lag p99 ≤ {PEER_LAG_MS:g} {_all(runs, lambda r: r.peers.loop_lag_ms_p99 <= PEER_LAG_MS)}"),
        ("caller frames sent late p99 / max (ms)",
         [f"{r.peers.send_late_ms.p99:.1f} / {r.peers.send_late_ms.max:.1f}" for r in runs],
         f"p99 ≤ {PEER_LAG_MS:g} {_all(runs, lambda r: r.peers.send_late_ms.p99 <= PEER_LAG_MS)}"),
        ("busy-loop contenders (cores)", [f"{r.peers.contenders} ({r.peers.contender_cores:.2f})" for r in runs], ""),
        ("kernel interrupts (loopback networking, cores)", [f"{r.peers.interrupt_cores:.2f}" for r in runs], ""),
        ("other programs' CPU meanwhile: mean / busiest second (cores)",
         [f"{r.peers.other_cores:.2f} / {r.peers.other_cores_peak:.2f}" for r in runs], "~0"),
        ("machine's load average as the run started (1 min)", [f"{r.peers.load_average:.2f}" for r in runs], ""),
    ]  # fmt: skip
    lines = [header, rule]
    lines += [f"| {name} | " + " | ".join(values) + f" | {target} |" for name, values, target in rows]
    return "\n".join(lines)


def _ratio(mine: float, theirs: float) -> float:
    return mine / theirs if theirs and not math.isnan(theirs) else math.nan


def render_ratios(runs: Sequence[RunResult]) -> str:
    """callbridge ÷ mainstream (and ÷ floor for CPU), paired round by round; empty without both."""
    by_round: dict[int, dict[str, RunResult]] = {}
    for run in runs:
        by_round.setdefault(run.round, {})[run.target] = run
    pairs = [(n, found) for n, found in sorted(by_round.items()) if "callbridge" in found and "mainstream" in found]
    if not pairs:
        return ""
    rows: list[tuple[str, Callable[[dict[str, RunResult]], float], str, Callable[[float], bool] | None]] = [
        ("uplink p99 ÷ mainstream's", lambda f: _ratio(f["callbridge"].uplink.latency_ms.p99,
                                                        f["mainstream"].uplink.latency_ms.p99), ".2f", None),
        ("downlink p99 ÷ mainstream's", lambda f: _ratio(f["callbridge"].downlink.latency_ms.p99,
                                                          f["mainstream"].downlink.latency_ms.p99), ".2f", None),
        ("server CPU per call-minute ÷ mainstream's", lambda f: _ratio(f["callbridge"].server_cpu_s_per_call_minute,
                                                                       f["mainstream"].server_cpu_s_per_call_minute),
         ".2f", lambda v: v <= 1.0),
        ("server CPU per call-minute ÷ floor's", lambda f: _ratio(f["callbridge"].server_cpu_s_per_call_minute,
                                                                  f["floor"].server_cpu_s_per_call_minute)
         if "floor" in f else math.nan, ".2f", None),
        ("mainstream's p99 growth: uplink (ms)", lambda f: _growth(f["mainstream"].uplink, f["mainstream"].seconds),
         "+.1f", None),
        ("mainstream's p99 growth: downlink (ms)",
         lambda f: _growth(f["mainstream"].downlink, f["mainstream"].seconds), "+.1f", None),
    ]  # fmt: skip
    several = len(pairs) > 1
    header = "| callbridge vs the others, same round | " + " | ".join(f"round {n}" for n, _ in pairs)
    header += " | median |" if several else " |"
    header += " target |"
    rule = "|---|" + "---|" * (len(pairs) + several) + "---|"
    lines = [header, rule]
    for name, value, spec, judge in rows:
        values = [value(found) for _, found in pairs]
        cells = [_num(v, spec) for v in values]
        finite = [v for v in values if not math.isnan(v)]
        middle = statistics.median(finite) if finite else math.nan
        if several:
            cells.append(_num(middle, spec))
        verdict = f"≤ 1 {_verdict(judge(middle))}" if judge is not None and finite else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def render_windows(runs: Sequence[RunResult]) -> str:
    """Latency p50 / p99 per ``WINDOW_S`` of call time, uplink · downlink, one column per run."""
    rounds = max(run.round for run in runs)
    count = max(max(len(run.uplink.windows), len(run.downlink.windows)) for run in runs)
    header = f"| per {WINDOW_S:g} s of call: up p50/p99 · down p50/p99 (ms) | "
    header += " | ".join(title(run, rounds) for run in runs) + " |"
    lines = [header, "|---|" + "---|" * len(runs)]

    def cell(direction: Direction, index: int) -> str:
        window = direction.windows[index] if index < len(direction.windows) else None
        lost = direction.windows_lost[index] if index < len(direction.windows_lost) else 0
        if window is None or window.count == 0:
            return f"{lost:,} lost" if lost else "-"
        text = f"{window.p50:.1f}/{window.p99:.1f}"
        return f"{text} ({lost:,} lost)" if lost else text

    seconds = max(run.seconds for run in runs)
    for index in range(count):
        start = index * WINDOW_S
        end = min(start + WINDOW_S, seconds)
        label = f"{start:g}-{end:g} s" if start < seconds else f"after {seconds:g} s (the hang-up)"
        cells = [f"{cell(r.uplink, index)} · {cell(r.downlink, index)}" for r in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_details(run: RunResult, rounds: int) -> str:
    """The lines under the tables: matching counts and anything that went wrong."""
    lines = [f"{title(run, rounds)} ({run.calls} calls):"]
    for name, direction in (("uplink", run.uplink), ("downlink", run.downlink)):
        lines.append(
            f"  {name}: {direction.matched:,} of {direction.sent:,} matched (in {direction.messages:,} messages; "
            f"{direction.distinct_contents:,} distinct contents), {direction.lost} lost, "
            f"{direction.duplicates} duplicated, {direction.unmatched_arrivals} unmatched arrivals, "
            f"{direction.out_of_order} out of order; mean {_num(direction.latency_ms.mean, '.2f')} ms"
            + (f"; {direction.sent_after_hangup} sent after hang-up" if direction.sent_after_hangup else "")
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
    if run.store is not None and run.store.frames_refused_as_flood:
        lines.append(
            f"  ⚠ the bridge refused {run.store.frames_refused_as_flood:,} caller frames as a flood (faster than a "
            "phone sends): callers that fell behind sent their backlog at once; they count as lost"
        )
    if run.store is not None and run.store.frames_dropped_by_uplink:
        lines.append(
            f"  the bridge dropped {run.store.frames_dropped_by_uplink:,} caller frames on the way to the model "
            "(its socket behind: oldest first, recorded), rather than let the caller's audio fall behind"
        )
    if run.peers.other_cores_peak > TAINT_CORES:
        lines.append(
            f"  ⚠ other programs used up to {run.peers.other_cores_peak:.2f} cores during this run (mean "
            f"{run.peers.other_cores:.2f}): the latencies are inflated by them; re-run on a quiet machine"
        )
    if run.peers.loop_lag_ms_p99 > PEER_LAG_MS:
        lines.append(
            f"  ⚠ the peer process fell behind (loop lag p99 {run.peers.loop_lag_ms_p99:.1f} ms): "
            "its late timestamps are part of these latencies"
        )
    if run.peers.send_late_ms.p99 > PEER_LAG_MS:
        lines.append(
            f"  ⚠ the callers sent frames up to {run.peers.send_late_ms.max:.0f} ms behind their 20 ms clock "
            f"(p99 {run.peers.send_late_ms.p99:.0f} ms): the peer process could not keep up, or the server "
            "stopped reading (its socket buffers full); the bridge saw bursts, not a steady stream"
        )
    lines += [f"  call error: {error}" for error in run.call_errors[:5]]
    lines += [f"  server log: {line}" for line in run.server_log_errors[:5]]
    return "\n".join(lines)


def render_sitting(runs: Sequence[RunResult], heading: str) -> str:
    """Everything printed for one number of calls."""
    rounds = max(run.round for run in runs)
    parts = [heading, render_runs(runs)]
    ratios = render_ratios(runs)
    if ratios:
        parts.append(ratios)
    parts.append(render_windows(runs))
    parts.append("\n".join(render_details(run, rounds) for run in runs))
    return "\n\n".join(parts)
