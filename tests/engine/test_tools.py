"""Specification of engine/tools.py and engine/weather.py: the registry, executing one call, the
weather tool against fakes and against a real local HTTP server speaking Open-Meteo's shape."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import pytest
import trio

from callbridge.adapters.http import HttpBadResponse, HttpStatusError, HttpTimeout, HttpUnreachable, Httpx2Client
from callbridge.engine.default_tools import default_registry
from callbridge.engine.tools import (
    Tool,
    ToolContext,
    ToolError,
    ToolRegistry,
    execute_tool,
    parse_arguments,
)
from callbridge.engine.weather import OPEN_METEO_FORECAST_URL, weather_tool

OPEN_METEO_ANSWER = {  # the shape of a real answer, trimmed
    "latitude": 52.52,
    "longitude": 13.419998,
    "current_units": {"time": "iso8601", "temperature_2m": "°C", "wind_speed_10m": "km/h"},
    "current": {"time": "2025-01-01T12:00", "interval": 900, "temperature_2m": 3.1, "wind_speed_10m": 12.5},
}


class FakeHttp:
    """An HttpClient that answers from a function and remembers every request."""

    def __init__(self, answer: Callable[[str, dict[str, str]], Any] = lambda url, params: OPEN_METEO_ANSWER):
        self.answer = answer
        self.requests: list[tuple[str, dict[str, str], float]] = []

    async def get_json(self, url: str, params: dict[str, str], timeout_s: float) -> Any:
        self.requests.append((url, params, timeout_s))
        return self.answer(url, params)


def raising(exc: Exception) -> Callable[[str, dict[str, str]], Any]:
    def answer(url: str, params: dict[str, str]) -> Any:
        raise exc

    return answer


def ctx_with(http: Any = None) -> ToolContext:
    return ToolContext(call_id="CA123", http=http or FakeHttp())


async def echo(arguments: dict[str, Any], ctx: ToolContext) -> Any:
    return {"got": arguments, "call_id": ctx.call_id}


ECHO_PARAMETERS = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["text"],
}


def echo_tool(**overrides: Any) -> Tool:
    return replace(Tool("echo", "Echo the arguments.", ECHO_PARAMETERS, echo), **overrides)


# --- registry ----------------------------------------------------------------------------------


def test_registry_keeps_tools_in_order_and_gives_the_session_shape() -> None:
    registry = ToolRegistry()
    registry.register(echo_tool())
    registry.register(echo_tool(name="ask_operator", handler=None))

    assert registry.names() == ["echo", "ask_operator"]
    assert registry.get("missing") is None
    assert [tool.answered_by for tool in map(registry.get, registry.names()) if tool] == ["backend", "human"]
    assert registry.schemas()[0] == {
        "type": "function",
        "name": "echo",
        "description": "Echo the arguments.",
        "parameters": ECHO_PARAMETERS,
    }


def test_registering_a_name_twice_is_refused() -> None:
    registry = ToolRegistry()
    registry.register(echo_tool())
    with pytest.raises(ValueError, match="echo"):
        registry.register(echo_tool())


def test_default_registry_offers_the_reference_weather_tool() -> None:
    registry = default_registry()
    assert registry.names() == ["get_weather_from_coords"]
    [schema] = registry.schemas()
    assert schema["type"] == "function"
    assert schema["parameters"]["required"] == ["latitude", "longitude"]
    assert schema["parameters"]["properties"]["latitude"]["type"] == "number"


# --- execute_tool ------------------------------------------------------------------------------


async def test_a_json_value_is_sent_as_json_text_encoded_once() -> None:
    outcome = await execute_tool(echo_tool(), "echo", '{"text": "hi", "count": 2}', ctx_with())
    assert outcome.ok and outcome.error is None and not outcome.timed_out
    assert json.loads(outcome.output) == {"got": {"text": "hi", "count": 2}, "call_id": "CA123"}


async def test_a_string_return_is_passed_through_unchanged() -> None:
    async def say(arguments: dict[str, Any], ctx: ToolContext) -> str:
        return "plain words"

    outcome = await execute_tool(echo_tool(handler=say), "echo", '{"text": "x"}', ctx_with())
    assert outcome.ok
    assert outcome.output == "plain words"


async def test_unknown_tool_gets_an_error_result() -> None:
    outcome = await execute_tool(None, "nope", "{}", ctx_with())
    assert not outcome.ok
    assert json.loads(outcome.output) == {"error": "unknown tool nope"}
    assert outcome.error == "unknown tool nope"


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"count": 1}', "missing required argument 'text'"),
        ('{"text": 5}', "argument 'text' must be string, got number"),
        ('{"text": "a", "count": 1.5}', "argument 'count' must be integer, got number"),
        ('{"text": "a", "count": true}', "argument 'count' must be integer, got boolean"),
    ],
)
async def test_bad_arguments_get_an_error_result_and_never_reach_the_handler(arguments: str, problem: str) -> None:
    called = False

    async def handler(args: dict[str, Any], ctx: ToolContext) -> str:
        nonlocal called
        called = True
        return "ran"

    outcome = await execute_tool(echo_tool(handler=handler), "echo", arguments, ctx_with())
    assert not outcome.ok
    message = json.loads(outcome.output)["error"]
    assert message.startswith("invalid arguments for echo: ")
    assert problem in message
    assert not called


def test_argument_checks_accept_what_the_schema_allows() -> None:
    schema = {
        "type": "object",
        "properties": {
            "n": {"type": "integer"},
            "x": {"type": ["number", "null"]},
            "unit": {"type": "string", "enum": ["c", "f"]},
        },
        "additionalProperties": False,
    }
    assert parse_arguments('{"n": 3.0, "x": null, "unit": "c"}', schema) == {"n": 3.0, "x": None, "unit": "c"}
    assert parse_arguments("", schema) == {}
    assert parse_arguments('{"unit": "k"}', schema) == """argument 'unit' must be one of ["c", "f"]"""
    assert parse_arguments('{"other": 1}', schema) == "unexpected argument 'other'"


async def test_a_crashing_handler_becomes_an_error_result() -> None:
    async def crash(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise RuntimeError("disk on fire")

    outcome = await execute_tool(echo_tool(handler=crash), "echo", '{"text": "x"}', ctx_with())
    assert not outcome.ok and not outcome.timed_out
    assert json.loads(outcome.output) == {"error": "tool echo failed: RuntimeError: disk on fire"}


async def test_tool_error_message_reaches_the_model_verbatim() -> None:
    async def refuse(arguments: dict[str, Any], ctx: ToolContext) -> str:
        raise ToolError("the shop is closed on Sundays")

    outcome = await execute_tool(echo_tool(handler=refuse), "echo", '{"text": "x"}', ctx_with())
    assert json.loads(outcome.output) == {"error": "the shop is closed on Sundays"}


@pytest.mark.parametrize("value", [object(), float("nan")])
async def test_a_return_value_that_is_not_json_becomes_an_error(value: Any) -> None:
    async def odd(arguments: dict[str, Any], ctx: ToolContext) -> Any:
        return {"v": value}

    outcome = await execute_tool(echo_tool(handler=odd), "echo", '{"text": "x"}', ctx_with())
    assert not outcome.ok
    assert "returned a value that is not JSON" in json.loads(outcome.output)["error"]


async def test_a_slow_handler_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(arguments: dict[str, Any], ctx: ToolContext) -> str:
        await trio.sleep(3600)
        return "too late"

    outcome = await execute_tool(echo_tool(handler=slow, timeout_s=2.5), "echo", '{"text": "x"}', ctx_with())
    assert not outcome.ok and outcome.timed_out
    assert json.loads(outcome.output) == {"error": "tool echo timed out after 2.5 s"}
    assert outcome.duration_ms == pytest.approx(2500.0)


async def test_cancelling_the_caller_cancels_the_handler_and_is_not_swallowed() -> None:
    handler_cancelled = False
    started = trio.Event()

    async def wait(arguments: dict[str, Any], ctx: ToolContext) -> str:
        nonlocal handler_cancelled
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            handler_cancelled = True
            raise
        return "never"

    outcomes = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            outcomes.append(await execute_tool(echo_tool(handler=wait), "echo", '{"text": "x"}', ctx_with()))

        nursery.start_soon(run)
        await started.wait()
        nursery.cancel_scope.cancel()
    assert handler_cancelled
    assert outcomes == []


async def test_execute_tool_refuses_a_tool_meant_for_an_operator() -> None:
    outcome = await execute_tool(echo_tool(handler=None), "echo", '{"text": "x"}', ctx_with())
    assert not outcome.ok
    assert "answered by an operator" in json.loads(outcome.output)["error"]


# --- the weather tool with a fake HTTP client --------------------------------------------------


async def run_weather(arguments: dict[str, Any], http: Any) -> Any:
    outcome = await execute_tool(weather_tool(), "get_weather_from_coords", json.dumps(arguments), ctx_with(http))
    return outcome.ok, json.loads(outcome.output)


async def test_weather_reports_current_temperature_and_wind() -> None:
    http = FakeHttp()
    ok, output = await run_weather({"latitude": 52.52, "longitude": 13.41}, http)
    assert ok
    assert output == {"temperature_c": 3.1, "wind_speed_kmh": 12.5, "latitude": 52.52, "longitude": 13.41}
    [(url, params, timeout_s)] = http.requests
    assert url == OPEN_METEO_FORECAST_URL
    assert params == {"latitude": "52.52", "longitude": "13.41", "current": "temperature_2m,wind_speed_10m"}
    assert timeout_s < weather_tool().timeout_s  # the clear HTTP error arrives before the tool timeout


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"latitude": 91, "longitude": 0}, "latitude must be between -90 and 90, got 91"),
        ({"latitude": 0, "longitude": -180.5}, "longitude must be between -180 and 180, got -180.5"),
    ],
)
async def test_weather_refuses_coordinates_out_of_range_without_asking(arguments: Any, problem: str) -> None:
    http = FakeHttp()
    ok, output = await run_weather(arguments, http)
    assert not ok
    assert output == {"error": problem}
    assert http.requests == []


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (
            HttpUnreachable("ConnectError: [Errno 111] Connection refused"),
            "weather service unreachable: ConnectError: [Errno 111] Connection refused; try again later",
        ),
        (HttpTimeout("no answer within 8 s"), "weather service did not answer within 8 s; try again later"),
        (
            HttpStatusError(400, '{"error": true, "reason": "Latitude must be in range"}'),
            "weather service error: HTTP 400 (Latitude must be in range)",
        ),
        (HttpStatusError(502, "<html>bad gateway</html>"), "weather service error: HTTP 502"),
        (
            HttpBadResponse("answer is not JSON (Expecting value)"),
            "weather service sent an unexpected answer: answer is not JSON (Expecting value)",
        ),
    ],
)
async def test_weather_failures_become_clear_error_results(failure: Exception, message: str) -> None:
    ok, output = await run_weather({"latitude": 1, "longitude": 2}, FakeHttp(raising(failure)))
    assert not ok
    assert output == {"error": message}


async def test_weather_answer_of_the_wrong_shape_is_a_clear_error() -> None:
    ok, output = await run_weather({"latitude": 1, "longitude": 2}, FakeHttp(lambda url, params: {"hourly": {}}))
    assert not ok
    assert output == {"error": "weather service sent an unexpected answer: no 'current' block"}


async def test_a_pinned_http_client_wins_over_the_call_context() -> None:
    pinned = FakeHttp()
    registry = default_registry(pinned, weather_url="http://weather.test/forecast")
    outcome = await execute_tool(
        registry.get("get_weather_from_coords"),
        "get_weather_from_coords",
        '{"latitude": 1, "longitude": 2}',
        ctx_with(FakeHttp(raising(HttpUnreachable("not me")))),
    )
    assert outcome.ok
    assert [url for url, _, _ in pinned.requests] == ["http://weather.test/forecast"]


# --- Httpx2Client against real local sockets ---------------------------------------------------

Respond = Callable[[h11.Request], tuple[int, bytes]]


async def serve_http(nursery: trio.Nursery, respond: Respond) -> tuple[str, list[h11.Request]]:
    """A one-request-per-connection HTTP/1.1 server on 127.0.0.1; returns its base URL and requests."""
    seen: list[h11.Request] = []

    async def handle(stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif isinstance(event, h11.Request):
                    seen.append(event)
                elif isinstance(event, h11.EndOfMessage):
                    break
            status, body = respond(seen[-1])
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            for outgoing in (h11.Response(status_code=status, headers=headers), h11.Data(data=body)):
                await stream.send_all(connection.send(outgoing) or b"")
            await stream.send_all(connection.send(h11.EndOfMessage()) or b"")
        finally:
            await stream.aclose()

    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    return f"http://127.0.0.1:{port}", seen


def query_of(request: h11.Request) -> tuple[str, dict[str, list[str]]]:
    parts = urlsplit(request.target.decode())
    return parts.path, parse_qs(parts.query)


async def test_weather_over_real_http_with_httpx2(nursery: trio.Nursery) -> None:
    base, seen = await serve_http(nursery, lambda request: (200, json.dumps(OPEN_METEO_ANSWER).encode()))
    registry = default_registry(weather_url=f"{base}/v1/forecast")
    outcome = await execute_tool(
        registry.get("get_weather_from_coords"),
        "get_weather_from_coords",
        '{"latitude": 48.85, "longitude": 2.35}',
        ToolContext(call_id="CA1", http=Httpx2Client()),
    )
    assert outcome.ok, outcome.output
    assert json.loads(outcome.output) == {
        "temperature_c": 3.1,
        "wind_speed_kmh": 12.5,
        "latitude": 48.85,
        "longitude": 2.35,
    }
    [request] = seen
    assert request.method == b"GET"
    assert query_of(request) == (
        "/v1/forecast",
        {"latitude": ["48.85"], "longitude": ["2.35"], "current": ["temperature_2m,wind_speed_10m"]},
    )


async def test_weather_service_down_gives_a_clear_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on: bound, then closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    outcome = await execute_tool(
        weather_tool(f"http://127.0.0.1:{port}/v1/forecast"),
        "get_weather_from_coords",
        '{"latitude": 1, "longitude": 2}',
        ToolContext(call_id="CA1", http=Httpx2Client()),
    )
    assert not outcome.ok and not outcome.timed_out
    message = json.loads(outcome.output)["error"]
    assert message.startswith("weather service unreachable: ConnectError")
    assert message.endswith("; try again later")


async def test_httpx2_client_maps_http_errors(nursery: trio.Nursery) -> None:
    answers = {
        "/missing": (404, b'{"error": true, "reason": "no such thing"}'),
        "/garbage": (200, b"<html>not json</html>"),
        "/ok": (200, b'{"a": [1, 2]}'),
    }
    base, _ = await serve_http(nursery, lambda request: answers[query_of(request)[0]])
    client = Httpx2Client()

    assert await client.get_json(f"{base}/ok", {}, 5.0) == {"a": [1, 2]}
    with pytest.raises(HttpStatusError) as status_error:
        await client.get_json(f"{base}/missing", {}, 5.0)
    assert status_error.value.status == 404
    assert "no such thing" in status_error.value.body
    with pytest.raises(HttpBadResponse, match="not JSON"):
        await client.get_json(f"{base}/garbage", {}, 5.0)


async def test_httpx2_client_reports_a_silent_server_as_a_timeout(nursery: trio.Nursery) -> None:
    async def never_answer(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    listeners = await nursery.start(partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
    port = listeners[0].socket.getsockname()[1]
    with pytest.raises(HttpTimeout, match=r"no answer within 0\.1 s"):
        await Httpx2Client().get_json(f"http://127.0.0.1:{port}/", {}, 0.1)


def test_arguments_are_checked_against_the_whole_json_schema() -> None:
    """What a hand-written check missed: ranges, patterns, nested objects (jsonschema does it all)."""
    schema = {
        "type": "object",
        "properties": {
            "latitude": {"type": "number", "minimum": -90, "maximum": 90},
            "digits": {"type": "string", "pattern": "^[0-9*#]{1,8}$"},
            "address": {"type": "object", "properties": {"zip": {"type": "string"}}, "required": ["zip"]},
        },
    }
    assert parse_arguments('{"latitude": 91}', schema) == "argument 'latitude': 91 is greater than the maximum of 90"
    assert "does not match" in str(parse_arguments('{"digits": "12a"}', schema))
    assert parse_arguments('{"address": {}}', schema) == "missing required argument 'address.zip'"
    assert parse_arguments('{"latitude": 45, "digits": "1#", "address": {"zip": "10115"}}', schema) == {
        "latitude": 45,
        "digits": "1#",
        "address": {"zip": "10115"},
    }
