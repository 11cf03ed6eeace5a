"""Console sessions: the cookie a browser gets for holding the API token, which expires and can be
revoked.

The cookie value is ``ISSUED.NONCE.MAC``: the Unix second it was issued, 16 random bytes in hex,
and an HMAC-SHA256 under the API token over both. Why this shape:

- **It proves the token without carrying it**, and stops working when the token changes.
- **It expires on the server too**: a session is valid for :data:`SESSION_MAX_AGE_S` after it was
  issued, whatever the browser does with ``Max-Age`` (a copied cookie dies all the same).
- **Logout revokes it**: the nonce goes into a revocation list kept in the data folder
  (``revoked-sessions``, mode 0600, rewritten atomically), read at start, so a copied cookie is
  dead even after a restart. Entries are dropped once the session would have expired anyway, so
  the list stays small. Engines sharing a PostgreSQL store but not a data folder revoke only on
  the engine that handled the logout; the session still ends at its expiry.
- No other server-side state: any engine with the token can check any session.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

SESSION_MAX_AGE_S = 12 * 3600
"""How long a console session lasts after sign-in."""
CLOCK_SKEW_S = 300
"""A session issued this far in the future (another engine's clock) is still accepted."""
REVOKED_FILE = "revoked-sessions"
_LABEL = b"callbridge console session v2"


def _mac(token: str, issued: int, nonce: str) -> str:
    return hmac.new(token.encode(), _LABEL + f"|{issued}|{nonce}".encode(), hashlib.sha256).hexdigest()


def _parse(value: str) -> tuple[int, str, str] | None:
    parts = value.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
        return None
    return int(parts[0]), parts[1], parts[2]


class SessionKeeper:
    """Issues, checks and revokes session cookie values. Thread-safe; the file is touched only on
    revocation (rare) and at start."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        max_age_s: int = SESSION_MAX_AGE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._path = data_dir / REVOKED_FILE if data_dir is not None else None
        self._lock = threading.Lock()
        self._revoked: dict[str, int] = self._load()
        """Revoked nonces and when their session would have expired anyway."""

    def issue(self, token: str) -> str:
        """A new session value for ``token``."""
        issued = int(self._clock())
        nonce = secrets.token_hex(16)
        return f"{issued}.{nonce}.{_mac(token, issued, nonce)}"

    def valid(self, token: str, value: str) -> bool:
        """Whether ``value`` is an unexpired, unrevoked session of ``token`` (constant-time MAC check)."""
        parsed = _parse(value) if token and value else None
        if parsed is None:
            return False
        issued, nonce, mac = parsed
        if not hmac.compare_digest(mac.encode(), _mac(token, issued, nonce).encode()):
            return False
        now = self._clock()
        if not issued - CLOCK_SKEW_S <= now < issued + self.max_age_s:
            return False
        with self._lock:
            return nonce not in self._revoked

    def revoke(self, token: str, value: str) -> bool:
        """Revoke a valid session (junk is ignored, so it cannot fill the list). Blocking: it
        rewrites the revocation file. Returns whether something was revoked."""
        if not self.valid(token, value):
            return False
        issued, nonce, _ = _parse(value) or (0, "", "")
        with self._lock:
            self._revoked[nonce] = issued + self.max_age_s
            self._prune()
            self._save()
        return True

    def _prune(self) -> None:
        now = self._clock()
        for nonce, expires in list(self._revoked.items()):
            if expires + CLOCK_SKEW_S < now:
                del self._revoked[nonce]

    def _load(self) -> dict[str, int]:
        if self._path is None or not self._path.exists():
            return {}
        revoked: dict[str, int] = {}
        try:
            for line in self._path.read_text().splitlines():
                nonce, _, expires = line.partition(" ")
                if nonce and expires.isdigit():
                    revoked[nonce] = int(expires)
        except OSError as error:
            log.warning("cannot read the revoked console sessions in %s: %s", self._path, error)
        return revoked

    def _save(self) -> None:
        if self._path is None:
            return
        text = "".join(f"{nonce} {expires}\n" for nonce, expires in self._revoked.items())
        try:
            write_private_file(self._path, text)
        except OSError as error:  # the revocation still holds in this process
            log.error("cannot save the revoked console sessions to %s: %s", self._path, error)


def write_private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically; the file is mode 0600 from its first byte."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
