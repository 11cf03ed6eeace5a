"""The tools every agent may offer the model to control the call itself (names fixed by the contract).

- ``end_call(reason)``: hang up once the goodbye has been heard (on unless the agent says
  ``end_call = false``);
- ``transfer_call(target, reason)``: hand the caller to one of the agent's ``transfer_targets``
  (offered only when there are some; ``target`` is a label, never a number the model makes up);
- ``send_dtmf(digits)``: press keys, as in-band tones (to get through an IVR).

The call core answers them itself (``handler="builtin"``); no backend and no operator is involved.
"""

from __future__ import annotations

from typing import Any

import msgspec

from callbridge.engine.agent import Agent

END_CALL = "end_call"
TRANSFER_CALL = "transfer_call"
SEND_DTMF = "send_dtmf"
NAMES = frozenset({END_CALL, TRANSFER_CALL, SEND_DTMF})


def builtin_schemas(agent: Agent) -> list[dict[str, Any]]:
    schemas: list[dict[str, Any]] = []
    if agent.end_call:
        schemas.append(
            {
                "type": "function",
                "name": END_CALL,
                "description": (
                    "End the phone call when the conversation is over. Say a short goodbye first; the line is "
                    "hung up once the caller has heard it."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {"reason": {"type": "string", "description": "Why the call ends, in a few words."}},
                    "required": ["reason"],
                },
            }
        )
    if agent.transfer_targets:
        labels = [target.label for target in agent.transfer_targets]
        schemas.append(
            {
                "type": "function",
                "name": TRANSFER_CALL,
                "description": (
                    "Transfer the caller to a person. Tell the caller you are transferring them first. Only these "
                    f"targets exist: {', '.join(labels)}."
                ),
                "parameters": {
                    "type": "object",
                    "properties": {
                        "target": {"type": "string", "enum": labels, "description": "Who to transfer to."},
                        "reason": {"type": "string", "description": "Why, in a few words (they will be told)."},
                    },
                    "required": ["target", "reason"],
                },
            }
        )
    schemas.append(
        {
            "type": "function",
            "name": SEND_DTMF,
            "description": (
                "Press keys on the phone's keypad, e.g. to choose an option in an automated menu. Digits, * and #; "
                "w waits half a second."
            ),
            "parameters": {
                "type": "object",
                "properties": {"digits": {"type": "string", "pattern": "^[0-9*#wW]{1,64}$"}},
                "required": ["digits"],
            },
        }
    )
    return schemas


def builtin_arguments(text: str) -> dict[str, Any]:
    """A built-in call's arguments; anything that is not a JSON object reads as none (each built-in
    then says what is missing)."""
    try:
        value = msgspec.json.decode(text or "{}")
    except msgspec.DecodeError:
        return {}
    return value if isinstance(value, dict) else {}
