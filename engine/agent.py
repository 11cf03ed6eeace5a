"""An agent: how calls are answered and controlled, from a TOML file (``callbridge serve --agent FILE``).

The session configuration says what the model is (instructions, voice, tools); the agent adds what
a phone line needs around it: a greeting, hanging up after the goodbye is heard, transfers to
people the operator listed, the keypad both ways, what to do about silence and long calls,
voicemail, and when to renew the model's session before its time limit. Every key is optional::

    instructions = "You answer calls for Acme Plumbing."
    voice = "marin"
    greeting = "Thanks for calling Acme Plumbing, how can I help?"   # absent: the caller speaks first
    end_call = true                  # offer the end_call tool
    dtmf = "model"                   # model | collect | ignore
    dtmf_collect_timeout_s = 3.0     # collect: a pause this long ends the entry (so does '#')
    silence_reprompt_s = 10          # caller silent this long after hearing us: ask if they are there
    silence_hangup_s = 15            # still silent this long after the re-prompt: goodbye and hang up
    max_duration_s = 1800            # the longest a call may last
    max_duration_warning_s = 60      # ask the agent to wrap up this long before
    voicemail_message = "Hi, this is Acme Plumbing returning your call. Please call us back."
    transfer_no_answer_message = "Sorry, nobody could take your call. Can I help with anything else?"  # warm
    session_recycle_s = 3000         # open a fresh model session, at a quiet moment, after this long
    dtmf_tone_ms = 100               # send_dtmf: each key's tone, and the gap after it
    dtmf_gap_ms = 80

    # the model's options for this agent's calls (absent: the console's default session's)
    model = "gpt-realtime"           # the realtime model (the socket opens with it, session.update says it)
    max_output_tokens = 800          # 1-4096, or "inf"
    noise_reduction = "near_field"   # near_field (handset) | far_field (speakerphone) | none
    speed = 1.1                      # 0.25-1.5
    turn_detection = { type = "semantic_vad", eagerness = "low" }   # or server_vad with
                                     # threshold, prefix_padding_ms, silence_duration_ms, idle_timeout_ms
    server_tools = ["get_weather_from_coords"]   # which of the server's own tools it offers (absent: all; [] none)

    [[tools]]                        # the operator's own tools
    name = "lookup_order"
    description = "Look up an order by its number."
    parameters = { type = "object", properties = { order = { type = "string" } }, required = ["order"] }
    url = "https://acme.example/tools/lookup_order"   # POSTed, signed; without a url a person answers
    timeout_s = 5
    idempotent = true                # may be retried (timeouts, 5xx)
    secret_env = "ACME_TOOLS_SECRET" # its Standard Webhooks signing secret (whsec_…), from the environment

    [[transfer_targets]]
    label = "sales"
    to = "+15551234567"              # E.164, or a sip: URI
    caller_id = "+15557654321"       # optional: the number the person sees
    timeout_s = 30                   # how long their phone rings
    mode = "cold"                    # cold: announce, then connect | warm: hold, brief them, then connect
                                     # (warm needs Twilio credentials; nobody answers: back to the agent)

An unknown key or a bad value raises ``AgentError`` naming the key (``serve`` exits 2 with it).

The same keys with a ``name`` are an agent profile (``engine/agent_profiles.py``): versioned in the
log, edited in the console and the API, and chosen per call by the routing (``engine/routing.py``); the
agent file is the ``default`` profile's first version.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from callbridge.adapters.openai.session import SemanticVad, ServerVad

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
SIP = re.compile(r"^sips?:[^\s<>\"]+@[^\s<>\"]+$")
MODEL = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$")
LABEL = re.compile(r"^[A-Za-z0-9_ -]{1,40}$")
DTMF_KEYS = re.compile(r"^[0-9*#wW]{1,64}$")
"""Keys ``send_dtmf`` may press: digits, ``*``, ``#``; ``w`` waits half a second."""


PROFILE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
"""An agent profile's name (``engine/agent_profiles.py``): it is a URL segment and a log word."""
DEFAULT_PROFILE = "default"
"""The profile that answers when routing names no other; the agent file's (``--agent``)."""


class AgentError(ValueError):
    """An agent file or profile that cannot be used; the message names the key."""


def check_profile_name(name: object, *, key: str = "name") -> None:
    """Raise ``ValueError`` (``key: …``) unless ``name`` can name an agent profile."""
    if not isinstance(name, str) or not PROFILE_NAME.match(name):
        shown = repr(name[:60]) if isinstance(name, str) else type(name).__name__
        raise ValueError(
            f"{key}: {shown} is not an agent name: 1-40 of a-z, 0-9, '-', '_', starting with a letter or digit"
        )


TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class AgentTool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tool of this agent: with a ``url``, the operator's HTTP endpoint answers it (POSTed, signed,
    ``engine/http_tools.py``); without one, a person answers it from the console."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    url: str | None = None
    timeout_s: float = 5.0
    idempotent: bool = False
    """Safe to send twice: then a timeout, a dropped connection or a 5xx is retried."""
    retries: int = 2
    secret_env: str | None = None
    """The environment variable holding the signing secret (``whsec_…``); never the secret itself."""

    def __post_init__(self) -> None:
        if not TOOL_NAME.match(self.name):
            raise ValueError(f"name: {self.name[:80]!r} must match ^[a-zA-Z0-9_-]{{1,64}}$")
        if self.parameters.get("type") != "object":
            raise ValueError('parameters: must be a JSON Schema with type = "object"')
        try:
            Draft202012Validator.check_schema(self.parameters)
        except SchemaError as error:
            raise ValueError(f"parameters: not a valid JSON Schema ({error.message})") from None
        if self.url is not None and not re.match(r"^https?://[^\s/]+", self.url):
            raise ValueError(f"url: {self.url[:80]!r} is not an http(s) URL")
        if not 0.5 <= self.timeout_s <= 30:
            raise ValueError("timeout_s: between 0.5 and 30 seconds (the caller is waiting)")
        if not 0 <= self.retries <= 5:
            raise ValueError("retries: between 0 and 5")
        if self.secret_env is not None and not re.match(r"^[A-Z_][A-Z0-9_]*$", self.secret_env):
            raise ValueError("secret_env: the name of an environment variable (A-Z, 0-9, _)")

    def secret_unset(self, environ: Mapping[str, str]) -> bool:
        """Whether this tool signs its requests (an HTTP tool with ``secret_env``) and ``environ`` lacks
        the secret: such a tool cannot run on this engine."""
        return self.url is not None and self.secret_env is not None and not environ.get(self.secret_env)


class TransferTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    label: str
    to: str
    caller_id: str | None = None
    timeout_s: int = 30
    mode: Literal["cold", "warm"] = "cold"

    def __post_init__(self) -> None:
        if not LABEL.match(self.label):
            raise ValueError("label: 1-40 letters, digits, spaces, '-' or '_'")
        if not (E164.match(self.to) or SIP.match(self.to)):
            raise ValueError(f"to: {self.to!r} is neither an E.164 number (+15551234567) nor a sip: URI")
        if self.caller_id is not None and not E164.match(self.caller_id):
            raise ValueError(f"caller_id: {self.caller_id!r} is not an E.164 number")
        if not 5 <= self.timeout_s <= 600:
            raise ValueError("timeout_s: between 5 and 600 seconds")


def _positive(name: str, value: float | None, *, low: float = 0.0, high: float = 86_400) -> None:
    if value is not None and not low < value <= high:
        raise ValueError(f"{name}: must be more than {low:g} and at most {high:g}")


class Agent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    instructions: str | None = None
    voice: str | None = None
    greeting: str | None = None
    end_call: bool = True
    dtmf: Literal["model", "collect", "ignore"] = "model"
    dtmf_collect_timeout_s: float = 3.0
    silence_reprompt_s: float | None = None
    silence_hangup_s: float | None = None
    max_duration_s: float | None = None
    max_duration_warning_s: float = 60.0
    voicemail_message: str | None = None
    transfer_no_answer_message: str = (
        "I'm sorry, nobody could take your call right now. Is there anything else I can help you with?"
    )
    session_recycle_s: float = 3000.0
    dtmf_tone_ms: int = 100
    dtmf_gap_ms: int = 80
    transfer_targets: list[TransferTarget] = []
    tools: list[AgentTool] = []
    model: str | None = None
    turn_detection: ServerVad | SemanticVad | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    noise_reduction: Literal["near_field", "far_field", "none"] | None = None
    speed: float | None = None
    server_tools: list[str] | None = None
    """The server's own tools this agent offers, by name (None: all of them)."""

    def __post_init__(self) -> None:
        if self.model is not None and not MODEL.match(self.model):
            raise ValueError(f"model: {self.model[:80]!r} is not a model name (e.g. gpt-realtime)")
        if self.max_output_tokens is not None and self.max_output_tokens != "inf":
            if not 1 <= self.max_output_tokens <= 4096:
                raise ValueError('max_output_tokens: between 1 and 4096, or "inf"')
        if self.speed is not None and not 0.25 <= self.speed <= 1.5:
            raise ValueError("speed: between 0.25 and 1.5 (1 is the voice's own pace)")
        for index, name in enumerate(self.server_tools or []):
            if not TOOL_NAME.match(name):
                raise ValueError(f"server_tools[{index}]: {name[:80]!r} is not a tool name")
        if self.greeting is not None and not self.greeting.strip():
            raise ValueError("greeting: empty (leave it out for the caller to speak first)")
        _positive("dtmf_collect_timeout_s", self.dtmf_collect_timeout_s, high=60)
        _positive("silence_reprompt_s", self.silence_reprompt_s, low=1.0, high=3600)
        _positive("silence_hangup_s", self.silence_hangup_s, low=1.0, high=3600)
        _positive("max_duration_s", self.max_duration_s, low=10.0, high=4 * 3600)
        _positive("max_duration_warning_s", self.max_duration_warning_s, high=3600)
        _positive("session_recycle_s", self.session_recycle_s, low=60.0, high=3540)
        if not 40 <= self.dtmf_tone_ms <= 1000:
            raise ValueError("dtmf_tone_ms: between 40 and 1000")
        if not 40 <= self.dtmf_gap_ms <= 2000:
            raise ValueError("dtmf_gap_ms: between 40 and 2000")
        labels = [target.label.lower() for target in self.transfer_targets]
        if len(set(labels)) != len(labels):
            raise ValueError("transfer_targets: two targets share a label")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tools: two tools share a name")
        reserved = set(names) & {"end_call", "transfer_call", "send_dtmf"}
        if reserved:
            raise ValueError(f"tools: {sorted(reserved)[0]!r} is a built-in tool's name")

    def target(self, label: str) -> TransferTarget | None:
        """The configured target called ``label`` (case-insensitive), or None."""
        wanted = label.strip().lower()
        return next((target for target in self.transfer_targets if target.label.lower() == wanted), None)

    def session_defaults(self) -> dict[str, Any]:
        """The session keys the agent sets (merged over the console's default session for its calls):
        instructions, voice and the model options it names."""
        keys: dict[str, Any] = {
            key: value for key, value in (("instructions", self.instructions), ("voice", self.voice)) if value
        }
        if self.model is not None:
            keys["model"] = self.model
        if self.turn_detection is not None:
            keys["turn_detection"] = msgspec.to_builtins(self.turn_detection)
        if self.max_output_tokens is not None:
            keys["max_output_tokens"] = self.max_output_tokens
        if self.noise_reduction is not None:
            keys["noise_reduction"] = None if self.noise_reduction == "none" else self.noise_reduction
        if self.speed is not None:
            keys["speed"] = self.speed
        return keys


DEFAULT_AGENT = Agent()


def parse_agent(data: dict[str, Any], *, where: str = "agent") -> Agent:
    try:
        return msgspec.convert(data, Agent)
    except msgspec.ValidationError as error:
        raise AgentError(f"{where}: {explain(error)}") from None


def load_agent(path: str | Path) -> Agent:
    """The agent in a TOML file; ``AgentError`` says which key is wrong, or why the file can't be read."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise AgentError(f"cannot read the agent file {path}: {error.strerror or error}") from None
    except tomllib.TOMLDecodeError as error:
        raise AgentError(f"{path} is not valid TOML: {error}") from None
    return parse_agent(data, where=str(path))


def explain(error: msgspec.ValidationError) -> str:
    """msgspec says ``Object contains unknown field `x` - at `$.transfer_targets[0]```: name the key first
    (the agent file, agent profiles and the routing rules all say it this way)."""
    text = str(error)
    path = ""
    if " - at `" in text:
        text, _, path = text.partition(" - at `")
        path = path.rstrip("`").removeprefix("$").lstrip(".")
    unknown = re.search(r"unknown field `([^`]+)`", text)
    if unknown:
        key = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
        return f"unknown key {key!r}"
    return f"{path or 'value'}: {text}" if path else text


_KEY_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])*(\.[A-Za-z_][A-Za-z0-9_]*(\[[0-9]+\])*)*$")


def error_key(message: str) -> str | None:
    """The key an :func:`explain` message names: ``transfer_targets[0]: to: 'x' is …`` →
    ``transfer_targets[0].to``; ``unknown key 'x'`` → ``x``."""
    unknown = re.match(r"^unknown key '([^']+)'", message)
    if unknown:
        return unknown.group(1)
    parts: list[str] = []
    for part in message.split(": ")[:-1]:
        if not _KEY_PATH.match(part):
            break
        parts.append(part)
    return ".".join(parts) or None
