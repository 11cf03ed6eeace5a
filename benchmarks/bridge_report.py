"""The benchmark's result: what the event store holds and the numbers of one run (``RunResult``).

``check_store`` opens the store the server wrote (after it stopped and flushed) and checks, per
call, ``CallStarted``, ``CallEnded`` and that the stored caller audio covers every frame the
caller sent (frames counted in ``CallerAudioReceived.frame_sizes``), less the frames the bridge
refused as a flood: ``CallerAudioDropped`` with the flood guard's reason ("faster than … frames/s"),
which callbridge records instead of the audio. A phone never sends that way; callers that fell seconds
behind and then sent their backlog at once do, and the table says so. The tables are drawn by
``bridge_table.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import msgspec
from bench_stats import Summary
from bridge_analysis import Direction
from bridge_peers import CpuSample
from peer_callers import CallLog

from callbridge.engine.events import CallEnded, CallerAudioDropped, CallerAudioReceived, CallStarted, TaskCrashed
from callbridge.engine.store import EventStore

TARGETS = ("callbridge", "mainstream", "floor")
"""What a run measures: ``callbridge serve``; the mainstream stack's forwarder
(``mainstream_bridge.py``: uvicorn + ``websockets``); the floor (``peer_proxy.py``: a trivial
forwarder on callbridge's own sockets)."""


FLOOD_REASON = "faster than "
"""How ``CallerAudioDropped.reason`` begins for the flood guard (``engine/call_core.py``)."""


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
    frames_refused_as_flood: int = 0
    """Frames the flood guard refused (arrived faster than a phone sends them): recorded as a
    ``CallerAudioDropped``, not stored as audio."""
    frames_dropped_by_uplink: int = 0
    """Frames stored but dropped on the way to the model (its socket behind), oldest first."""


def check_store(url: str, logs: Sequence[CallLog]) -> StoreCheck:
    store = EventStore(url)
    try:
        complete = no_start = no_end = sent_total = stored_total = events = crashed = flood = uplink = 0
        reasons: Counter[str] = Counter()
        for log in logs:
            recorded = [r.event for r in store.read_call(log.call_sid)] if log.call_sid else []
            events += len(recorded)
            started = any(isinstance(e, CallStarted) for e in recorded)
            ended = [e for e in recorded if isinstance(e, CallEnded)]
            stored = sum(len(e.frame_sizes) for e in recorded if isinstance(e, CallerAudioReceived))
            crashed += sum(1 for e in recorded if isinstance(e, TaskCrashed))
            dropped = [e for e in recorded if isinstance(e, CallerAudioDropped)]
            refused = sum(e.count for e in dropped if e.reason.startswith(FLOOD_REASON))
            flood += refused
            uplink += sum(e.count for e in dropped if not e.reason.startswith(FLOOD_REASON))
            reasons.update(e.reason for e in ended)
            no_start += not started
            no_end += not ended
            sent_total += len(log.sent)
            stored_total += stored
            complete += started and bool(ended) and stored + refused >= len(log.sent)
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
        frames_refused_as_flood=flood,
        frames_dropped_by_uplink=uplink,
    )


class PeerLoad(msgspec.Struct, kw_only=True):
    """How busy the peer process and the rest of the machine were: a late peer inflates the
    latencies it timestamps, and other programs take the cores the bridge needs."""

    cores: float
    """The peer process (simulated model and every caller), mean cores while the calls ran (all of
    them, with ``--peer-processes``)."""
    processes: int = 1
    """How many peer processes shared the calls (``--peer-processes``)."""
    nice: int
    """The peer process's niceness (``--peers-nice``)."""
    loop_lag_ms_p99: float
    loop_lag_ms_max: float
    """How late the peer process's trio loop woke a 10 ms sleep."""
    send_late_ms: Summary
    """How late the callers sent their frames against their 20 ms clock: the peer process falling
    behind, or a bridge that stopped reading (the callers' socket buffers full)."""
    contenders: int
    contender_cores: float
    """The ``--contend`` busy loops, mean cores."""
    interrupt_cores: float
    """Kernel interrupt time (loopback networking for all of the above), charged to no process."""
    other_cores: float
    """CPU the rest of the machine used meanwhile, on average (other programs compete for the cores)."""
    other_cores_peak: float
    """The busiest second of the rest of the machine."""
    load_average: float
    """The machine's 1-minute load average as the run started (before its own processes)."""


class RunResult(msgspec.Struct, kw_only=True):
    target: str
    """One of ``TARGETS``."""
    round: int
    """Which round of the sitting (targets alternate within each round)."""
    stack: str
    """What served the calls (versions, WebSocket implementation, event loop)."""
    calls: int
    seconds: float
    lockstep: bool
    """Every call spoke at the same moments (else their turns were staggered)."""
    peak_concurrent_calls: int
    failed_calls: int
    call_errors: list[str]
    clears_received: int
    call_minutes: float
    """Minutes of caller audio sent (frames x 20 ms): what CPU is counted per, whatever the pace."""
    uplink: Direction
    downlink: Direction
    server_cpu_s: float
    server_cpu_s_per_call_minute: float
    server_cpu_share: float
    """Server CPU over the calls' wall time, in cores (1.0 = one core busy)."""
    server_peak_rss_mb: float
    store: StoreCheck | None
    """callbridge only: what its event store holds."""
    peers: PeerLoad
    server_log_errors: list[str]
    cpu_timeline: list[CpuSample]

    @property
    def ok(self) -> bool:
        """Every call ran, every frame arrived and (callbridge) every event was stored."""
        stored = self.target != "callbridge" or (self.store is not None and self.store.complete == self.calls)
        return stored and self.failed_calls == 0 and self.uplink.lost == 0 and self.downlink.lost == 0
