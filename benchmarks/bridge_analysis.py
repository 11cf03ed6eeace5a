"""Turning the peers' timings into the numbers the benchmark reports (pure, no I/O).

Uplink: every caller frame carries its (call, frame) tag, so each ``input_audio_buffer.append`` the
model received is matched to the exact frame sent; latency = received - sent. Frames never
received are lost. A frame lost in the last ``HANGUP_WINDOW_S`` before the caller's ``stop`` is
reported apart (it was in the bridge when the call ended) but still counts as lost.

Downlink: per call, the model's audio deltas (all its sessions, in send order) and the caller's
received media frames (in arrival order) are aligned in order by fingerprint: each received frame
consumes the next delta with the same content, and deltas skipped over are lost. Delivery on one
call is FIFO, so this is exact even though replies may repeat content. Deltas the model sent after
the caller had hung up could not be delivered: they are counted apart, not as lost.

Latencies are also summarized per ``WINDOW_S`` of call time (uplink: by the frame's place in the
call; downlink: by when the model sent the delta, from the call's first frame), so latency that
grows during a call — a backlog piling up somewhere — shows as a later window's p99 above the first's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import msgspec
from bench_stats import Summary, summarize
from peer_callers import CallLog
from peer_fake import SessionTimings

HANGUP_WINDOW_S = 1.0
WINDOW_S = 10.0
FRAME_S = 0.02


class Direction(msgspec.Struct, kw_only=True):
    sent: int
    messages: int
    """Messages that carried them (appends; media frames): fewer than ``sent`` when coalesced."""
    matched: int
    lost: int
    lost_at_hangup: int = 0
    duplicates: int = 0
    unmatched_arrivals: int = 0
    """Arrivals that matched nothing sent (must be 0: a tag or fingerprint the peer never sent)."""
    out_of_order: int = 0
    distinct_contents: int = 0
    latency_ms: Summary
    setup_latency_ms: Summary | None = None
    """Uplink frames sent before the call's model session was open (they wait for it): a subset
    of ``latency_ms``, shown apart because it is call set-up, not forwarding."""
    worst_calls: list[tuple[int, int]] = []
    """(call index, frames lost) for the calls that lost most."""
    sent_after_hangup: int = 0
    """Downlink: deltas the model sent after the caller's ``stop`` (undeliverable; not in ``sent``)."""
    windows: list[Summary] = []
    """Latency per ``WINDOW_S`` of call time: ``windows[0]`` is the first 10 s of every call."""
    windows_lost: list[int] = []
    """Frames (deltas) lost per ``WINDOW_S`` of call time, by when they were sent."""
    due_latency_ms: Summary | None = None
    """Uplink: latency from each frame's due time on the caller's 20 ms clock (as Twilio, which
    sends on its clock, sees it): also counts the time a frame waited to be sent — the peer
    process running late, or a bridge that stopped reading (the callers' socket buffers full)."""

    def window_p99_growth(self, seconds: float) -> float:
        """p99 of the last whole window of a ``seconds`` call minus p99 of the first (ms); NaN
        when the call has fewer than two whole windows or either had nothing sent; infinite when
        everything sent in the last window was lost."""
        last = math.floor(seconds / WINDOW_S + 1e-9) - 1
        if last < 1 or last >= len(self.windows):
            return math.nan
        if self.windows[last].count == 0 and self.windows_lost[last]:
            return math.inf
        return self.windows[last].p99 - self.windows[0].p99


def _window(at: float) -> int:
    return max(0, int(at // WINDOW_S))


def by_window(samples: Sequence[tuple[float, float]], lost_at: Sequence[float]) -> tuple[list[Summary], list[int]]:
    """(time into the call in s, latency) pairs and the times of lost ones → a ``Summary`` and a
    lost count per ``WINDOW_S``."""
    count = 1 + max((_window(at) for at in [*(at for at, _ in samples), *lost_at]), default=-1)
    buckets: list[list[float]] = [[] for _ in range(count)]
    lost = [0] * count
    for at, latency in samples:
        buckets[_window(at)].append(latency)
    for at in lost_at:
        lost[_window(at)] += 1
    return [summarize(bucket) for bucket in buckets], lost


def call_of_session(session: SessionTimings) -> int | None:
    """The call whose tags a model session received (the most common one)."""
    if not session.appends:
        return None
    counts = Counter(call for _, call, _ in session.appends)
    return counts.most_common(1)[0][0]


def uplink(logs: Sequence[CallLog], sessions: Sequence[SessionTimings]) -> Direction:
    by_index = {log.index: log for log in logs}
    seen = {log.index: bytearray(len(log.sent)) for log in logs}
    latencies: list[float] = []
    from_due: list[float] = []
    in_call: list[tuple[float, float]] = []
    setup: list[float] = []
    duplicates = out_of_order = 0
    unmatched = sum(session.untagged_appends for session in sessions)
    for session in sessions:
        last_frame: dict[int, int] = {}
        for at, call, frame in session.appends:
            log = by_index.get(call)
            if log is None or frame >= len(log.sent):
                unmatched += 1
                continue
            if seen[call][frame]:
                duplicates += 1
                continue
            seen[call][frame] = 1
            if frame < last_frame.get(call, -1):
                out_of_order += 1
            last_frame[call] = frame
            latencies.append((at - log.sent[frame]) * 1000)
            from_due.append((at - log.sent[0] - frame * FRAME_S) * 1000)
            in_call.append((frame * FRAME_S, latencies[-1]))
            if log.sent[frame] < session.connected_at:
                setup.append(latencies[-1])
    lost = at_hangup = 0
    lost_at: list[float] = []
    worst: list[tuple[int, int]] = []
    for log in logs:
        missing = [frame for frame, flag in enumerate(seen[log.index]) if not flag]
        if not missing:
            continue
        lost += len(missing)
        lost_at += [frame * FRAME_S for frame in missing]
        worst.append((log.index, len(missing)))
        if log.stop_at is not None:
            at_hangup += sum(1 for frame in missing if log.stop_at - log.sent[frame] <= HANGUP_WINDOW_S)
    worst.sort(key=lambda pair: -pair[1])
    windows, windows_lost = by_window(in_call, lost_at)
    return Direction(
        sent=sum(len(log.sent) for log in logs),
        messages=sum(session.client_types.get("input_audio_buffer.append", 0) for session in sessions),
        matched=len(latencies),
        lost=lost,
        lost_at_hangup=at_hangup,
        duplicates=duplicates,
        unmatched_arrivals=unmatched,
        out_of_order=out_of_order,
        distinct_contents=len(latencies),
        latency_ms=summarize(latencies),
        setup_latency_ms=summarize(setup),
        worst_calls=worst[:5],
        windows=windows,
        windows_lost=windows_lost,
        due_latency_ms=summarize(from_due),
    )


def align(
    deltas: Sequence[tuple[float, int]], received: Sequence[tuple[float, int]]
) -> tuple[list[tuple[int, float]], int]:
    """(index in ``deltas``, latency in ms) of received frames matched in order to ``deltas``
    (both (time, fingerprint)), and the number of received frames that matched nothing."""
    latencies: list[tuple[int, float]] = []
    unmatched = position = 0
    for arrived, fp in received:
        probe = position
        while probe < len(deltas) and deltas[probe][1] != fp:
            probe += 1
        if probe == len(deltas):
            unmatched += 1
            continue
        latencies.append((probe, (arrived - deltas[probe][0]) * 1000))
        position = probe + 1
    return latencies, unmatched


def downlink(logs: Sequence[CallLog], sessions: Sequence[SessionTimings]) -> Direction:
    deltas_by_call: dict[int, list[tuple[float, int]]] = {}
    for session in sessions:
        call = call_of_session(session)
        if call is not None:
            deltas_by_call.setdefault(call, []).extend(session.deltas)
    latencies: list[float] = []
    in_call: list[tuple[float, float]] = []
    lost_at: list[float] = []
    sent = lost = unmatched = distinct = after_hangup = 0
    worst: list[tuple[int, int]] = []
    for log in logs:
        deltas = sorted(deltas_by_call.get(log.index, []))
        if log.stop_at is not None:
            deliverable = [delta for delta in deltas if delta[0] <= log.stop_at]
            after_hangup += len(deltas) - len(deliverable)
            deltas = deliverable
        call_latencies, call_unmatched = align(deltas, log.received)
        latencies += [latency for _, latency in call_latencies]
        start = log.sent[0] if log.sent else 0.0
        in_call += [(deltas[index][0] - start, latency) for index, latency in call_latencies]
        matched = {index for index, _ in call_latencies}
        lost_at += [at - start for index, (at, _) in enumerate(deltas) if index not in matched]
        unmatched += call_unmatched
        sent += len(deltas)
        distinct += len({fp for _, fp in deltas})
        call_lost = len(deltas) - len(call_latencies)
        if call_lost:
            lost += call_lost
            worst.append((log.index, call_lost))
    worst.sort(key=lambda pair: -pair[1])
    windows, windows_lost = by_window(in_call, lost_at)
    return Direction(
        sent=sent,
        messages=sum(len(log.received) for log in logs),
        matched=len(latencies),
        lost=lost,
        unmatched_arrivals=unmatched,
        distinct_contents=distinct,
        latency_ms=summarize(latencies),
        worst_calls=worst[:5],
        sent_after_hangup=after_hangup,
        windows=windows,
        windows_lost=windows_lost,
    )


def send_lateness(logs: Sequence[CallLog]) -> Summary:
    """How late (ms) the callers sent each frame against their 20 ms clock (from each call's first
    frame): the peer process falling behind, or a bridge not reading (the callers' socket buffers
    full, as Twilio's would be)."""
    late: list[float] = []
    for log in logs:
        if log.sent:
            start = log.sent[0]
            late += [max(0.0, (at - start - frame * FRAME_S) * 1000) for frame, at in enumerate(log.sent)]
    return summarize(late)
