"""callbridge's session configuration → the GA ``session`` object of ``session.update``.

callbridge keeps a flat, human-editable config (saved from the console, recorded with each call);
the wire wants the nested GA shape (docs/protocols.md B3). This module is the only place that knows the
mapping, and it always produces a GA session: ``type="realtime"``, audio output only, μ-law
(``audio/pcmu``) both ways so Twilio audio passes through untouched.

Config keys (all optional; missing ones take ``DEFAULT_SESSION_CONFIG``'s value):

- ``model``: realtime model name;
- ``instructions``: the system prompt;
- ``voice``: ``marin``, ``cedar``, ``alloy``, … or ``{"id": "voice_…"}`` for a custom voice;
- ``turn_detection``: ``{"type": "server_vad" | "semantic_vad", …settings}`` or None (manual turns);
- ``input_transcription_model``: e.g. ``gpt-4o-mini-transcribe``, or None for no transcripts;
- ``tools``: function tool schemas ``{type: "function", name, description, parameters}``;
- ``tool_choice``: ``auto`` | ``none`` | ``required`` | ``{"type": "function", "name": …}``;
- ``noise_reduction``: ``near_field`` | ``far_field`` | None; ``speed``: 0.25-1.5;
  ``max_output_tokens``: 1-4096 or ``"inf"``.

The config is decoded by msgspec into :class:`SessionConfig` (unknown keys refused, each value's
type and range checked); bad config raises ``SessionConfigError`` naming the key and what is
allowed, so the console can show it before saving. Tool names follow the API's
``^[a-zA-Z0-9_-]{1,64}$``; voices are the Realtime GA voices (:data:`VOICES`) or a custom voice id.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Final, Literal, get_args

import msgspec
from msgspec import UNSET, Meta, UnsetType

Voice = Literal["alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"]
VOICES: Final[tuple[str, ...]] = get_args(Voice)
"""The Realtime GA voices."""

DEFAULT_INSTRUCTIONS: Final = (
    "You are a friendly, concise phone assistant. Callers hear you over a phone line, so speak in "
    "short, natural sentences, avoid lists and formatting, and ask one question at a time. If a "
    "tool can answer the caller's question, use it, then explain the result in plain words."
)

DEFAULT_SESSION_CONFIG: Final[dict[str, Any]] = {
    "model": "gpt-realtime",
    "instructions": DEFAULT_INSTRUCTIONS,
    "voice": "marin",
    "turn_detection": {"type": "server_vad", "interrupt_response": True, "create_response": True},
    "input_transcription_model": "gpt-4o-mini-transcribe",
    "tools": [],
    "tool_choice": "auto",
}

TOOL_NAME_PATTERN: Final = r"^[a-zA-Z0-9_-]{1,64}$"
"""What the Realtime API accepts as a function name."""

ToolName = Annotated[str, Meta(pattern=TOOL_NAME_PATTERN)]
NonEmpty = Annotated[str, Meta(min_length=1)]


class _Config(msgspec.Struct, forbid_unknown_fields=True):
    """Unknown keys are refused (a typo must not be saved silently); UNSET keys are left out."""


class CustomVoice(_Config):
    id: NonEmpty


class ServerVad(_Config, tag="server_vad", tag_field="type"):
    threshold: Annotated[float, Meta(ge=0.0, le=1.0)] | UnsetType = UNSET
    prefix_padding_ms: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    silence_duration_ms: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    idle_timeout_ms: Annotated[int, Meta(ge=0)] | UnsetType | None = UNSET
    create_response: bool | UnsetType = UNSET
    interrupt_response: bool | UnsetType = UNSET


class SemanticVad(_Config, tag="semantic_vad", tag_field="type"):
    eagerness: Literal["low", "medium", "high", "auto"] | UnsetType = UNSET
    create_response: bool | UnsetType = UNSET
    interrupt_response: bool | UnsetType = UNSET


class FunctionTool(_Config):
    type: Literal["function"]
    name: ToolName
    description: str | UnsetType = UNSET
    parameters: dict[str, Any] | UnsetType = UNSET


class NamedToolChoice(_Config):
    type: Literal["function"]
    name: ToolName


class SessionConfig(_Config):
    """A complete callbridge session config, decoded and checked by msgspec (every key has its
    default, so a partial config decodes to a complete one)."""

    model: NonEmpty = DEFAULT_SESSION_CONFIG["model"]
    instructions: str = DEFAULT_INSTRUCTIONS
    voice: Voice | CustomVoice = "marin"
    turn_detection: ServerVad | SemanticVad | None = msgspec.field(
        default_factory=lambda: ServerVad(interrupt_response=True, create_response=True)
    )
    input_transcription_model: NonEmpty | None = DEFAULT_SESSION_CONFIG["input_transcription_model"]
    tools: list[FunctionTool] = msgspec.field(default_factory=list)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice = "auto"
    noise_reduction: Literal["near_field", "far_field"] | UnsetType | None = UNSET
    speed: Annotated[float, Meta(ge=0.25, le=1.5)] | UnsetType = UNSET
    max_output_tokens: Annotated[int, Meta(ge=1, le=4096)] | Literal["inf"] | UnsetType = UNSET

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for index, tool in enumerate(self.tools):
            if tool.name in seen:
                raise ValueError(f"session config 'tools[{index}].name': {tool.name!r} is defined twice")
            seen.add(tool.name)


SESSION_KEYS: Final = SessionConfig.__struct_fields__

_HINTS: Final[dict[str, str]] = {
    "voice": f"must be one of {', '.join(VOICES)}, or {{'id': 'voice_…'}} for a custom voice",
    "turn_detection.type": "must be 'server_vad' or 'semantic_vad' (or turn_detection null for manual turns)",
    "tool_choice": "must be 'auto', 'none', 'required' or {'type': 'function', 'name': …}",
    "noise_reduction": "must be 'near_field', 'far_field' or null",
    "speed": "must be a number between 0.25 and 1.5",
    "max_output_tokens": "must be 1-4096 or 'inf'",
    "input_transcription_model": "must be a model name or null",
}
_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<field>[^`]+)`$")


class SessionConfigError(ValueError):
    """The session configuration cannot be turned into a GA session; the message names the key."""


_NESTED: Final[dict[str, type[msgspec.Struct]]] = {
    "tools": FunctionTool,
    "voice": CustomVoice,
    "tool_choice": NamedToolChoice,
    "turn_detection/server_vad": ServerVad,
    "turn_detection/semantic_vad": SemanticVad,
}
MAX_PROBLEM_CHARS: Final = 200
"""A refused value is quoted in the message only this far (a 1 MB name must not come back whole)."""


def _allowed(path: str, config: dict[str, Any]) -> str:
    """The keys allowed in the object at ``path`` (``""``: the config itself)."""
    key = re.sub(r"\[\d+\]", "", path)
    if key == "turn_detection":
        kind = config.get("turn_detection", {}).get("type") if isinstance(config.get("turn_detection"), dict) else None
        key = f"turn_detection/{kind}"
    struct = _NESTED.get(key, SessionConfig) if path else SessionConfig
    return ", ".join(struct.__struct_fields__)


def _error(exc: msgspec.ValidationError, config: dict[str, Any]) -> SessionConfigError:
    """msgspec's message rewritten for people: which key, what is wrong, what is allowed."""
    match = _AT.match(str(exc))
    problem = match["problem"] if match else str(exc)
    path = (match["path"] or "").lstrip(".") if match else ""
    if problem.startswith("session config "):  # raised by __post_init__: already says where
        return SessionConfigError(problem)
    if missing := _MISSING.match(problem):
        path = f"{path}.{missing['field']}".lstrip(".")
        return SessionConfigError(f"session config {path!r}: is required")
    if unknown := _UNKNOWN.match(problem):
        where = f"{path!r} has" if path else "has"
        field = unknown["field"][:MAX_PROBLEM_CHARS]
        return SessionConfigError(f"session config {where} unknown key {field!r} (allowed: {_allowed(path, config)})")
    if path.endswith(".name") and "regex" in problem:
        problem = f"must be 1-64 letters, digits, '_' or '-' ({TOOL_NAME_PATTERN})"
    if len(problem) > MAX_PROBLEM_CHARS:
        problem = problem[:MAX_PROBLEM_CHARS] + "…"
    hint = _HINTS.get(path)
    return SessionConfigError(f"session config {path or 'session'!r}: {problem}{f'; {hint}' if hint else ''}")


def decode_session_config(config: Any) -> SessionConfig:
    """``config`` (a partial or complete config object) checked and completed with the defaults."""
    if not isinstance(config, dict):
        raise SessionConfigError("session config must be an object of session settings")
    try:
        return msgspec.convert(config, SessionConfig)
    except msgspec.ValidationError as exc:
        raise _error(exc, config) from None


def normalize_session_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked and completed with the defaults, as plain JSON-able data (a new dict)."""
    builtins: dict[str, Any] = msgspec.to_builtins(decode_session_config(config))
    return builtins


def session_update_payload(config: dict[str, Any]) -> dict[str, Any]:
    """The GA ``session`` object for ``session.update`` built from a callbridge session config."""
    cfg = normalize_session_config(config)
    audio_input: dict[str, Any] = {
        "format": {"type": "audio/pcmu"},
        "turn_detection": cfg["turn_detection"],
        "transcription": ({"model": cfg["input_transcription_model"]} if cfg["input_transcription_model"] else None),
    }
    if cfg.get("noise_reduction"):
        audio_input["noise_reduction"] = {"type": cfg["noise_reduction"]}
    audio_output: dict[str, Any] = {"format": {"type": "audio/pcmu"}, "voice": cfg["voice"]}
    if cfg.get("speed") is not None:
        audio_output["speed"] = cfg["speed"]
    session: dict[str, Any] = {
        "type": "realtime",
        "model": cfg["model"],
        "output_modalities": ["audio"],
        "instructions": cfg["instructions"],
        "audio": {"input": audio_input, "output": audio_output},
        "tools": cfg["tools"],
        "tool_choice": cfg["tool_choice"],
    }
    if cfg.get("max_output_tokens") is not None:
        session["max_output_tokens"] = cfg["max_output_tokens"]
    return session
