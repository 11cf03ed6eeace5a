"""The recorded caller's script: the recording's frames on the 20 ms grid (gaps become silence),
cut into speech and quiet by loudness, keys between the frames where they were pressed, and the
ending the recorded call had."""

from __future__ import annotations

import base64

from callbridge.adapters.sim.caller_script import Dtmf, HangUp, Play, WaitForHangUp
from callbridge.adapters.sim.recorded_caller import frames_on_grid, recorded_caller_script
from callbridge.adapters.sim.voice import FRAME_BYTES, Voice, silence

QUIET = silence(20)


def voice_frames(count: int) -> list[bytes]:
    voice = Voice(0)
    return [voice.frame() for _ in range(count)]


def test_frames_are_laid_on_the_grid_and_a_gap_is_silence() -> None:
    talk = voice_frames(2)
    laid = frames_on_grid([(0, talk[0]), (60, talk[1])])  # frames at 0 ms and 60 ms: 20 and 40 missing
    assert laid == [talk[0], QUIET, QUIET, talk[1]]
    assert all(len(frame) == FRAME_BYTES for frame in laid)


def test_speech_and_quiet_become_play_steps_with_the_keys_between_them() -> None:
    talk = voice_frames(30)
    frames = [(i * 20, talk[i]) for i in range(30)]  # 600 ms of talk
    frames += [(600 + i * 20, QUIET) for i in range(40)]  # 800 ms of quiet
    steps = recorded_caller_script(frames, [(1000, "5")], caller_hung_up=False, wait_for_hang_up_s=7)

    plays = [step for step in steps if isinstance(step, Play)]
    assert [(len(p.frames), p.speech) for p in plays] == [(30, True), (20, False), (20, False)]
    assert isinstance(steps[2], Dtmf) and steps[2].digit == "5"  # at 1000 ms: after frame 50
    assert plays[0].frames[3] == base64.b64encode(talk[3]).decode()  # the recorded audio, byte for byte
    assert steps[-2:] == [WaitForHangUp(timeout_s=7), HangUp()]


def test_a_short_pause_inside_talk_is_still_talk_and_a_caller_who_hung_up_hangs_up() -> None:
    talk = voice_frames(20)
    frames = [(i * 20, talk[i] if not 8 <= i < 12 else QUIET) for i in range(20)]  # an 80 ms pause
    steps = recorded_caller_script(frames, caller_hung_up=True)
    assert [(len(s.frames), s.speech) for s in steps if isinstance(s, Play)] == [(20, True)]
    assert steps[-1] == HangUp() and not any(isinstance(s, WaitForHangUp) for s in steps)
