"""Signing what we POST to an operator's endpoint, the Standard Webhooks way (pure).

Tool calls over HTTP and webhooks out are both signed so the operator's server can tell the request
came from callbridge and was not replayed: ``webhook-id`` (stable across retries of one message),
``webhook-timestamp`` (Unix seconds) and ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over
``{id}.{timestamp}.{body}`` with the secret. A secret written ``whsec_<base64>`` is that key
(the format every Standard Webhooks library reads); any other string is used as the key's bytes.
See https://www.standardwebhooks.com/ — verified in our tests with its reference library.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    if secret.startswith(PREFIX):
        try:
            return base64.b64decode(secret[len(PREFIX) :] + "==")
        except binascii.Error:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    return secret.encode()


def new_secret() -> str:
    """A fresh random secret in the ``whsec_`` format (24 random bytes)."""
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str | None, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers (without a secret: the id and timestamp only, unsigned)."""
    headers = {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    if secret:
        headers["webhook-signature"] = signature(secret, message_id, timestamp, body)
    return headers
