"""``get_weather_from_coords``: the reference demo's one backend tool, over Open-Meteo.

The reference fetches ``/v1/forecast?...&current=temperature_2m,wind_speed_10m`` and gives the model
the current temperature. We do the same through the call's ``HttpClient`` and return units in the
key names (``temperature_c``, ``wind_speed_kmh``) so the model cannot mix them up. Every failure
(no network, which is the normal case on a machine without internet, an HTTP error, an answer of
the wrong shape) becomes a ``ToolError`` whose message tells the model what happened and that it
may try again, so it can say so to the caller instead of inventing a forecast.
"""

from __future__ import annotations

import json
import math
from typing import Any

from callbridge.adapters.http import HttpBadResponse, HttpClient, HttpStatusError, HttpTimeout, HttpUnreachable
from callbridge.engine.tools import Tool, ToolContext, ToolError

OPEN_METEO_FORECAST_URL = "https://api.open-meteo.com/v1/forecast"
WEATHER_URL_ENV = "CALLBRIDGE_WEATHER_URL"
"""Environment variable the composition root reads to point the tool elsewhere (a local fake)."""

HTTP_TIMEOUT_S = 8.0
"""Below the tool's own timeout, so a slow service yields this module's clear message, not a bare timeout."""
TOOL_TIMEOUT_S = 10.0

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "latitude": {"type": "number", "description": "Latitude in degrees, -90 to 90."},
        "longitude": {"type": "number", "description": "Longitude in degrees, -180 to 180."},
    },
    "required": ["latitude", "longitude"],
}


def weather_tool(base_url: str = OPEN_METEO_FORECAST_URL, *, http: HttpClient | None = None) -> Tool:
    """The tool, asking ``base_url`` (an Open-Meteo-compatible forecast endpoint).

    ``http`` pins the client; by default the call's ``ToolContext.http`` is used.
    """

    async def handler(arguments: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        return await get_weather_from_coords(arguments, http or ctx.http, base_url)

    return Tool(
        name="get_weather_from_coords",
        description="Get the current weather (temperature and wind) at a latitude and longitude.",
        parameters=PARAMETERS,
        handler=handler,
        timeout_s=TOOL_TIMEOUT_S,
    )


async def get_weather_from_coords(arguments: dict[str, Any], http: HttpClient, base_url: str) -> dict[str, Any]:
    """Current temperature and wind at the given coordinates, or ``ToolError`` saying why not."""
    latitude = _coordinate(arguments, "latitude", 90.0)
    longitude = _coordinate(arguments, "longitude", 180.0)
    params = {
        "latitude": str(latitude),
        "longitude": str(longitude),
        "current": "temperature_2m,wind_speed_10m",
    }
    try:
        data = await http.get_json(base_url, params, HTTP_TIMEOUT_S)
    except HttpTimeout:
        raise ToolError(f"weather service did not answer within {HTTP_TIMEOUT_S:g} s; try again later") from None
    except HttpUnreachable as exc:
        raise ToolError(f"weather service unreachable: {exc}; try again later") from None
    except HttpStatusError as exc:
        raise ToolError(f"weather service error: HTTP {exc.status}{_reason(exc.body)}") from None
    except HttpBadResponse as exc:
        raise ToolError(f"weather service sent an unexpected answer: {exc}") from None
    return {**_current(data), "latitude": latitude, "longitude": longitude}


def _coordinate(arguments: dict[str, Any], key: str, limit: float) -> float | int:
    value = arguments.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ToolError(f"{key} must be a number")
    if not -limit <= value <= limit:
        raise ToolError(f"{key} must be between {-limit:g} and {limit:g}, got {value}")
    return value


def _current(data: Any) -> dict[str, float]:
    """The numbers we report, from Open-Meteo's ``{"current": {...}}`` answer."""
    current = data.get("current") if isinstance(data, dict) else None
    if not isinstance(current, dict):
        raise ToolError("weather service sent an unexpected answer: no 'current' block")
    found: dict[str, float] = {}
    for source, target in (("temperature_2m", "temperature_c"), ("wind_speed_10m", "wind_speed_kmh")):
        value = current.get(source)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ToolError(f"weather service sent an unexpected answer: no number for {source}")
        found[target] = value
    return found


def _reason(body: str) -> str:
    """Open-Meteo explains errors as ``{"error": true, "reason": "..."}``; add the reason if present."""
    try:
        reason = json.loads(body).get("reason")
    except (ValueError, AttributeError):
        return ""
    return f" ({reason})" if isinstance(reason, str) and reason else ""
