"""The one backoff policy: exponential, capped."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    first_s: float = 0.2
    max_s: float = 5.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (1 → ``first_s``, doubling, capped)."""
        return float(min(self.max_s, self.first_s * (2 ** max(0, failures - 1))))
