"""``X-Twilio-Signature``: which URL Twilio signs, and checking (or forging, for fakes) the HMAC.

Twilio signs the URL *it* requested, which is our public origin (``PUBLIC_URL``, e.g. an ngrok
host), never the ``http://127.0.0.1:8081`` hypercorn sees behind a proxy. So every URL that takes
part in a signature is built here from ``PUBLIC_URL`` (docs/protocols.md A7, D3-D4):

- webhooks (``/twiml``, ``/twilio/status``): the ``https://`` URL plus the form parameters;
- the Media Streams upgrade: the ``wss://`` URL exactly as written in the TwiML, with **no**
  parameters (the upgrade is a GET without a body).

The HMAC itself is ``twilio.request_validator.RequestValidator``'s; this module only chooses the
inputs and adds the port variants Twilio's signing is inconsistent about.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from twilio.request_validator import RequestValidator

SIGNATURE_HEADER = "X-Twilio-Signature"
STREAM_PATH = "/call"

_STREAM_SCHEMES = {"https": "wss", "http": "ws", "wss": "wss", "ws": "ws"}
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def public_origin(public_url: str) -> SplitResult:
    """Check that ``public_url`` is an origin (``scheme://host[:port]``, optional trailing ``/``)
    and return it split. Raises ``ValueError`` saying what is wrong: a path or query would be
    silently dropped from every URL Twilio is told about, so it is refused instead."""
    parts = urlsplit(public_url.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"PUBLIC_URL must start with http:// or https://, got {public_url!r}")
    if not parts.hostname:
        raise ValueError(f"PUBLIC_URL has no host: {public_url!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError for a non-numeric or out-of-range port
    except ValueError:
        raise ValueError(f"PUBLIC_URL has an invalid port: {public_url!r}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(
            f"PUBLIC_URL must be an origin (scheme://host[:port]) without path or query, got {public_url!r}"
        )
    return parts


def stream_url(public_url: str) -> str:
    """The Media Streams URL put in the TwiML: ``PUBLIC_URL``'s scheme mapped to ``wss`` (``ws`` for
    ``http``), its host and port, and ``/call``. No query string: Twilio drops it."""
    origin = public_origin(public_url)
    return urlunsplit((_STREAM_SCHEMES[origin.scheme], origin.netloc, STREAM_PATH, "", ""))


def webhook_url(public_url: str, path: str, query: str = "") -> str:
    """The URL Twilio requests for a webhook on ``path`` (e.g. ``/twiml``), as Twilio signs it.
    ``query`` is the raw query string (without ``?``), part of the signed URL when present."""
    origin = public_origin(public_url)
    if not path.startswith("/"):
        path = "/" + path
    return urlunsplit((origin.scheme, origin.netloc, path, query, ""))


def compute_signature(auth_token: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """The ``X-Twilio-Signature`` value Twilio would send for a request to ``url`` with form
    ``params`` (a dict, or a multidict with ``getlist``/``getall``; ``{}`` for GETs and upgrades)."""
    return str(RequestValidator(auth_token).compute_signature(url, params or {}))


def _url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and (when it has none) with its scheme's default port.
    Twilio has signed each of these forms; the validator alone would add 80 for ``wss``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [url]
    if not parts.hostname:
        return [url]
    userinfo, _, _ = parts.netloc.rpartition("@")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    host = f"{userinfo}@{host}" if userinfo else host
    variants = [url, urlunsplit(parts._replace(netloc=host))]
    default = _DEFAULT_PORTS.get(parts.scheme)
    if port is None and default is not None:
        variants.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    return list(dict.fromkeys(variants))


def is_valid_signature(auth_token: str, url: str, params: Mapping[str, Any] | None, signature: str | None) -> bool:
    """Whether ``signature`` (the header value) signs ``url`` + ``params`` with ``auth_token``.

    False for a missing or empty signature and for an empty token (an empty HMAC key is no secret).
    Never raises on odd input: a header full of junk is just invalid.
    """
    if not signature or not auth_token:
        return False
    expected = signature.strip().encode("utf-8", errors="replace")
    validator = RequestValidator(auth_token)
    for candidate in _url_variants(url):
        try:
            computed = validator.compute_signature(candidate, params or {})
        except (TypeError, ValueError, KeyError):
            return False
        if hmac.compare_digest(computed.encode("ascii"), expected):
            return True
    return False
