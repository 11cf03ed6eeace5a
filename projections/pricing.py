"""What tokens cost: a price table in USD per million tokens, by kind.

Views store token counts only; cost is computed when asked, from the table in force, so a price
change needs no rebuild. Defaults are gpt-realtime's list prices; ``CALLBRIDGE_PRICES`` (a JSON
object with any of :data:`TOKEN_KINDS` as keys) overrides some or all of them.

Token kinds are disjoint, so they add up: ``input_text`` is uncached text input and
``input_cached_text`` the cached part (likewise for audio); ``output_text`` and ``output_audio``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

from callbridge.engine.usage import TOKEN_KINDS

PRICES_ENV = "CALLBRIDGE_PRICES"


DEFAULT_PRICES: dict[str, float] = {
    "input_text": 4.0,
    "input_cached_text": 0.40,
    "input_audio": 32.0,
    "input_cached_audio": 0.40,
    "output_text": 16.0,
    "output_audio": 64.0,
}
"""gpt-realtime, USD per 1M tokens."""


class PricingError(ValueError):
    """``CALLBRIDGE_PRICES`` is not a JSON object of known token kinds to non-negative numbers."""


def load_prices(env: Mapping[str, str] | None = None) -> dict[str, float]:
    """The price table: defaults, overridden by ``CALLBRIDGE_PRICES``. Raises :class:`PricingError`."""
    text = (os.environ if env is None else env).get(PRICES_ENV, "").strip()
    prices = dict(DEFAULT_PRICES)
    if not text:
        return prices
    try:
        given = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PricingError(f"{PRICES_ENV} is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise PricingError(f'{PRICES_ENV} must be a JSON object like {{"input_audio": 32}}')
    for kind, value in given.items():
        if kind not in DEFAULT_PRICES:
            raise PricingError(f"{PRICES_ENV}: unknown token kind {kind!r}; known: {', '.join(TOKEN_KINDS)}")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise PricingError(f"{PRICES_ENV}: {kind} must be a non-negative number of USD per 1M tokens")
        prices[kind] = float(value)
    return prices


def cost_usd(tokens: Mapping[str, int], prices: Mapping[str, float] | None = None) -> float:
    """The cost of ``tokens`` (kind -> count) in USD, rounded to 1e-6."""
    table = DEFAULT_PRICES if prices is None else prices
    total = sum(count * table[kind] for kind, count in tokens.items() if count)
    return round(total / 1_000_000, 6)
