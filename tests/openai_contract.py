"""Contract checks against the official ``openai`` package types (docs/protocols.md B8).

``assert_valid_client_event`` / ``assert_valid_server_event`` validate one event (JSON text, bytes
or dict) with the SDK's GA unions wrapped in a pydantic discriminator (one precise error instead of
dozens), then walk the validated model tree and fail on any unknown key: the SDK models are
``extra="allow"``, so without the walk a typo or a beta-style misplaced key would pass.

Reusable by every test that wants to check what the engine sends to (or the fake emits from)
the realtime model: pass each recorded frame through these.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

CLIENT_EVENT: TypeAdapter[Any] = TypeAdapter(Annotated[RealtimeClientEvent, Field(discriminator="type")])
SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(Annotated[RealtimeServerEvent, Field(discriminator="type")])

REAL_SERVER_EXTRAS = frozenset({"$.session.id", "$.session.object", "$.session.expires_at"})
"""Keys the real server sends in ``session.created``/``session.updated`` that the SDK does not model."""


class ContractViolation(AssertionError):
    pass


def extra_keys(value: Any, path: str = "$") -> list[str]:
    """Paths of every key pydantic kept as ``model_extra`` anywhere in ``value``."""
    found: list[str] = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in (value.model_extra or {})]
        for name in type(value).model_fields:
            found += extra_keys(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for index, entry in enumerate(value):
            found += extra_keys(entry, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, entry in value.items():
            found += extra_keys(entry, f"{path}.{key}")
    return found


def _as_python(event: str | bytes | dict[str, Any]) -> Any:
    return json.loads(event) if isinstance(event, str | bytes) else event


def _validate(adapter: TypeAdapter[Any], event: Any, side: str, allowed_extra: Iterable[str]) -> BaseModel:
    data = _as_python(event)
    try:
        model: BaseModel = adapter.validate_python(data)
    except ValidationError as exc:
        raise ContractViolation(f"{side} event does not match the openai types: {exc}\n{data}") from None
    extras = [path for path in extra_keys(model) if path not in set(allowed_extra)]
    if extras:
        raise ContractViolation(f"{side} event {data.get('type')!r} has keys the API does not know: {extras}")
    return model


def assert_valid_client_event(event: str | bytes | dict[str, Any]) -> BaseModel:
    """Fail unless ``event`` is a GA client event with no unknown keys; returns the SDK model."""
    return _validate(CLIENT_EVENT, event, "client", ())


def assert_valid_server_event(
    event: str | bytes | dict[str, Any], allowed_extra: Iterable[str] = REAL_SERVER_EXTRAS
) -> BaseModel:
    """Fail unless ``event`` is a GA server event with no unknown keys (beyond ``allowed_extra``)."""
    return _validate(SERVER_EVENT, event, "server", allowed_extra)
