"""What the console, the API and ``/mcp`` all check on an HTTP request, as pure functions: the
bearer token it carries, and which ``Host``/``Origin`` values are this server (shared by ``web/``
and ``mcp_server/``, so neither imports the other)."""

from __future__ import annotations

import hmac
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def same_secret(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header (scheme case-insensitive), else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def allowed_hosts_and_origins(public_url: str, port: int | None) -> tuple[list[str], list[str]]:
    """``Host`` and ``Origin`` values that are this server: the public URL's (with and without its
    default port), and loopback on ``port``."""
    parts = urlsplit(public_url)
    scheme, host = parts.scheme or "http", parts.hostname or ""
    hosts: list[str] = []
    origins: list[str] = []
    if host:
        name = f"[{host}]" if ":" in host else host
        public_port = parts.port or _DEFAULT_PORTS.get(scheme)
        if parts.port is None:
            hosts.append(name)
            origins.append(f"{scheme}://{name}")
        hosts.append(f"{name}:{public_port}")
        origins.append(f"{scheme}://{name}:{public_port}")
    if port:
        for loopback in _LOOPBACK_NAMES:
            hosts.append(f"{loopback}:{port}")
            origins.append(f"http://{loopback}:{port}")
    return list(dict.fromkeys(hosts)), list(dict.fromkeys(origins))


def normalize_origin(origin: str) -> str | None:
    """``scheme://host:port`` in lower case with the port always written; None for anything that
    is not an http(s) origin (``null``, junk)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return None
    host = parts.hostname.lower()
    name = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{name}:{port or _DEFAULT_PORTS[parts.scheme]}"
