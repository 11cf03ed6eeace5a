"""Every setting of ``callbridge serve``, read once from flags and the environment (docs/contract.md).

Secrets (the OpenAI key, the Twilio auth token, the API token) live only here and in the objects
that need them; ``public_summary`` is what may be printed or shown in the console.

The data folder holds the API token, the SQLite store and the views: it is created mode 0700,
and the token file is mode 0600 from its first byte (written under another name, then linked into
place, so two first starts never end up with different tokens). ``serve`` also sets the umask to
077, so the store and views files it creates are 0600 too (see ``callbridge/cli.py``).
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from callbridge.adapters.twilio.signature import public_origin
from callbridge.projections.views_db import data_dir_for_store

DEFAULT_REALTIME_URL = "wss://api.openai.com/v1/realtime?model=gpt-realtime"
DEFAULT_STORE = "./data/callbridge.db"
TOKEN_FILE = "api-token"
DEFAULT_MAX_OUTBOUND = 10
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class SettingsError(ValueError):
    """A setting is wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    host: str
    port: int
    public_url: str
    openai_api_key: str | None
    openai_realtime_url: str
    model: str
    """``openai`` or ``sim``."""
    twilio_account_sid: str | None
    twilio_auth_token: str | None
    twilio_api_base_url: str | None
    store_url: str
    api_token: str
    api_token_generated: bool
    data_dir: Path
    weather_url: str
    public_url_from_bind: bool = False
    """No PUBLIC_URL was given: it follows the address actually bound (port 0 in tests)."""
    api_token_from_env: bool = False
    """The token is CALLBRIDGE_API_TOKEN's, not the data folder's ``api-token`` file."""
    agent_path: str | None = None
    """``--agent FILE`` or ``CALLBRIDGE_AGENT``: the agent answering calls (``engine/agent.py``)."""
    caller_id: str | None = None
    """``CALLBRIDGE_CALLER_ID``: the number outbound calls come from (else the account's first)."""
    max_outbound: int = DEFAULT_MAX_OUTBOUND
    """``CALLBRIDGE_MAX_OUTBOUND``: outbound calls in progress at once on this engine."""
    apology: str | None = None
    """``CALLBRIDGE_APOLOGY``: what a caller hears when the model cannot be reached or the log cannot
    take the call — unset: the bundled apology; ``none``: silence; else an 8 kHz mono WAV's path."""

    @property
    def twilio_credentials(self) -> bool:
        """Both TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are set: hang-ups, transfers and outbound
        calls go through Twilio's REST API."""
        return bool(self.twilio_account_sid and self.twilio_auth_token)

    @property
    def public_summary(self) -> dict[str, object]:
        """Settings safe to print or show: no secret values, only whether they are set."""
        return {
            "host": self.host,
            "port": self.port,
            "public_url": self.public_url,
            "model": self.model,
            "openai_realtime_url": self.openai_realtime_url,
            "openai_api_key_set": bool(self.openai_api_key),
            "twilio_account_sid_set": bool(self.twilio_account_sid),
            "twilio_auth_token_set": bool(self.twilio_auth_token),
            "store": self.store_url.split("@")[-1] if "://" in self.store_url else self.store_url,
            "agent": self.agent_path,
            "caller_id": self.caller_id,
            "max_outbound": self.max_outbound,
        }


def load_api_token(data_dir: Path, configured: str | None) -> tuple[str, bool]:
    """The configured token, or the one kept in the data folder, or a new one (saved, mode 0600)."""
    if configured:
        return configured, False
    path = data_dir / TOKEN_FILE
    if path.exists():
        return path.read_text().strip(), False
    make_private_dir(data_dir)
    token = secrets.token_urlsafe(24)
    temporary = data_dir / f".{TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(token + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)  # fails if another process saved its token first: use that one
        except FileExistsError:
            return path.read_text().strip(), False
    finally:
        temporary.unlink(missing_ok=True)
    return token, True


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) with the folder itself mode 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def data_dir_warning(data_dir: Path) -> str | None:
    """A warning when the data folder (API token, store, views) is open to other users; None when
    it is not, or does not exist."""
    try:
        mode = data_dir.stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"the data folder {data_dir} is readable by other users (mode {stat.S_IMODE(mode):o}): it holds the API "
            f"token and every call's recording; run: chmod 700 {data_dir}"
        )
    return None


def load_settings(
    env: Mapping[str, str] | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    store: str | None = None,
    model: str | None = None,
    agent: str | None = None,
) -> Settings:
    env = os.environ if env is None else env
    host = host or env.get("HOST") or "127.0.0.1"
    try:
        port = port if port is not None else int(env.get("PORT") or 8081)
    except ValueError as error:
        raise SettingsError(f"PORT must be a number, got {env.get('PORT')!r}") from error
    public_url = (env.get("PUBLIC_URL") or f"http://{host}:{port}").rstrip("/")
    public_url_from_bind = not env.get("PUBLIC_URL")
    try:
        public_origin(public_url)
    except ValueError as error:
        raise SettingsError(f"{error} (for example https://x.ngrok-free.app or http://127.0.0.1:8081)") from None
    api_key = env.get("OPENAI_API_KEY") or None
    model = model or ("openai" if api_key else "sim")
    if model not in ("openai", "sim"):
        raise SettingsError(f"--model must be 'openai' or 'sim', got {model!r}")
    if model == "openai" and not api_key:
        raise SettingsError("--model openai needs OPENAI_API_KEY; unset it or use --model sim for the simulated model")
    caller_id = (env.get("CALLBRIDGE_CALLER_ID") or "").strip() or None
    if caller_id is not None and not E164.match(caller_id):
        raise SettingsError(f"CALLBRIDGE_CALLER_ID must be an E.164 number like +15551234567, got {caller_id!r}")
    max_outbound_text = env.get("CALLBRIDGE_MAX_OUTBOUND") or str(DEFAULT_MAX_OUTBOUND)
    try:
        max_outbound = int(max_outbound_text)
    except ValueError:
        max_outbound = -1
    if not 0 <= max_outbound <= 10_000:
        raise SettingsError(
            f"CALLBRIDGE_MAX_OUTBOUND must be a whole number from 0 (no outbound calls) to 10000, "
            f"got {max_outbound_text!r}"
        )
    store_url = store or env.get("CALLBRIDGE_STORE") or DEFAULT_STORE
    data_dir = data_dir_for_store(store_url)
    try:
        token, generated = load_api_token(data_dir, env.get("CALLBRIDGE_API_TOKEN"))
    except OSError as error:
        raise SettingsError(
            f"cannot keep the API token in the data folder {data_dir} ({error.strerror or error}); "
            "check --store or CALLBRIDGE_STORE, and that this user can write there"
        ) from None
    return Settings(
        host=host,
        port=port,
        public_url=public_url,
        openai_api_key=api_key,
        openai_realtime_url=env.get("OPENAI_REALTIME_URL") or DEFAULT_REALTIME_URL,
        model=model,
        twilio_account_sid=env.get("TWILIO_ACCOUNT_SID") or None,
        twilio_auth_token=env.get("TWILIO_AUTH_TOKEN") or None,
        twilio_api_base_url=env.get("TWILIO_API_BASE_URL") or None,
        store_url=store_url,
        api_token=token,
        api_token_generated=generated,
        data_dir=data_dir,
        weather_url=env.get("CALLBRIDGE_WEATHER_URL") or "https://api.open-meteo.com/v1/forecast",
        public_url_from_bind=public_url_from_bind,
        api_token_from_env=bool(env.get("CALLBRIDGE_API_TOKEN")),
        agent_path=agent or env.get("CALLBRIDGE_AGENT") or None,
        caller_id=caller_id,
        max_outbound=max_outbound,
        apology=env.get("CALLBRIDGE_APOLOGY") or None,
    )
