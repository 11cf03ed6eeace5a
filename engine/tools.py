"""Function tools the realtime model may call: what they are, and how one call is executed.

A ``Tool`` is a JSON-Schema'd function with either a backend ``handler`` or none at all, in which
case a person answers it from the console (the tool runner waits for a ``HumanToolAnswer``).
``execute_tool`` runs one backend call and never raises for anything the model or the handler did
wrong: bad JSON, missing arguments, an unknown name, a crash or a timeout all become an error
*result*, because the model is waiting for a ``function_call_output`` and must always get one.

Handlers reach the outside world only through the ``ToolContext`` they are given (an injected
``HttpClient``), so tests swap in fakes or point the real client at a local server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import msgspec
import trio
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for

from callbridge.adapters.http import HttpClient, describe_error

# --- tools and the registry ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a handler may use besides its arguments."""

    call_id: str
    http: HttpClient
    tool_call_id: str = ""
    """The function call being answered (the runner fills it in for each one)."""
    call: dict[str, str] = field(default_factory=dict)
    """What the operator's tools may know of the call: ``from``, ``to``, ``direction``."""


Handler = Callable[[dict[str, Any], ToolContext], Awaitable[Any]]
"""Returns a ``str`` (sent to the model as is) or a JSON-able value (sent as its JSON text)."""


class ToolError(Exception):
    """Raised by a handler to give the model this exact message as ``{"error": message}``."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments object."""
    handler: Handler | None = None
    """None: a person answers the call from the console."""
    timeout_s: float = 10.0
    source: str = "backend"
    """What ``ToolCallCompleted.source`` says when the handler answers: ``backend``, or ``stub`` for a
    stand-in that answers without running the tool (``callbridge test``, ``regression/tool_stubs.py``)."""

    @property
    def answered_by(self) -> str:
        """``backend`` or ``human``: the ``handler`` of ``ToolCallRequested``."""
        return "human" if self.handler is None else "backend"

    def schema(self) -> dict[str, Any]:
        """The shape of ``GET /tools`` and of ``session.tools``."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


class ToolRegistry:
    """The tools offered to the model, in registration order."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def schemas(self) -> list[dict[str, Any]]:
        return [tool.schema() for tool in self._tools.values()]

    def names(self) -> list[str]:
        return list(self._tools)

    def with_tools(self, tools: list[Tool]) -> ToolRegistry:
        """A new registry: these tools, then ``tools`` (a name already here is replaced)."""
        merged = ToolRegistry()
        merged._tools = {**self._tools, **{tool.name: tool for tool in tools}}
        return merged

    def only(self, names: list[str]) -> ToolRegistry:
        """A new registry with only the tools called ``names`` (in this registry's order)."""
        kept = ToolRegistry()
        kept._tools = {name: tool for name, tool in self._tools.items() if name in names}
        return kept

    def backend_names(self) -> frozenset[str]:
        """Tools a backend answers (the others wait for an operator)."""
        return frozenset(name for name, tool in self._tools.items() if tool.handler is not None)


# --- executing one call -------------------------------------------------------------------------


class ToolOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """How one execution ended. ``output`` is what the model gets, error or not."""

    ok: bool
    output: str
    error: str | None = None
    timed_out: bool = False
    duration_ms: float = 0.0


def error_output(message: str) -> str:
    """The error result the model receives: ``{"error": message}`` as JSON text."""
    return json.dumps({"error": message}, ensure_ascii=False)


async def execute_tool(tool: Tool | None, name: str, arguments: str, ctx: ToolContext) -> ToolOutcome:
    """Run one backend call: parse and check ``arguments``, run the handler under its timeout.

    Every ``Exception`` becomes an error outcome; ``BaseException`` (``trio.Cancelled``,
    ``KeyboardInterrupt``) propagates, so cancelling the caller cancels the handler.
    Durations use ``trio.current_time()`` (monotonic, and the MockClock in tests).
    """
    started = trio.current_time()

    def failed(message: str, *, timed_out: bool = False) -> ToolOutcome:
        return ToolOutcome(
            ok=False,
            output=error_output(message),
            error=message,
            timed_out=timed_out,
            duration_ms=(trio.current_time() - started) * 1000.0,
        )

    if tool is None:
        return failed(f"unknown tool {name}")
    if tool.handler is None:
        return failed(f"tool {name} is answered by an operator, not by the backend")
    parsed = parse_arguments(arguments, tool.parameters)
    if isinstance(parsed, str):
        return failed(f"invalid arguments for {name}: {parsed}")

    value: Any = None
    with trio.move_on_after(tool.timeout_s) as scope:
        try:
            value = await tool.handler(parsed, ctx)
        except ToolError as exc:
            return failed(str(exc))
        except Exception as exc:
            return failed(f"tool {name} failed: {describe_error(exc)}")
    if scope.cancelled_caught:
        return failed(f"tool {name} timed out after {tool.timeout_s:g} s", timed_out=True)

    if isinstance(value, str):
        output = value
    else:
        try:
            output = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return failed(f"tool {name} returned a value that is not JSON: {exc}")
    return ToolOutcome(ok=True, output=output, duration_ms=(trio.current_time() - started) * 1000.0)


def parse_arguments(arguments: str, schema: dict[str, Any]) -> dict[str, Any] | str:
    """The arguments object, or a message saying what is wrong with it.

    The model sends a JSON object as text; an empty string counts as ``{}``.
    """
    if not arguments.strip():
        parsed: Any = {}
    else:
        try:
            parsed = json.loads(arguments)
        except ValueError as exc:
            return f"not valid JSON ({exc})"
    if not isinstance(parsed, dict):
        return f"expected a JSON object, got {_json_type(parsed)}"
    problem = check_object(parsed, schema)
    return problem if problem is not None else parsed


def check_object(value: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """Check an arguments object against the tool's JSON Schema (``jsonschema``, the schema's own
    dialect or 2020-12); returns the most relevant problem in words the model can act on, or None."""
    error = best_match(_validator(schema).iter_errors(value))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path)
    instance = error.instance
    if error.validator == "required" and isinstance(instance, dict):
        missing = next((key for key in error.validator_value if key not in instance), "?")
        return f"missing required argument {'.'.join(filter(None, [where, str(missing)]))!r}"
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        known = set(error.schema.get("properties", {}))
        extra = sorted(set(instance) - known)
        return f"unexpected argument {'.'.join(filter(None, [where, extra[0] if extra else '?']))!r}"
    if error.validator == "type":
        expected = error.validator_value
        allowed = [expected] if isinstance(expected, str) else list(expected)
        return f"argument {where!r} must be {' or '.join(allowed)}, got {_json_type(instance)}"
    if error.validator == "enum":
        return f"argument {where!r} must be one of {json.dumps(error.validator_value)}"
    return f"argument {where!r}: {error.message}" if where else error.message


@lru_cache(maxsize=256)
def _validator_for(schema_text: str) -> Any:
    schema = json.loads(schema_text)
    cls = validator_for(schema, default=Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _validator(schema: dict[str, Any]) -> Any:
    return _validator_for(json.dumps(schema, sort_keys=True))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"
