"""Who this engine is: a name that survives restarts, held by one running process at a time.

Why: every call records the engine carrying it (``CallStarted.engine_id``), so that when an engine
dies mid-call its calls can be ended for it (``projections.lost_calls``) — by itself once restarted,
at once, because it recognises its own name; or by any other engine sharing the PostgreSQL store once
its heartbeats stop. That needs a name that is the same after a restart and never used by two live
processes:

- ``CALLBRIDGE_ENGINE_ID`` when set (give each engine sharing a store its own), else a name made once
  and kept in the data folder (``<data dir>/engine-id``);
- while ``serve`` runs it holds an exclusive lock (``<data dir>/engine-<id>.lock``; the kernel drops
  it when the process dies, even by ``kill -9``). A second engine started with the same data folder
  and no ``CALLBRIDGE_ENGINE_ID`` runs under a fresh name for its lifetime (its calls, should it die,
  are then ended by staleness rather than at its restart); with an explicit ``CALLBRIDGE_ENGINE_ID``
  that is taken, ``serve`` refuses to start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

ENGINE_ID_ENV = "CALLBRIDGE_ENGINE_ID"
ENGINE_ID_FILE = "engine-id"
_VALID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class EngineIdError(ValueError):
    """The engine cannot take its name (invalid, or held by another running engine)."""


@dataclass
class EngineIdentity:
    """This process as an engine. Release the name with :meth:`release` (or by exiting)."""

    engine_id: str
    instance: str = field(default_factory=lambda: secrets.token_hex(8))
    """Random per process start."""
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    _lock: IO[bytes] | None = None
    _lock_path: Path | None = None
    """Removed at release: set for a name made for this process only (nobody takes it again)."""

    def release(self) -> None:
        """Let another process take this name (closing the lock file releases the lock)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
            if self._lock_path is not None:
                self._lock_path.unlink(missing_ok=True)


def claim_engine_id(data_dir: Path, configured: str | None = None) -> EngineIdentity:
    """This engine's identity: ``configured`` (``CALLBRIDGE_ENGINE_ID``) or the data folder's name,
    locked for this process. Raises :class:`EngineIdError` saying what to change."""
    configured = (configured or "").strip() or None
    if configured is not None and not _VALID.fullmatch(configured):
        raise EngineIdError(
            f"{ENGINE_ID_ENV} must be 1 to 64 letters, digits, '.', '_' or '-' (starting with a letter or digit), "
            f"got {configured!r}"
        )
    engine_id = configured or _stored_engine_id(data_dir)
    lock = _try_lock(data_dir, engine_id)
    if lock is not None:
        return EngineIdentity(engine_id, _lock=lock)
    if configured is not None:
        raise EngineIdError(
            f"engine id {engine_id!r} is in use by another callbridge serve on this machine; give each engine "
            f"its own {ENGINE_ID_ENV}"
        )
    fresh = f"{engine_id}-{secrets.token_hex(3)}"
    log.warning(
        "another callbridge serve uses this data folder (%s) as engine %s: this one runs as engine %s "
        "until it stops (set %s to give it a lasting name)",
        data_dir,
        engine_id,
        fresh,
        ENGINE_ID_ENV,
    )
    return EngineIdentity(fresh, _lock=_try_lock(data_dir, fresh), _lock_path=data_dir / f"engine-{fresh}.lock")


def _stored_engine_id(data_dir: Path) -> str:
    path = data_dir / ENGINE_ID_FILE
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = ""
    except OSError as exc:
        raise EngineIdError(f"cannot read the engine id in {path}: {exc}; set {ENGINE_ID_ENV}") from exc
    if _VALID.fullmatch(stored):
        return stored
    if stored:
        log.warning("ignoring the malformed engine id in %s: making a new one", path)
    engine_id = f"{_host_part()}-{secrets.token_hex(4)}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(engine_id + "\n")
    except OSError as exc:
        raise EngineIdError(f"cannot keep the engine id in {path}: {exc}; set {ENGINE_ID_ENV}") from exc
    return engine_id


def _host_part() -> str:
    """The host name as far as it is valid in an engine id (people read these in logs)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname()).strip(".-_")[:40]
    return cleaned or "engine"


def _try_lock(data_dir: Path, engine_id: str) -> IO[bytes] | None:
    """An open lock file held exclusively for ``engine_id``, or None when another process holds it."""
    path = data_dir / f"engine-{engine_id}.lock"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "wb")  # held open for the engine's life
    except OSError as exc:
        raise EngineIdError(f"cannot create {path}: {exc}; check the data folder's permissions") from exc
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle
