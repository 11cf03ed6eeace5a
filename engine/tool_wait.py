"""No dead air while a tool runs.

A weather API that takes four seconds, or a person answering from the console, leaves the caller
in silence — and callers hang up on silence. When tool outputs have been awaited for
``after_s`` and nothing is playing or being said, the bridge asks the model for one short
out-of-band response ("one moment, I'm still looking that up"): ``response.create`` with
``conversation: "none"``, so it is spoken but not added to the conversation, and tagged in its
``metadata`` so the response gate knows it does not answer the tool call. Once per wait.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

TOOL_WAIT_TAG = "tool_wait"
TOOL_WAIT_RESPONSE: dict[str, Any] = {
    "conversation": "none",
    "output_modalities": ["audio"],
    "instructions": (
        "In a few words, tell the caller you are still working on their request. "
        "Do not answer it yet and do not call any function."
    ),
    "metadata": {"callbridge": TOOL_WAIT_TAG},
}
RETRY_S = 0.5
"""When the assistant is still talking at the deadline, look again this much later."""


def is_tool_wait_response(metadata: Any) -> bool:
    return isinstance(metadata, dict) and metadata.get("callbridge") == TOOL_WAIT_TAG


class ToolWaitAnnouncer:
    def __init__(self, after_s: float | None) -> None:
        self.after_s = after_s
        self._waiting_since: float | None = None
        self._announced = False
        self._wake = trio.Event()

    def tool_started(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = trio.current_time()
            self._announced = False
        self._wake.set()

    def all_answered(self) -> None:
        self._waiting_since = None

    async def run(self, may_speak: Callable[[], bool], announce: Callable[[], Awaitable[None]]) -> None:
        """Serve until cancelled: ``announce()`` once per wait that outlasts ``after_s``, when
        ``may_speak()`` (nothing playing, no response running)."""
        if self.after_s is None:
            await trio.sleep_forever()
            return
        while True:
            while self._waiting_since is None or self._announced:
                self._wake = trio.Event()
                await self._wake.wait()
            await trio.sleep_until(self._waiting_since + self.after_s)
            while self._waiting_since is not None and not self._announced:
                if may_speak():
                    self._announced = True
                    await announce()
                else:
                    await trio.sleep(RETRY_S)
