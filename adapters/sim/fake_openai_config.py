"""The simulated model's session configuration: defaults, ``session.update`` merging and checks.

Like the real server (docs/protocols.md B3): only fields present in an update change (``audio.input``
and ``audio.output`` merge key by key), ``session.updated`` carries the full effective config, a
session without ``type`` is the dead beta shape, and unknown parameters are refused with
``Unknown parameter: 'session.x'.`` — the check that catches a beta-style top-level ``voice``.
Turn detection objects are completed with the documented defaults.

Limitation: the simulated model only *produces* ``audio/pcmu`` and reads appended audio as μ-law,
whatever format is configured (the engine always configures pcmu).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Final

SESSION_KEYS: Final = frozenset(
    {
        "type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
        "max_output_tokens", "tracing", "truncation", "prompt", "include", "reasoning",
        "parallel_tool_calls",
    }
)  # fmt: skip
_AUDIO_KEYS: Final = {
    "input": frozenset({"format", "noise_reduction", "transcription", "turn_detection"}),
    "output": frozenset({"format", "voice", "speed"}),
}
_VAD_DEFAULTS: Final[dict[str, dict[str, Any]]] = {
    "server_vad": {
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    },
    "semantic_vad": {"eagerness": "auto", "create_response": True, "interrupt_response": True},
}
_FORMATS: Final = ("audio/pcmu", "audio/pcma", "audio/pcm")
DEFAULT_INSTRUCTIONS: Final = "You are a helpful, witty and friendly AI. Keep your answers short."


class BetaShapeRejected(Exception):
    """A beta-shaped session (no ``session.type``): answered with ``beta_api_shape_disabled``."""


class ConfigRejected(Exception):
    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


def _unknown(param: str) -> ConfigRejected:
    return ConfigRejected(f"Unknown parameter: '{param}'.", param=param, code="unknown_parameter")


def _invalid(param: str, problem: str) -> ConfigRejected:
    return ConfigRejected(f"Invalid value for '{param}': {problem}.", param=param, code="invalid_value")


def default_session(session_id: str, model: str) -> dict[str, Any]:
    """What ``session.created`` reports before any update (the real defaults: PCM 24 kHz, server VAD)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": session_id,
        "model": model,
        "output_modalities": ["audio"],
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "expires_at": int(time.time()) + 3600,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(_VAD_DEFAULTS["server_vad"], type="server_vad"),
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin", "speed": 1.0},
        },
        "include": None,
    }


def _check_format(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict) or value.get("type") not in _FORMATS:
        raise _invalid(f"{param}.type", f"expected one of {', '.join(_FORMATS)}")
    if value["type"] == "audio/pcm":
        if value.get("rate", 24000) != 24000:
            raise _invalid(f"{param}.rate", "only 24000 is supported")
        return {"type": "audio/pcm", "rate": 24000}
    return {"type": value["type"]}


def _complete_turn_detection(value: Any) -> dict[str, Any] | None:
    param = "session.audio.input.turn_detection"
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in _VAD_DEFAULTS:
        raise _invalid(f"{param}.type", "expected 'server_vad' or 'semantic_vad'")
    defaults = _VAD_DEFAULTS[value["type"]]
    for key in value:
        if key != "type" and key not in defaults:
            raise _unknown(f"{param}.{key}")
    return {"type": value["type"], **defaults, **{k: v for k, v in value.items() if k != "type"}}


def _merge_audio(current: dict[str, Any], update: Any, has_audio_output: bool) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise _invalid("session.audio", "expected an object")
    merged = copy.deepcopy(current)
    for direction, changes in update.items():
        if direction not in _AUDIO_KEYS:
            raise _unknown(f"session.audio.{direction}")
        if not isinstance(changes, dict):
            raise _invalid(f"session.audio.{direction}", "expected an object")
        for key, value in changes.items():
            param = f"session.audio.{direction}.{key}"
            if key not in _AUDIO_KEYS[direction]:
                raise _unknown(param)
            if key == "format":
                value = _check_format(value, param)
            elif key == "turn_detection":
                value = _complete_turn_detection(value)
            elif key == "transcription" and value is not None:
                if not isinstance(value, dict) or not isinstance(value.get("model"), str):
                    raise _invalid(param, "expected an object with a 'model'")
            elif key == "voice":
                if not (isinstance(value, str) or (isinstance(value, dict) and "id" in value)):
                    raise _invalid(param, "expected a voice name or {'id': …}")
                if has_audio_output and value != merged[direction].get("voice"):
                    raise ConfigRejected(
                        "Cannot update a conversation's voice if assistant audio is present.",
                        param=param,
                        code="cannot_update_voice",
                    )
            merged[direction][key] = value
    return merged


def apply_session_update(current: dict[str, Any], update: Any, *, has_audio_output: bool) -> dict[str, Any]:
    """The effective session after ``update`` (``current`` is not changed).

    Raises ``BetaShapeRejected`` for a beta-shaped session and ``ConfigRejected`` for anything
    else the real server would refuse.
    """
    if not isinstance(update, dict):
        raise _invalid("session", "expected an object")
    if "type" not in update:
        raise BetaShapeRejected()
    if update["type"] != "realtime":
        raise _invalid("session.type", "this session is a 'realtime' session")
    for key in update:
        if key not in SESSION_KEYS:
            raise _unknown(f"session.{key}")
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key == "audio":
            merged["audio"] = _merge_audio(current["audio"], value, has_audio_output)
        elif key == "output_modalities":
            if value not in (["audio"], ["text"]):
                raise _invalid("session.output_modalities", "expected ['audio'] or ['text']")
            merged[key] = list(value)
        elif key == "tools":
            if not isinstance(value, list) or not all(
                isinstance(t, dict) and t.get("type") in ("function", "mcp") for t in value
            ):
                raise _invalid("session.tools", "expected a list of function or mcp tools")
            merged[key] = copy.deepcopy(value)
        elif key == "instructions" and not isinstance(value, str):
            raise _invalid("session.instructions", "expected a string")
        else:
            merged[key] = copy.deepcopy(value)
    return merged
