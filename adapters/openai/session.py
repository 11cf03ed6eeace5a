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

Bad config raises ``SessionConfigError`` naming the key, so the console can show it before saving.
"""

from __future__ import annotations

import copy
from typing import Any, Final

VOICES: Final = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")

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

_OPTIONAL_KEYS: Final = ("noise_reduction", "speed", "max_output_tokens")
_ALLOWED_KEYS: Final = frozenset(DEFAULT_SESSION_CONFIG) | frozenset(_OPTIONAL_KEYS)

_VAD_KEYS: Final[dict[str, dict[str, tuple[type, ...]]]] = {
    "server_vad": {
        "threshold": (int, float),
        "prefix_padding_ms": (int,),
        "silence_duration_ms": (int,),
        "idle_timeout_ms": (int, type(None)),
        "create_response": (bool,),
        "interrupt_response": (bool,),
    },
    "semantic_vad": {
        "eagerness": (str,),
        "create_response": (bool,),
        "interrupt_response": (bool,),
    },
}
_EAGERNESS: Final = ("low", "medium", "high", "auto")
_TOOL_KEYS: Final = frozenset({"type", "name", "description", "parameters"})


class SessionConfigError(ValueError):
    """The session configuration cannot be turned into a GA session; the message names the key."""


def _fail(key: str, problem: str) -> SessionConfigError:
    return SessionConfigError(f"session config {key!r}: {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_turn_detection(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise _fail("turn_detection", "must be an object with a 'type', or null for manual turns")
    kind = value.get("type")
    if kind not in _VAD_KEYS:
        raise _fail("turn_detection", f"type must be 'server_vad' or 'semantic_vad', not {kind!r}")
    allowed = _VAD_KEYS[kind]
    for key, setting in value.items():
        if key == "type":
            continue
        if key not in allowed:
            raise _fail(f"turn_detection.{key}", f"is not a {kind} setting (allowed: {sorted(allowed)})")
        types = allowed[key]
        if bool in types:
            ok = isinstance(setting, bool)
        else:  # bool is an int subclass: True is not a threshold
            ok = isinstance(setting, types) and not isinstance(setting, bool)
        if not ok:
            raise _fail(f"turn_detection.{key}", f"has the wrong type ({type(setting).__name__})")
    if "threshold" in value and not 0.0 <= value["threshold"] <= 1.0:
        raise _fail("turn_detection.threshold", "must be between 0 and 1")
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if key in value and value[key] < 0:
            raise _fail(f"turn_detection.{key}", "must not be negative")
    if "eagerness" in value and value["eagerness"] not in _EAGERNESS:
        raise _fail("turn_detection.eagerness", f"must be one of {list(_EAGERNESS)}")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise _fail("tools", "must be a list of function tool schemas")
    names: set[str] = set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise _fail(where, "must be an object")
        if tool.get("type") != "function":
            raise _fail(f"{where}.type", "must be 'function'")
        extra = set(tool) - _TOOL_KEYS
        if extra:
            raise _fail(where, f"unknown keys {sorted(extra)} (allowed: {sorted(_TOOL_KEYS)})")
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(f"{where}.name", "must be a non-empty string")
        if name in names:
            raise _fail(f"{where}.name", f"{name!r} is defined twice")
        names.add(name)
        if not isinstance(tool.get("description", ""), str):
            raise _fail(f"{where}.description", "must be a string")
        if not isinstance(tool.get("parameters", {}), dict):
            raise _fail(f"{where}.parameters", "must be a JSON Schema object")


def _check_tool_choice(choice: Any) -> None:
    if choice in ("auto", "none", "required"):
        return
    if isinstance(choice, dict) and choice.get("type") == "function" and set(choice) == {"type", "name"}:
        if isinstance(choice["name"], str) and choice["name"]:
            return
    raise _fail("tool_choice", "must be 'auto', 'none', 'required' or {'type': 'function', 'name': …}")


def _check_voice(voice: Any) -> None:
    if isinstance(voice, str) and voice:
        return
    if isinstance(voice, dict) and set(voice) == {"id"} and isinstance(voice["id"], str) and voice["id"]:
        return
    raise _fail("voice", f"must be a voice name ({', '.join(VOICES)}) or {{'id': 'voice_…'}}")


def normalize_session_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked and completed with the defaults (a new dict; the input is not changed)."""
    if not isinstance(config, dict):
        raise SessionConfigError("session config must be an object")
    unknown = set(config) - _ALLOWED_KEYS
    if unknown:
        raise SessionConfigError(
            f"session config has unknown keys {sorted(unknown)} (allowed: {sorted(_ALLOWED_KEYS)})"
        )
    merged = copy.deepcopy({**DEFAULT_SESSION_CONFIG, **config})
    for key in ("model", "instructions"):
        if not isinstance(merged[key], str):
            raise _fail(key, "must be a string")
    if not merged["model"]:
        raise _fail("model", "must not be empty")
    _check_voice(merged["voice"])
    _check_turn_detection(merged["turn_detection"])
    transcription = merged["input_transcription_model"]
    if transcription is not None and (not isinstance(transcription, str) or not transcription):
        raise _fail("input_transcription_model", "must be a model name or null")
    _check_tools(merged["tools"])
    _check_tool_choice(merged["tool_choice"])
    if merged.get("noise_reduction") not in (None, "near_field", "far_field"):
        raise _fail("noise_reduction", "must be 'near_field', 'far_field' or null")
    speed = merged.get("speed")
    if speed is not None and (not _is_number(speed) or not 0.25 <= speed <= 1.5):
        raise _fail("speed", "must be a number between 0.25 and 1.5")
    limit = merged.get("max_output_tokens")
    if limit is not None and limit != "inf":
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 4096:
            raise _fail("max_output_tokens", "must be 1-4096 or 'inf'")
    return merged


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
