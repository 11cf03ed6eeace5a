"""``CALLBRIDGE_STORE`` parsing: a SQLite path or a PostgreSQL URL becomes an eventsourcing environment.

The URL is the store's whole configuration (no other environment variable can redirect the log), and
a password in it never reaches a description, a log line or an error message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

_ACCEPTED = (
    "accepted are a file path ('./data/callbridge.db'), 'sqlite:///relative/path.db', "
    "'sqlite:////absolute/path.db', 'sqlite:///:memory:', and "
    "'postgresql://user[:password]@host[:port]/dbname[?schema=NAME]' (or 'postgres://')"
)
_PG_OPTIONS = {
    "schema": "POSTGRES_SCHEMA",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "lock_timeout": "POSTGRES_LOCK_TIMEOUT",
}


class StoreOpenError(RuntimeError):
    """The store could not be opened (bad path, database unreachable, ...)."""


class StoreNotWritableError(StoreOpenError):
    """The store opens but does not take writes (read-only file or database, disk full, no rights)."""


class StoreMissingError(StoreOpenError):
    """A command that only reads was pointed at a store that does not exist (a typo in ``--store``):
    it must not create an empty one."""


@dataclass(frozen=True)
class StoreTarget:
    """Where a ``CALLBRIDGE_STORE`` URL points: the eventsourcing environment that opens it, a
    description safe to print (no password), and the file for SQLite."""

    env: dict[str, str]
    description: str
    sqlite_path: Path | None = None

    @property
    def hint(self) -> str:
        """What to check when the store cannot be opened or written."""
        if self.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres":
            return "check the URL, that the database is running, and the user's rights"
        return "check the path, that this user can write the file and its folder, and that the disk has room"

    def require_existing(self) -> None:
        """For commands that only read: refuse a SQLite store that is not there (opening one creates it)."""
        if self.sqlite_path is not None and not self.sqlite_path.is_file():
            raise StoreMissingError(
                f"cannot open the event store {self.sqlite_path}: there is no such file (only `callbridge serve` "
                "creates a store); check --store or CALLBRIDGE_STORE"
            )
        if self.sqlite_path is None and self.env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite":
            raise StoreMissingError(
                f"cannot open the event store {self.description}: an in-memory store is empty in every new "
                "process; point --store or CALLBRIDGE_STORE at the server's store"
            )


def store_env(url: str) -> dict[str, str]:
    """The eventsourcing environment for a ``CALLBRIDGE_STORE`` value.

    SQLite URLs follow SQLAlchemy: ``sqlite:///data/x.db`` is relative to the working directory,
    ``sqlite:////srv/x.db`` is absolute. PostgreSQL URLs may carry ``schema``, ``pool_size``,
    ``max_overflow``, ``connect_timeout`` and ``lock_timeout`` query options (the schema must exist).
    Raises ``ValueError`` (never echoing a password) for anything else.
    """
    return parse_store_url(url).env


def parse_store_url(url: str) -> StoreTarget:
    text = url.strip()
    if not text:
        raise ValueError(f"the event store URL is empty; {_ACCEPTED}")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return _sqlite_target(text)
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ValueError(f"a sqlite URL has no host: write sqlite:///relative or sqlite:////absolute; {_ACCEPTED}")
        if "?" in rest:
            raise ValueError(f"a sqlite URL takes no query options; {_ACCEPTED}")
        return _sqlite_target(rest[1:])
    if scheme in ("postgresql", "postgres"):
        return _postgres_target(text)
    raise ValueError(f"unsupported event store URL scheme {scheme!r}; {_ACCEPTED}")


def _sqlite_target(path_text: str) -> StoreTarget:
    if not path_text:
        raise ValueError(f"the sqlite URL names no file; {_ACCEPTED}")
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite"}
    if path_text == ":memory:":
        # A shared-cache name, so every pooled connection sees the same database.
        env["SQLITE_DBNAME"] = f"file:callbridge-{uuid.uuid4().hex}?mode=memory&cache=shared"
        return StoreTarget(env, "sqlite::memory:")
    path = Path(path_text).expanduser().resolve()
    env["SQLITE_DBNAME"] = path.as_uri()  # the recorder opens with uri=True: quote odd characters
    return StoreTarget(env, f"sqlite:{path}", sqlite_path=path)


POSTGRES_RECORDER_TOPIC = "callbridge.engine.store_postgres_recorder:BinaryInsertRecorder"
"""The library's PostgreSQL recorder with its insert sent in binary (``engine/store_postgres_recorder.py``),
named here so that a SQLite store never imports psycopg."""


def _postgres_target(text: str) -> StoreTarget:
    parts = urlsplit(text)
    try:
        port = parts.port or 5432
    except ValueError:
        raise ValueError("the postgresql URL has an invalid port") from None
    user = unquote(parts.username or "")
    host = parts.hostname or ""
    dbname = unquote(parts.path.removeprefix("/"))
    if not user or not host or not dbname or "/" in dbname:
        raise ValueError(f"the postgresql URL needs a user, a host and a database name; {_ACCEPTED}")
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(port),
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "APPLICATION_RECORDER_TOPIC": POSTGRES_RECORDER_TOPIC,
    }
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key not in _PG_OPTIONS:
            raise ValueError(f"unknown postgresql URL option {key!r}; known: {', '.join(_PG_OPTIONS)}")
        env[_PG_OPTIONS[key]] = value
    shown_host = f"[{host}]" if ":" in host else host
    description = f"postgresql://{user}@{shown_host}:{port}/{dbname}"
    if env.get("POSTGRES_SCHEMA"):
        description += f"?schema={env['POSTGRES_SCHEMA']}"
    return StoreTarget(env, description)
