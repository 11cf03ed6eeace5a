"""Mark accounting and the barge-in decision (engine/playback.py), without sockets."""

from callbridge.engine.playback import Playback


def test_only_echoed_marks_count_as_played() -> None:
    playback = Playback()
    first = playback.audio_received("r1", "item1", 800)
    second = playback.audio_received("r1", "item1", 800)
    assert first and second and first != second
    played = playback.mark_echoed(first)
    assert played is not None and (played.item_id, played.played_bytes, played.total_played_bytes) == (
        "item1",
        800,
        800,
    )
    assert playback.unplayed_bytes == 800 and playback.is_playing
    assert playback.mark_echoed(first) is None  # a repeated echo counts once


def test_barge_in_truncates_at_the_played_ms_and_forgets_the_pending_marks() -> None:
    playback = Playback()
    marks = [playback.audio_received("r1", "item1", 800) for _ in range(5)]  # 500 ms received
    playback.mark_echoed(marks[0])
    playback.mark_echoed(marks[1])  # 200 ms played
    decision = playback.barge_in(frozenset({"item1"}))
    assert (decision.item_id, decision.played_ms, decision.received_ms) == ("item1", 200, 500)
    assert decision.audio_end_ms == 200 and decision.action == "truncated"
    assert decision.clear and decision.unplayed_bytes == 2400
    # Twilio echoes the pending marks because of the clear: they were not played
    assert all(playback.mark_echoed(name) is None for name in marks[2:])
    # late deltas of the interrupted item are dropped
    assert playback.audio_received("r1", "item1", 800) is None
    assert playback.items["item1"].discarded_bytes == 800
    # the next item plays normally
    assert playback.audio_received("r2", "item2", 800) is not None


def test_barge_in_with_nothing_buffered_sends_no_clear_and_no_truncate() -> None:
    empty = Playback().barge_in()
    assert (empty.action, empty.clear, empty.audio_end_ms) == ("skipped_nothing_playing", False, None)

    playback = Playback()
    mark = playback.audio_received("r1", "item1", 800)
    assert mark is not None
    playback.mark_echoed(mark)
    done = playback.barge_in()
    assert (done.action, done.clear, done.audio_end_ms, done.played_ms) == ("skipped_fully_played", False, None, 100)


def test_a_still_generating_item_is_silenced_even_when_its_audio_was_all_played() -> None:
    playback = Playback()
    mark = playback.audio_received("r1", "item1", 800)
    assert mark is not None
    playback.mark_echoed(mark)
    decision = playback.barge_in(frozenset({"item1"}))
    assert decision.action == "skipped_nothing_playing" and not decision.clear
    assert playback.audio_received("r1", "item1", 800) is None
