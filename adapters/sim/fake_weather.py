"""The weather service of the offline demo: Open-Meteo's forecast answer, made up locally.

Why: every simulated call asks for the weather, and on a machine without internet the sample
tool's real request fails every time, so the demo's only tool call was always an error. When the
model is simulated (``--model sim``) and ``CALLBRIDGE_WEATHER_URL`` is unset, the composition root
pins the weather tool to :class:`FakeWeather` (see ``engine.default_tools``): the tool code runs
exactly as in production (arguments checked, the answer parsed from the Open-Meteo shape), only
the HTTP round trip is replaced by a deterministic answer computed from the coordinates.

The shape is Open-Meteo's ``/v1/forecast?current=…`` answer: ``{"latitude", "longitude",
"current_units": {...}, "current": {"time", "interval", <each requested variable>}}``, with the
variables the request names in ``current`` (``temperature_2m``, ``wind_speed_10m``,
``weather_code``, …) and Open-Meteo's 400 ``{"error": true, "reason": …}`` for a bad request.
"""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

from callbridge.adapters.http import HttpStatusError, HttpUnreachable

CLEAR_CODES = (0, 1, 2, 3)
"""WMO weather codes the fake answers with: clear, mainly clear, partly cloudy, overcast."""
UNITS = {"temperature_2m": "°C", "wind_speed_10m": "km/h", "weather_code": "wmo code", "relative_humidity_2m": "%"}


def _number(params: dict[str, str], key: str) -> float:
    try:
        return float(params[key])
    except (KeyError, ValueError):
        reason = f"Parameter '{key}' is missing or not a number"
        raise HttpStatusError(400, json.dumps({"error": True, "reason": reason})) from None


def fake_forecast(
    latitude: float, longitude: float, variables: list[str] | None = None, *, now: float | None = None
) -> dict[str, Any]:
    """Open-Meteo's current-weather answer for these coordinates: the same coordinates always get
    the same weather (warmer near the equator), so demos and tests can say what to expect.
    ``variables``: the ``current`` variables asked for (default temperature and wind)."""
    seed = zlib.crc32(f"{latitude:.2f},{longitude:.2f}".encode())
    values: dict[str, float | int] = {
        "temperature_2m": round(30.0 - abs(latitude) * 0.3 + (seed % 50) / 10.0, 1),
        "wind_speed_10m": round(5.0 + (seed // 50) % 200 / 10.0, 1),
        "weather_code": CLEAR_CODES[(seed // 10_000) % len(CLEAR_CODES)],
        "relative_humidity_2m": 40 + (seed // 100) % 50,
    }
    wanted = variables if variables is not None else ["temperature_2m", "wind_speed_10m"]
    unknown = [name for name in wanted if name not in values]
    if unknown:
        reason = f"Cannot initialize WeatherVariable from invalid String value {unknown[0]}"
        raise HttpStatusError(400, json.dumps({"error": True, "reason": reason}))
    moment = time.gmtime(now if now is not None else time.time())
    return {
        "latitude": round(latitude, 4),
        "longitude": round(longitude, 4),
        "generationtime_ms": 0.1,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "elevation": 10.0,
        "current_units": {"time": "iso8601", "interval": "seconds", **{name: UNITS[name] for name in wanted}},
        "current": {
            "time": time.strftime("%Y-%m-%dT%H:%M", moment),
            "interval": 900,
            **{name: values[name] for name in wanted},
        },
    }


class FakeWeather:
    """An ``HttpClient`` that answers forecast requests locally (no socket, no network).

    ``requests`` keeps every ``(url, params)`` asked, for tests.
    """

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []

    async def get_json(self, url: str, params: dict[str, str], timeout_s: float) -> Any:
        self.requests.append((url, dict(params)))
        variables = [name for name in params.get("current", "").split(",") if name]
        return fake_forecast(_number(params, "latitude"), _number(params, "longitude"), variables or None)

    async def post_json(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float, max_bytes: int
    ) -> tuple[int, bytes]:
        raise HttpUnreachable("the simulated weather service answers forecast GETs only")
