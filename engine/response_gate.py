"""When may the bridge send ``response.create``? A small pure state machine.

The Realtime API refuses a ``response.create`` while a response is running
(``conversation_already_has_active_response``), and a response created before every tool output
is in would answer without them. So after tool outputs (or a console request) a new response is
*needed*, and it is sent only when no response is active or already requested, and no output is
still awaited. A response the server starts by itself (server VAD, after the caller spoke) once
the outputs were added has seen them, so the need is dropped then — never two responses for one
set of outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ResponseGate:
    active_response: str | None = None
    requested: bool = False
    needed: bool = False
    awaiting_outputs: set[str] = field(default_factory=set)

    def tool_requested(self, tool_call_id: str) -> None:
        self.awaiting_outputs.add(tool_call_id)

    def output_arrived(self, tool_call_id: str) -> None:
        self.awaiting_outputs.discard(tool_call_id)
        self.needed = True

    def asked(self) -> None:
        """Somebody (the console) wants the model to respond."""
        self.needed = True

    def response_created(self, response_id: str, *, out_of_band: bool = False) -> None:
        """A response started. An out-of-band one (``conversation: "none"``, e.g. "one moment")
        blocks others while it runs but answers nothing: the need for a real response stays."""
        self.active_response = response_id
        self.requested = False
        if not out_of_band and not self.awaiting_outputs:
            self.needed = False

    def out_of_band_requested(self) -> None:
        self.requested = True

    def response_done(self, response_id: str) -> None:
        if self.active_response in (None, response_id):
            self.active_response = None

    def refused_as_busy(self) -> None:
        """The server answered ``conversation_already_has_active_response``: ask again later."""
        self.requested = False
        self.needed = True

    def link_lost(self) -> None:
        """A new session starts with no response running."""
        self.active_response = None
        self.requested = False

    def take(self) -> bool:
        """True (and the request counted as sent) when ``response.create`` should go out now."""
        if not self.needed or self.awaiting_outputs or self.active_response is not None or self.requested:
            return False
        self.needed = False
        self.requested = True
        return True
