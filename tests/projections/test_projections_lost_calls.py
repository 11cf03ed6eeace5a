"""LostCalls in one process: which calls are lost and which are not, decided from the ownership view,
heartbeats observed on this engine's clock, and the store's optimistic concurrency. The end-to-end
cases (``kill -9`` of real processes) are in ``test_engine_lost_calls.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing
from eventsourcing.persistence import IntegrityError

from callbridge.engine.engine_id import EngineIdentity, EngineIdError, claim_engine_id
from callbridge.engine.events import CallEnded, CallerAudioReceived, CallStarted
from callbridge.engine.store import EventStore
from callbridge.engine.store_writer import EventWriter
from callbridge.projections.lost_calls import EngineTimings, LostCalls, heartbeat
from callbridge.projections.service import ProjectionService

T0 = 1_800_000_000.0
TIMINGS = EngineTimings(heartbeat_s=1.0, lost_after_s=5.0)


class WallClock:
    """The wall clock LostCalls reads (``time.time`` in production), set by the test."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def started(call_id: str, engine_id: str, at: float = T0) -> CallStarted:
    return CallStarted(call_id=call_id, at=at, stream_sid=f"MZ{call_id}", engine_id=engine_id)


def audio(call_id: str, at: float) -> CallerAudioReceived:
    return CallerAudioReceived(call_id=call_id, at=at, first_chunk=1, timestamps=[0], frame_sizes=[1], payload=b"x")


class Engine:
    """One engine's LostCalls over a shared store, with its own views."""

    def __init__(self, store: EventStore, views: Path, name: str, clock: WallClock, *, started_at: int = 0) -> None:
        self.identity = EngineIdentity(name)
        self.writer = EventWriter(store, flush_interval=0.01)
        self.service = ProjectionService(store, views, writer=self.writer, poll_interval=0.05)
        self.lost = LostCalls(
            self.identity,
            store,
            self.writer,
            views,
            self.service.watermark,
            started_at_position=started_at,
            live=lambda call_id: False,
            timings=TIMINGS,
            clock=clock,
        )

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.writer.run)
        await nursery.start(self.service.run)


async def test_a_silent_engines_quiet_call_is_ended_once_even_when_two_engines_notice(
    sqlite_event_store: EventStore, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = WallClock()
    sqlite_event_store.append([heartbeat(EngineIdentity("dead"), TIMINGS, T0), started("CAlost", "dead")])
    clock.now = T0 + 60  # the call has been quiet for a minute
    b = Engine(sqlite_event_store, tmp_path / "b.db", "b", clock)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        first_look = trio.current_time()
        for _ in range(600):  # a look every second (heartbeat_s) of virtual time, as LostCalls.run does
            if ended := await b.lost.sweep():
                break
            await trio.sleep(1)
        observed = trio.current_time() - first_look  # virtual time
        assert ended == ["CAlost"] and observed >= TIMINGS.lost_after_s  # not before it was silent that long
        assert await b.lost.sweep() == []
        nursery.cancel_scope.cancel()
    # another engine that judged from the same version of the call loses the race: no second end
    late = CallEnded(call_id="CAlost", at=T0, reason="engine_lost")
    with pytest.raises(IntegrityError):
        sqlite_event_store.append_if_unchanged("CAlost", 1, [late])
    ends = [r.event for r in sqlite_event_store.read_call("CAlost") if isinstance(r.event, CallEnded)]
    assert len(ends) == 1 and ends[0].reason == "engine_lost" and ends[0].at == T0  # dated at its last event
    assert "engine dead on " in ends[0].detail and "went silent; ended by engine b at " in ends[0].detail


async def test_a_call_that_still_speaks_is_not_ended_though_its_engine_is_silent(
    sqlite_event_store: EventStore, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = WallClock()
    sqlite_event_store.append([heartbeat(EngineIdentity("quiet"), TIMINGS, T0), started("CAtalking", "quiet")])
    b = Engine(sqlite_event_store, tmp_path / "b.db", "b", clock)
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        for _ in range(6):  # the engine's heartbeat has not moved for longer than lost_after_s...
            await b.lost.sweep()
            await trio.sleep(1)
        clock.now = T0 + 6
        sqlite_event_store.append([audio("CAtalking", T0 + 5.9)])  # ...but its call spoke 0.1 s ago
        assert await b.lost.sweep() == []
        nursery.cancel_scope.cancel()
    assert not any(isinstance(r.event, CallEnded) for r in sqlite_event_store.read_call("CAtalking"))


async def test_own_calls_from_before_a_restart_and_unowned_calls_older_than_four_hours_are_ended(
    sqlite_event_store: EventStore, tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    clock = WallClock()
    sqlite_event_store.append(
        [
            started("CAmineBefore", "me"),
            started("CAunownedOld", "", at=T0 - 5 * 3600),
            started("CAunownedRecent", "", at=T0 - 3600),
        ]
    )
    restart_position = sqlite_event_store.head() + 1
    sqlite_event_store.append([started("CAmineNow", "me")])  # started by this very process: not lost
    me = Engine(sqlite_event_store, tmp_path / "me.db", "me", clock, started_at=restart_position)
    async with trio.open_nursery() as nursery:
        await me.start(nursery)
        assert sorted(await me.lost.sweep()) == ["CAmineBefore", "CAunownedOld"]
        assert await me.lost.sweep() == []
        nursery.cancel_scope.cancel()


async def test_heartbeats_do_not_pile_up_while_the_store_is_down(
    sqlite_event_store: EventStore, tmp_path: Path
) -> None:
    engine = Engine(sqlite_event_store, tmp_path / "v.db", "me", WallClock())
    for _ in range(5):
        engine.lost._beat()  # the writer never writes here (not running): one heartbeat waits
    assert engine.writer.pending_count == 1
    await engine.writer.flush()
    engine.lost._beat()
    assert engine.writer.pending_count == 1


def test_engine_timings_come_from_the_environment_and_refuse_nonsense() -> None:
    assert EngineTimings.from_env({}) == EngineTimings(10.0, 60.0)
    assert EngineTimings.from_env({"CALLBRIDGE_HEARTBEAT_SECONDS": "2", "CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "7"}) == (
        EngineTimings(2.0, 7.0)
    )
    with pytest.raises(ValueError, match="CALLBRIDGE_HEARTBEAT_SECONDS must be a number of seconds, got 'soon'"):
        EngineTimings.from_env({"CALLBRIDGE_HEARTBEAT_SECONDS": "soon"})
    with pytest.raises(ValueError, match=r"CALLBRIDGE_ENGINE_TIMEOUT_SECONDS \(20\) must be at least 3 times"):
        EngineTimings.from_env({"CALLBRIDGE_ENGINE_TIMEOUT_SECONDS": "20"})


def test_the_engine_id_lasts_across_restarts_and_is_held_by_one_process(tmp_path: Path) -> None:
    first = claim_engine_id(tmp_path)
    same_folder = claim_engine_id(tmp_path)  # a second engine in the same data folder
    assert same_folder.engine_id.startswith(first.engine_id + "-") and same_folder.engine_id != first.engine_id
    first.release()
    restarted = claim_engine_id(tmp_path)
    assert restarted.engine_id == first.engine_id and restarted.instance != first.instance
    with pytest.raises(EngineIdError, match="in use by another callbridge serve"):
        claim_engine_id(tmp_path, restarted.engine_id)
    with pytest.raises(EngineIdError, match="CALLBRIDGE_ENGINE_ID must be 1 to 64 letters"):
        claim_engine_id(tmp_path, "two words")
    restarted.release()
    explicit = claim_engine_id(tmp_path, "edge-1")
    assert explicit.engine_id == "edge-1"
    explicit.release()
    same_folder.release()
    assert not (tmp_path / f"engine-{same_folder.engine_id}.lock").exists()  # a one-off name leaves nothing
