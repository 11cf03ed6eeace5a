"""A caller that says again what a recorded caller said: the recording's own audio, frame for frame,
at the original pacing, with the keys pressed where they were pressed.

``callbridge test`` replays recorded calls through it (``callbridge/regression/``). The recording
gives 20 ms μ-law frames with Twilio's stream timestamps; they are laid on the 20 ms grid from the
stream's start (frames Twilio skipped become silence) and cut into runs of speech and of quiet
(by loudness, so reply latency is measured from where the caller really stopped talking), each a
``Play`` step; ``Dtmf`` steps go between frames at the moment of each key press. A caller who hung
up hangs up after the last frame; otherwise it waits for the other side to end the call.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from callbridge.adapters.sim.caller_script import Dtmf, HangUp, Play, Step, WaitForHangUp
from callbridge.adapters.sim.voice import FRAME_BYTES, FRAME_MS, SILENCE_BYTE, rms

SPEECH_RMS = 200.0
"""A frame louder than this is speech (the synthetic voice stays above ~300, a quiet line below ~100)."""
HANGOVER_FRAMES = 15
"""Quiet shorter than 300 ms inside speech is still speech (pauses between words)."""
_SILENT_FRAME = base64.b64encode(bytes([SILENCE_BYTE]) * FRAME_BYTES).decode()


def frames_on_grid(frames: Sequence[tuple[int, bytes]]) -> list[bytes]:
    """The frames at their place on the 20 ms grid from the stream's start (timestamp 0); gaps are
    silence, a frame whose place is taken goes right after it (nothing is dropped)."""
    laid: list[bytes] = []
    for timestamp, audio in frames:
        index = max(0, round(timestamp / FRAME_MS))
        while len(laid) < index:
            laid.append(bytes([SILENCE_BYTE]) * FRAME_BYTES)
        laid.append(audio)
    return laid


def speech_flags(frames: Sequence[bytes]) -> list[bool]:
    """Per frame: is the caller talking (loud enough, or a short pause inside talk)."""
    loud = [rms(frame) > SPEECH_RMS for frame in frames]
    flags = list(loud)
    quiet_run: list[int] = []
    for index, is_loud in enumerate(loud):
        if not is_loud:
            quiet_run.append(index)
            continue
        if quiet_run and len(quiet_run) < HANGOVER_FRAMES and quiet_run[0] > 0 and loud[quiet_run[0] - 1]:
            for quiet in quiet_run:
                flags[quiet] = True
        quiet_run = []
    return flags


def recorded_caller_script(
    frames: Sequence[tuple[int, bytes]],
    keys: Sequence[tuple[int, str]] = (),
    *,
    caller_hung_up: bool = True,
    wait_for_hang_up_s: float = 10.0,
) -> list[Step]:
    """The steps that replay ``frames`` (Twilio timestamp in ms, μ-law audio) and ``keys`` (ms since
    the stream started, digit). ``caller_hung_up``: the recorded caller ended the call (hang up after
    the audio), else wait up to ``wait_for_hang_up_s`` for the agent to end it."""
    laid = frames_on_grid(frames)
    flags = speech_flags(laid)
    key_at: dict[int, list[str]] = {}
    for ms, digit in keys:
        key_at.setdefault(min(len(laid), max(0, round(ms / FRAME_MS))), []).append(digit)
    steps: list[Step] = []
    run: list[str] = []
    run_speech = False

    def flush() -> None:
        nonlocal run
        if run:
            steps.append(Play(frames=run, speech=run_speech))
            run = []

    for index, audio in enumerate(laid):
        if index in key_at:
            flush()
            steps += [Dtmf(digit) for digit in key_at[index]]
        if run and flags[index] != run_speech:
            flush()
        run_speech = flags[index]
        run.append(base64.b64encode(audio).decode() if audio else _SILENT_FRAME)
    flush()
    steps += [Dtmf(digit) for digit in key_at.get(len(laid), [])]
    if not caller_hung_up:
        steps.append(WaitForHangUp(timeout_s=wait_for_hang_up_s))
    steps.append(HangUp())
    return steps
