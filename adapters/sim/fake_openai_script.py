"""What the simulated realtime model "hears" and says: a script of caller turns.

The simulated model cannot understand audio, so a script tells it what each caller turn said
(``transcript``, reported as the input transcription) and how to answer: a spoken ``reply``, or a
``function_call`` whose result it then speaks like a good agent would, never as raw JSON: through
``after_tool``, where ``{output}`` is the tool output string and ``{key}`` the value of that key of
a JSON object output (numbers said as whole numbers: ``21.6`` → ``22``); an error result
(``{"error": …}``), or one without a key the template names, is answered with ``after_tool_error``
("Sorry, I couldn't look that up right now."). Turn N is the N-th user message of the conversation, so a session
re-seeded after a reconnect carries on where the old one stopped.

JSON form (``callbridge fake-openai --script FILE``), either the object or just the turn list::

    {"greeting": "Hello!", "turns": [
        {"transcript": "What's the weather at 37.77, -122.42?",
         "function_call": {"name": "get_weather_from_coords",
                           "arguments": {"latitude": 37.77, "longitude": -122.42}}},
        {"transcript": "Thanks!", "reply": "You're welcome."}],
     "keypad": {"0": {"transcript": "(pressed 0)", "function_call": {"name": "transfer_call",
                                                                   "arguments": {"target": "sales"}}}}}

A ``keypad`` turn answers the caller pressing those keys (``dtmf = "model"`` or ``"collect"``: the
engine tells the model which keys), whenever they press them.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import msgspec

DEFAULT_AFTER_TOOL = "Here is what I found: {output}"
DEFAULT_AFTER_TOOL_ERROR = "Sorry, I couldn't look that up right now."
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ScriptError(ValueError):
    """A script file that cannot be used; the message says where it is wrong."""


class FunctionCall(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    arguments: dict[str, Any] | str = {}

    @property
    def arguments_json(self) -> str:
        """The arguments as the JSON string the protocol carries."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"))


class Turn(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    transcript: str
    reply: str | None = None
    function_call: FunctionCall | None = None
    after_tool: str = DEFAULT_AFTER_TOOL
    after_tool_error: str = DEFAULT_AFTER_TOOL_ERROR

    def __post_init__(self) -> None:
        if (self.reply is None) == (self.function_call is None):
            raise ValueError("a turn needs exactly one of 'reply' and 'function_call'")

    def tool_reply(self, output: str) -> str:
        """What the model says once the tool answered."""
        return spoken_tool_result(output, self.after_tool, self.after_tool_error)


def _spoken(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value):
        return str(round(value))
    return value if isinstance(value, str) else json.dumps(value)


def spoken_tool_result(output: str, template: str, on_error: str = DEFAULT_AFTER_TOOL_ERROR) -> str:
    """``template`` filled from a tool ``output``, or ``on_error`` when the tool failed (an
    ``{"error": …}`` object) or its answer lacks a key the template names."""
    try:
        data = json.loads(output)
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        return on_error
    fields = data if isinstance(data, dict) else {}
    missing = [name for name in _PLACEHOLDER.findall(template) if name != "output" and name not in fields]
    if missing:
        return on_error

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return output if name == "output" else _spoken(fields[name])

    return _PLACEHOLDER.sub(fill, template)  # one pass: braces inside outputs stay as they are


KEYPAD_TURNS = 1_000_000
"""Turn numbers from here on are ``Script.keypad``'s turns, in order (never a spoken turn's)."""
_KEYPAD_MESSAGE = re.compile(r"^\(The caller (?:pressed|entered) (?P<keys>[0-9*#]+) on the keypad\.\)$")


class Script(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    turns: list[Turn]
    greeting: str = "Hello! Thanks for calling. How can I help you today?"
    """Said when a response is requested before the caller has said anything."""
    fallback_transcript: str = "Hello?"
    fallback_reply: str = "I'm still here. Is there anything else I can help you with?"
    """Turns past the end of the script hear ``fallback_transcript`` and get ``fallback_reply``."""
    keypad: dict[str, Turn] = {}
    """How the model answers keys the caller pressed (the engine tells it "(The caller pressed 0 on
    the keypad.)" or "(… entered 123 …)"): a turn of their own, like a real model reading what it is
    told, instead of the next spoken turn. Other keys are answered as that next turn."""

    def turn(self, index: int) -> Turn:
        keyed = list(self.keypad.values())
        if 0 <= index - KEYPAD_TURNS < len(keyed):
            return keyed[index - KEYPAD_TURNS]
        if 0 <= index < len(self.turns):
            return self.turns[index]
        return Turn(transcript=self.fallback_transcript, reply=self.fallback_reply)

    def keypad_turn(self, text: str) -> int | None:
        """The turn that answers the keypad message ``text``, or None (not a keypad message, or keys
        this script does not answer)."""
        found = _KEYPAD_MESSAGE.match(text.strip())
        if found is None or found.group("keys") not in self.keypad:
            return None
        return KEYPAD_TURNS + list(self.keypad).index(found.group("keys"))


_WORD_FOR_WORD = re.compile(r'word for word:\s*"(?P<quote>.*)"\s*$', re.DOTALL)
INSTRUCTED_LINES = (
    ("transfer", "One moment, I'm transferring you now."),
    ("still there", "Are you still there?"),
    ("goodbye", "Thank you for calling. Goodbye!"),
)
"""A short fitting line for ``response.create`` instructions, by a word they contain."""


def instructed_reply(instructions: str) -> str | None:
    """What the simulated model says for a ``response.create`` with ``instructions``: the quoted
    text of 'Say this to the caller, word for word: "…"' exactly; a short fitting line for a goodbye,
    a re-prompt or a transfer announcement; None (the script decides) for anything else."""
    quoted = _WORD_FOR_WORD.search(instructions)
    if quoted:
        return quoted.group("quote")
    lowered = instructions.lower()
    return next((line for word, line in INSTRUCTED_LINES if word in lowered), None)


WEATHER_REPLY = "It's {temperature_c} degrees in San Francisco right now."

LONG_REPLY = "Once upon a time, a small wooden boat sailed across a calm blue ocean, while the sailors sang."
"""About 6 s of speech: long enough to talk over (barge-in demos)."""

DEFAULT_SCRIPT = Script(
    turns=[
        Turn(
            transcript="What's the weather like in San Francisco right now?",
            function_call=FunctionCall(
                name="get_weather_from_coords", arguments={"latitude": 37.77, "longitude": -122.42}
            ),
            after_tool=WEATHER_REPLY,
        ),
        Turn(transcript="Can you tell me a story about the ocean?", reply=LONG_REPLY),
        Turn(transcript="What can you help me with?", reply="I can look up the weather and answer questions."),
        Turn(
            transcript="Thank you, that's all.",
            function_call=FunctionCall(name="end_call", arguments={"reason": "the caller is done"}),
            after_tool="You're welcome! Have a great day. Goodbye.",
        ),
    ],
    keypad={
        "0": Turn(
            transcript="(The caller pressed 0 for sales.)",
            function_call=FunctionCall(
                name="transfer_call", arguments={"target": "sales", "reason": "the caller pressed 0 for sales"}
            ),
            after_tool="One moment, I'm transferring you to sales.",
            after_tool_error="I'm sorry, I can't transfer you right now. Is there anything else I can do?",
        )
    },
)
"""The built-in script (``make run``'s simulated model): a tool call, a long story to interrupt, a
question and a hang-up through ``end_call`` (the goodbye is asked for and said); a caller pressing 0
is transferred to ``sales`` (the agent must list that target; otherwise the refusal is apologised
for), whenever they press it."""


def parse_script(data: str | bytes) -> Script:
    """A script from JSON text (an object, or a bare list of turns)."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise ScriptError(f"script is not valid JSON: {exc}") from None
    if isinstance(raw, list):
        raw = {"turns": raw}
    try:
        return msgspec.convert(raw, Script)
    except msgspec.ValidationError as exc:
        raise ScriptError(f"script does not fit the expected shape: {exc}") from None


def load_script(path: str | Path) -> Script:
    """A script from a JSON file."""
    try:
        text = Path(path).read_bytes()
    except OSError as exc:
        raise ScriptError(f"cannot read script {path}: {exc}") from None
    return parse_script(text)
