"""Caller audio a new model session must hear again — pure.

When a model session is lost (a dropped socket, the 60-minute limit) the caller does not notice
and keeps talking. Two kinds of audio would be lost: the utterance in progress, already appended
to the old session but not yet committed by its VAD, and the frames that arrive while no session is
open. This buffer keeps both (up to ``max_frames``) and says what to send to the next session:
the whole uncommitted utterance if the caller was speaking, else only what arrived offline.
"""

from __future__ import annotations

from collections import deque

MAX_FRAMES = 750
"""15 s of 20 ms frames."""


class UtteranceBuffer:
    def __init__(self, max_frames: int = MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self._uncommitted: deque[str] = deque(maxlen=max_frames)
        self._offline: list[str] = []
        self.caller_speaking = False

    def sent(self, payload: str) -> None:
        """A frame was appended to the live session."""
        self._uncommitted.append(payload)

    def arrived_offline(self, payload: str) -> None:
        self._uncommitted.append(payload)
        if len(self._offline) < self.max_frames:
            self._offline.append(payload)

    def speech_started(self) -> None:
        self.caller_speaking = True

    def committed(self) -> None:
        """The model took the utterance (``input_audio_buffer.committed``): nothing to resend."""
        self.caller_speaking = False
        self._uncommitted.clear()

    def take_replay(self) -> list[str]:
        """The frames a new session must be sent first, in order (each at most once)."""
        replay = list(self._uncommitted) if self.caller_speaking else self._offline
        self._offline = []
        return replay
