"""Twilio's playback buffer as the simulated caller models it: audio plays at 8 bytes/ms from the
moment it arrives, marks come back exactly when the audio before them has played (at once when
nothing is queued), and ``clear`` drops the audio and returns every pending mark at once."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from callbridge.adapters.sim.playback import HeardSpan, MarkEcho, PlaybackModel


def spans(model: PlaybackModel) -> list[tuple[float, float, int]]:
    return [(round(span.start, 9), round(span.end, 9), span.byte_count) for span in model.heard_spans()]


def test_mark_with_nothing_buffered_is_echoed_at_once() -> None:
    model = PlaybackModel()
    assert model.push_mark(1.0, "idle") == ["idle"]
    assert model.marks == [MarkEcho(name="idle", at=1.0, played=True)]
    assert model.next_deadline() is None


def test_mark_is_echoed_exactly_when_the_audio_before_it_has_played() -> None:
    model = PlaybackModel()
    assert model.push_audio(10.0, bytes(3200)) == []  # 400 ms
    assert model.push_mark(10.0, "a") == []
    assert model.next_deadline() == pytest.approx(10.4)
    assert model.advance(10.399) == []
    assert model.buffered_bytes == 8  # 1 ms still to play
    assert model.advance(10.4) == ["a"]
    assert [(echo.name, round(echo.at, 9), echo.played) for echo in model.marks] == [("a", 10.4, True)]
    assert model.played_bytes == 3200
    assert not model.is_playing


def test_marks_between_chunks_come_back_one_by_one() -> None:
    model = PlaybackModel()
    model.push_audio(0.0, bytes(800))  # 100 ms
    model.push_mark(0.0, "1")
    model.push_audio(0.0, bytes(1600))  # 200 ms
    model.push_mark(0.0, "2")
    assert model.next_deadline() == pytest.approx(0.1)
    assert model.advance(0.1) == ["1"]
    assert model.next_deadline() == pytest.approx(0.3)
    assert model.advance(0.25) == []
    assert model.advance(5.0) == ["2"]
    assert [echo.at for echo in model.marks] == [pytest.approx(0.1), pytest.approx(0.3)]


def test_playback_starts_when_audio_arrives_after_a_quiet_line() -> None:
    model = PlaybackModel()
    model.push_audio(1.0, bytes(800))
    model.advance(3.0)  # drained at 1.1; the line then stays quiet
    model.push_audio(5.0, bytes(800))
    model.push_mark(5.0, "late")
    assert model.next_deadline() == pytest.approx(5.1)
    assert model.advance(5.05) == []
    assert model.advance(5.1) == ["late"]
    assert spans(model) == [(1.0, 1.1, 800), (5.0, 5.1, 800)]
    assert model.runs_started == 2


def test_audio_arriving_while_playing_queues_behind() -> None:
    model = PlaybackModel()
    model.push_audio(0.0, bytes(800))
    model.push_audio(0.05, bytes(800))  # half the first chunk has played
    model.push_mark(0.05, "end")
    assert model.next_deadline() == pytest.approx(0.2)
    assert model.advance(0.2) == ["end"]
    assert spans(model) == [(0.0, 0.2, 1600)]


def test_clear_echoes_pending_marks_at_once_in_order_and_drops_audio() -> None:
    model = PlaybackModel()
    model.push_audio(0.0, bytes(8000))  # 1 s
    model.push_mark(0.0, "a")
    model.push_audio(0.0, bytes(8000))
    model.push_mark(0.0, "b")
    assert model.clear(0.3) == ["a", "b"]
    assert model.marks == [MarkEcho("a", 0.3, played=False), MarkEcho("b", 0.3, played=False)]
    assert model.played_bytes == 2400
    assert model.dropped_bytes == 16000 - 2400
    assert model.buffered_bytes == 0
    assert model.next_deadline() is None
    assert model.advance(10.0) == []
    assert model.played_bytes == 2400  # nothing counted after the clear
    assert model.heard == [HeardSpan(start=0.0, end=0.3, byte_count=2400)]
    assert model.clears[0].dropped_bytes == 13600 and model.clears[0].marks_echoed == 2


def test_clear_first_returns_marks_already_reached() -> None:
    model = PlaybackModel()
    model.push_audio(0.0, bytes(800))
    model.push_mark(0.0, "played")
    model.push_audio(0.0, bytes(800))
    model.push_mark(0.0, "cleared")
    assert model.clear(0.15) == ["played", "cleared"]
    assert [(echo.name, echo.played) for echo in model.marks] == [("played", True), ("cleared", False)]


def test_after_clear_new_audio_plays_from_now() -> None:
    model = PlaybackModel()
    model.push_audio(0.0, bytes(8000))
    model.clear(0.5)
    model.push_audio(0.7, bytes(800))
    model.push_mark(0.7, "m")
    assert model.next_deadline() == pytest.approx(0.8)
    assert model.playing_since == 0.7


def test_keep_audio_records_exactly_what_was_heard() -> None:
    model = PlaybackModel(keep_audio=True)
    model.push_audio(0.0, bytes(range(200)) * 4)
    model.advance(0.01)  # 80 bytes
    model.clear(0.01)
    assert model.played_audio == bytes(range(80))


def test_heard_spans_include_the_stretch_still_playing() -> None:
    model = PlaybackModel()
    model.push_audio(2.0, bytes(8000))
    model.advance(2.25)
    assert model.heard == []
    assert spans(model) == [(2.0, 2.25, 2000)]


async def test_a_driver_on_trio_autojump_clock_echoes_marks_exactly_on_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Driving the model the way the simulated caller does: sleep until ``next_deadline``."""
    model = PlaybackModel()
    echoes: list[tuple[float, str]] = []
    start = trio.current_time()
    for index in range(5):
        model.push_audio(start, bytes(160 * (index + 1)))  # 20, 40, 60, 80, 100 ms
        model.push_mark(start, f"m{index}")
    while (deadline := model.next_deadline()) is not None:
        await trio.sleep_until(deadline)
        echoes += [(trio.current_time() - start, name) for name in model.advance(trio.current_time())]
    assert [name for _, name in echoes] == ["m0", "m1", "m2", "m3", "m4"]
    assert [at for at, _ in echoes] == pytest.approx([0.02, 0.06, 0.12, 0.2, 0.3])


# --- properties --------------------------------------------------------------------------------

actions = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=0.5, allow_nan=False),  # time step
        st.sampled_from(["audio", "mark", "clear", "advance"]),
        st.integers(min_value=0, max_value=4000),
    ),
    max_size=40,
)


@settings(max_examples=300)
@given(actions)
def test_bytes_are_conserved_and_every_mark_comes_back_once_in_order(steps: list[tuple[float, str, int]]) -> None:
    model = PlaybackModel()
    now = 0.0
    pushed: list[str] = []
    echoed: list[str] = []
    for step, action, size in steps:
        now += step
        if action == "audio":
            echoed += model.push_audio(now, bytes(size))
        elif action == "mark":
            pushed.append(f"m{len(pushed)}")
            echoed += model.push_mark(now, pushed[-1])
        elif action == "clear":
            echoed += model.clear(now)
        else:
            echoed += model.advance(now)
        assert model.played_bytes + model.dropped_bytes + model.buffered_bytes == model.received_bytes
        assert model.played_bytes <= math.ceil(now * 8000) + 1
    echoed += model.advance(now + 1000.0)
    assert echoed == pushed
    assert model.buffered_bytes == 0
    assert sum(span.byte_count for span in model.heard) == model.played_bytes
