"""Test files: a TOML file per test, either a recorded call to replay or a scenario to play.

A scenario says what the caller does, step by step, and (for the simulated model, which cannot
understand audio) what the model hears in each utterance and how it answers::

    name = "order status, then goodbye"
    agent = "agent.toml"                 # optional: the agent for this test (else --agent / CALLBRIDGE_AGENT)
    greeting = "Acme, how can I help?"   # optional: the agent greets so (else the agent's own greeting)

    [[caller]]
    wait_for_reply = true                # the greeting
    [[caller]]
    say = "Where is my order 1234?"      # speaks (synthetic voice); the model hears these words
    tool = "lookup_order"                # the simulated model calls a tool …
    arguments = { order = "1234" }
    after_tool = "It ships tomorrow."    # … and says this once it answered ({key}: a key of its JSON output)
    [[caller]]
    wait_for_reply = true
    [[caller]]
    press = "5"                          # a key (with the agent's dtmf = "model" the model hears it: a turn)
    reply = "You pressed five."
    [[caller]]
    barge_in = "Wait, one more thing"    # talks over the reply, after_ms into it
    reply = "Sure, go ahead."
    [[caller]]
    pause_ms = 500
    [[caller]]
    hang_up = true                       # or wait_for_hang_up = true (the agent ends the call)

    [expect]
    tools = [{ name = "lookup_order", arguments = "1234" }]   # called, arguments matching a regex
    tools_not_called = ["transfer_call"]
    transcript_contains = ["ships tomorrow"]                  # regexes over 'caller: …' / 'agent: …' lines
    transcript_not_contains = ["(?i)sorry"]
    ended_by = "caller"                  # caller | agent | transfer | operator
    transfer_to = "sales"
    max_dead_air_s = 3.0                 # longest silence on the line, from what the caller heard
    max_barge_ins = 1
    latency_p95_ms = 1500                # from the end of each utterance to the first reply audio
    no_model_errors = true               # the default

    [tools.lookup_order]                 # optional: the tool answers this instead of running
    output = { status = "shipped" }      # (or error = "…"; arguments = "regex" to match; stub_spec.py)

A recorded call's test is ``call = "CA…"`` with an ``[expect]`` (``callbridge test CA…`` and the
console's "Save as test" suggest one from what happened); its tools answer what they answered then,
and its ``[tools.NAME]`` stubs, when it has some, answer instead. Errors name the file, the line and
the key.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from callbridge.engine.agent import error_key, explain
from callbridge.regression.stub_spec import ToolStub, parse_tool_stubs


class SpecError(ValueError):
    """A test file that cannot be used: ``file:line: key: what is wrong``."""


class ToolExpected(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str
    arguments: str | None = None
    """A regex the arguments' JSON must match (searched)."""


class Expect(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tools: list[ToolExpected] = []
    tools_not_called: list[str] = []
    transcript_contains: list[str] = []
    transcript_not_contains: list[str] = []
    ended_by: Literal["caller", "agent", "transfer", "operator", "other"] | None = None
    transfer_to: str | None = None
    max_dead_air_s: float | None = None
    max_barge_ins: int | None = None
    latency_p95_ms: float | None = None
    no_model_errors: bool = True

    def __post_init__(self) -> None:
        for key in ("transcript_contains", "transcript_not_contains"):
            for index, pattern in enumerate(getattr(self, key)):
                _check_regex(f"{key}[{index}]", pattern)
        for index, tool in enumerate(self.tools):
            if tool.arguments is not None:
                _check_regex(f"tools[{index}]: arguments", tool.arguments)
        if self.transfer_to is not None and self.ended_by not in (None, "transfer"):
            raise ValueError("transfer_to: only with ended_by = 'transfer' (or without ended_by)")


def _check_regex(key: str, pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as error:
        raise ValueError(f"{key}: not a regular expression ({error})") from None


ACTIONS = ("say", "pause_ms", "wait_for_reply", "press", "barge_in", "hang_up", "wait_for_hang_up")


class CallerStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    say: str | None = None
    pause_ms: int | None = None
    wait_for_reply: bool = False
    press: str | None = None
    barge_in: str | None = None
    hang_up: bool = False
    wait_for_hang_up: bool = False
    ms: int | None = None
    """How long ``say`` / ``barge_in`` talks (default: about 70 ms a letter, at least 600)."""
    after_ms: int = 500
    """``barge_in``: how far into the reply the caller starts talking."""
    timeout_s: float = 15.0
    """``wait_for_reply``, ``barge_in``, ``wait_for_hang_up``: how long to wait before it is an error."""
    reply: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = {}
    after_tool: str | None = None

    def __post_init__(self) -> None:
        chosen = [name for name in ACTIONS if getattr(self, name) not in (None, False)]
        if len(chosen) != 1:
            raise ValueError(f"each step does exactly one of {', '.join(ACTIONS)} (this one: {chosen or 'none'})")
        if self.press is not None and not re.fullmatch(r"[0-9*#]", self.press):
            raise ValueError(f"press: one key, 0-9, * or # (got {self.press!r})")
        if self.reply is not None and self.tool is not None:
            raise ValueError("reply: a step's answer is a reply or a tool, not both")
        answers = self.reply is not None or self.tool is not None
        if answers and chosen[0] not in ("say", "press", "barge_in"):
            raise ValueError(f"reply: only a say, press or barge_in step is answered (this one is {chosen[0]})")
        if self.ms is not None and not 20 <= self.ms <= 60_000:
            raise ValueError("ms: between 20 and 60000")

    @property
    def heard(self) -> str | None:
        """What the model hears in this step: a turn of its conversation (None: not a turn)."""
        if self.say is not None:
            return self.say
        if self.barge_in is not None:
            return self.barge_in
        if self.press is not None:
            return f"[pressed {self.press}]"
        return None


class TestSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    __test__ = False  # not a pytest test class

    name: str | None = None
    call: str | None = None
    """A recorded call (its CallSid) to replay."""
    agent: str | None = None
    """An agent file for the rerun, relative to this test file."""
    greeting: str | None = None
    """The agent's greeting in this scenario (over the agent's own)."""
    from_number: str = "+15005550006"
    to_number: str = "+15005550001"
    caller: list[CallerStep] = []
    expect: Expect = Expect()
    tools: dict[str, tuple[ToolStub, ...]] = {}
    """Tool stubs by tool name (``[tools.NAME]``, read by ``stub_spec.parse_tool_stubs``)."""

    def __post_init__(self) -> None:
        if (self.call is None) == (not self.caller):
            raise ValueError("call: a test replays a recorded call (call = 'CA…') or plays [[caller]] steps; one")


class LoadedSpec(msgspec.Struct, frozen=True):
    spec: TestSpec
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    def agent_path(self) -> Path | None:
        return (self.path.parent / self.spec.agent) if self.spec.agent else None


def load_spec(path: Path) -> LoadedSpec:
    """The test in ``path``; ``SpecError`` names the file, the line and the key that is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"{path}: cannot read it: {error.strerror or error}") from None
    return LoadedSpec(parse_spec(text, str(path)), path)


def parse_spec(text: str, where: str) -> TestSpec:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        line = getattr(error, "lineno", None) or _line_in_message(str(error))
        return _raise(f"{where}:{line or 1}: not valid TOML: {_strip_position(str(error))}")
    raw_tools = data.pop("tools", None)  # read on their own: msgspec names a table's key only as [...]
    try:
        spec = msgspec.convert(data, TestSpec)
    except msgspec.ValidationError as error:
        return _refuse(text, where, explain(error))
    if raw_tools is None:
        return spec
    try:
        return msgspec.structs.replace(spec, tools=parse_tool_stubs(raw_tools))
    except ValueError as error:
        return _refuse(text, where, str(error))


def _refuse(text: str, where: str, message: str) -> TestSpec:
    key = error_key(message)
    line = key_line(text, key) if key else None
    return _raise(f"{where}:{line or 1}: {message}")


def _raise(message: str) -> TestSpec:
    raise SpecError(message)


def _line_in_message(message: str) -> int | None:
    found = re.search(r"line (\d+)", message)
    return int(found.group(1)) if found else None


def _strip_position(message: str) -> str:
    return re.sub(r"\s*\(at line \d+, column \d+\)", "", message)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\- ]+?)\s*\]\]?\s*(#.*)?$")
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)((?:\[[0-9]+\])*)$")


def key_line(text: str, key: str) -> int | None:
    """The line (1-based) where ``key`` (``caller[2].say``, ``expect.tools[0].name``) is written, as
    near as a line scan can tell: the table it lives in is found by its headers (counting ``[[…]]``
    repeats), then the first line setting the key's last name inside it; the table's own line when
    the key is not written there (a value that is missing or is a whole table)."""
    parts = key.split(".")
    wanted_table: list[tuple[str, int | None]] = []
    for part in parts[:-1]:
        match = _PART.match(part)
        if not match:
            return None
        index = re.findall(r"\[([0-9]+)\]", match.group(2))
        wanted_table.append((match.group(1), int(index[0]) if index else None))
    last = _PART.match(parts[-1])
    if not last:
        return None
    indexes = re.findall(r"\[([0-9]+)\]", last.group(2))
    last_index = int(indexes[0]) if indexes else None
    for cut in range(len(wanted_table), -1, -1):  # a key inside an inline table: its nearest written table
        found = _line_in_table(text.splitlines(), wanted_table[:cut], last.group(1), last_index)
        if found is not None:
            return found
    return None


def _line_in_table(
    lines: list[str], wanted_table: list[tuple[str, int | None]], last_name: str, last_index: int | None
) -> int | None:
    counts: dict[str, int] = {}
    current: list[tuple[str, int | None]] = []
    table_line: int | None = 1 if not wanted_table else None
    assignment = re.compile(rf"^\s*{re.escape(last_name)}\s*=|[{{,]\s*{re.escape(last_name)}\s*=")
    for number, line in enumerate(lines, start=1):
        header = _HEADER.match(line)
        if header:
            names = [name.strip() for name in header.group(2).split(".")]
            if header.group(1) == "[[":
                path = ".".join(names)
                counts[path] = counts.get(path, -1) + 1
                current = [(name, None) for name in names[:-1]] + [(names[-1], counts[path])]
            else:
                current = [(name, None) for name in names]
            if _same_table(current, wanted_table):
                table_line = number
            elif _same_table(current, [*wanted_table, (last_name, last_index)]):  # the key is a table
                return number
            continue
        if _same_table(current, wanted_table) and assignment.search(line):
            return number
    return table_line


def _same_table(current: list[tuple[str, int | None]], wanted: list[tuple[str, int | None]]) -> bool:
    if len(current) != len(wanted):
        return False
    return all(c[0] == w[0] and (w[1] is None or c[1] == w[1]) for c, w in zip(current, wanted, strict=True))
