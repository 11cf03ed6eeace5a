"""A test file's tool stubs: what a tool answers in the rerun instead of running (its endpoint is not
called). One ``[tools.NAME]`` table per tool, or ``[[tools.NAME]]`` tables for several answers chosen
by the call's arguments (the first that matches answers)::

    [tools.lookup_order]
    output = { status = "shipped", eta = "tomorrow" }   # a table or array (sent as its JSON), or a string (as is)

    [[tools.book_table]]
    arguments = '"guests":([7-9]|1[0-9])'               # only calls whose arguments match (a regex, searched
    error = "no table for that many"                    # in their compact JSON); the tool fails with this
    [[tools.book_table]]
    output = { booked = true }

A tool without a stub runs for real (a recorded call's tools answer from the recording anyway). The
engine's built-ins (``end_call``, ``transfer_call``, ``send_dtmf``) are its own behaviour, never stubbed.
The tables are checked on their own (``parse_tool_stubs``) because msgspec names a table's key only as
``[...]``: here each error names the key, ``tools.NAME.output``, for the file's line.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from callbridge.engine.agent import explain
from callbridge.engine.builtin_tools import NAMES as BUILTIN_NAMES


class ToolStub(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    output: str | dict[str, Any] | list[Any] | None = None
    """What the model gets: a string as is, a table or array as its JSON."""
    error: str | None = None
    """The tool fails with this message (the model gets ``{"error": message}``)."""
    arguments: str | None = None
    """Only calls whose arguments (compact JSON) this regex finds something in; None: every call."""

    def __post_init__(self) -> None:
        if (self.output is None) == (self.error is None):
            raise ValueError("output: a stub answers (output = …) or fails (error = …); one of them")
        if self.arguments is not None:
            try:
                re.compile(self.arguments)
            except re.error as error:
                raise ValueError(f"arguments: not a regular expression ({error})") from None

    def matches(self, arguments: str) -> bool:
        return self.arguments is None or re.search(self.arguments, arguments) is not None


StubTable = ToolStub | list[ToolStub]


def parse_tool_stubs(raw: Any) -> dict[str, tuple[ToolStub, ...]]:
    """The ``tools`` table of a test file; ``ValueError`` says what is wrong, starting with its key
    (``tools.NAME[1].output: …``, ``unknown key 'tools.NAME.outptu'``), as ``explain`` says it."""
    if not isinstance(raw, dict):
        raise ValueError("tools: a table of [tools.NAME] stubs, one per tool")
    stubs: dict[str, tuple[ToolStub, ...]] = {}
    for name, value in raw.items():
        if name in BUILTIN_NAMES:
            raise ValueError(f"tools.{name}: {name} is the engine's own (a built-in); it cannot be stubbed")
        try:
            given = msgspec.convert(value, StubTable)
        except msgspec.ValidationError as error:
            raise ValueError(explain(_at_key(error, f"tools.{name}"))) from None
        stubs[name] = tuple(given) if isinstance(given, list) else (given,)
        if not stubs[name]:
            raise ValueError(f"tools.{name}: an empty list of stubs")
    return stubs


def _at_key(error: msgspec.ValidationError, key: str) -> msgspec.ValidationError:
    """The same error, its path under ``key`` (msgspec's ``$`` is this table)."""
    text = str(error)
    if " - at `$" in text:
        return msgspec.ValidationError(text.replace(" - at `$", f" - at `$.{key}", 1))
    return msgspec.ValidationError(f"{text} - at `$.{key}`")
