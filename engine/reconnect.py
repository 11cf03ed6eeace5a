"""When to try the model socket again — pure.

The realtime socket can fail to open, drop, or be closed by the server (the 60-minute session
limit). The call core asks for a new session after a bounded, growing delay; a failure that retrying
cannot fix, or ``max_attempts`` failures in a row, end the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from callbridge.engine.backoff import Backoff


@dataclass(frozen=True)
class ReconnectPolicy:
    """Bounded backoff for the model socket: ``max_attempts`` consecutive failures end the call."""

    max_attempts: int = 5
    first_delay_s: float = 0.2
    max_delay_s: float = 5.0

    def next_delay(self, failures: int, *, retryable: bool) -> float | None:
        """Seconds to wait before the next try after ``failures`` consecutive ones; None: give up."""
        if not retryable or failures > self.max_attempts:
            return None
        return Backoff(first=self.first_delay_s, maximum=self.max_delay_s).delay(failures)
