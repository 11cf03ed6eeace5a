"""How long to wait before retrying something that failed: one exponential backoff for the whole engine.

Why one: the same rule — wait ``first`` seconds after the first failure, twice as long after each
further one, never more than ``maximum`` — was written out by hand in the event writer, the views,
the live feed and the append listener, each a chance to get it wrong. The hand-written forms computed
``first * 2 ** (failures - 1)`` with no ceiling on the exponent, which raises ``OverflowError`` once
``failures`` passes ~1075 (an outage of a little over an hour at a 5 s cap), crashing the very loop
that was waiting for the store to come back. :meth:`Backoff.delay` caps the exponent first.
"""

from __future__ import annotations

from dataclasses import dataclass

_MAX_EXPONENT = 60
"""2.0**60 times any sane ``first`` is far beyond any ``maximum``: the cap is reached long before."""


@dataclass(frozen=True)
class Backoff:
    """``delay(n)`` after the n-th failure in a row: ``first``, ``2·first``, ``4·first``, … at most ``maximum``."""

    first: float
    """Seconds to wait after the first failure."""
    maximum: float
    """The longest wait, however many failures."""

    def __post_init__(self) -> None:
        if not self.first > 0:
            raise ValueError(f"Backoff.first must be positive, got {self.first!r}")
        if not self.maximum >= self.first:
            raise ValueError(f"Backoff.maximum ({self.maximum!r}) must be at least first ({self.first!r})")

    def delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 when nothing failed)."""
        if failures < 1:
            return 0.0
        exponent = min(failures - 1, _MAX_EXPONENT)
        return min(self.maximum, self.first * 2.0**exponent)
