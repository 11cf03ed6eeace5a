"""The tools a server offers every call unless it is given others: the reference's weather tool.

When the model is simulated and no weather service was configured, the weather tool is pinned to a
local simulated service (``adapters/sim/fake_weather.py``: Open-Meteo's answer shape, no network),
so the offline demo's tool calls succeed; otherwise it asks Open-Meteo, or the URL configured
(``CALLBRIDGE_WEATHER_URL``), through the call's HTTP client.
"""

from __future__ import annotations

from callbridge.adapters.http import HttpClient
from callbridge.adapters.sim.fake_weather import FakeWeather
from callbridge.engine.tools import ToolRegistry
from callbridge.engine.weather import OPEN_METEO_FORECAST_URL, weather_tool


def default_registry(
    http: HttpClient | None = None, *, weather_url: str | None = None, simulated: bool = False
) -> ToolRegistry:
    """``get_weather_from_coords``. ``http`` pins the tool to that client (else it uses the call's);
    ``simulated`` with no ``weather_url`` pins it to the simulated weather service."""
    url = weather_url or OPEN_METEO_FORECAST_URL
    if simulated and url == OPEN_METEO_FORECAST_URL and http is None:
        http = FakeWeather()
    registry = ToolRegistry()
    registry.register(weather_tool(url, http=http))
    return registry
