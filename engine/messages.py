"""What the console sends a live call's tool runner.

Everything else a call's tasks exchange goes through the call core as its inputs and outputs
(``engine/call_io.py``); an operator's answer to a pending function call goes to the tool runner,
which settles the call exactly once (an answer beats a backend still running).
"""

from __future__ import annotations

import msgspec


class HumanToolAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A person answered a pending function call from the console."""

    tool_call_id: str
    output: str
