"""What a failed Twilio REST request means, in words a person can act on (``adapters/twilio/rest.py``).

Every failure — bad credentials, an unknown number, an unreachable API, a peer that is not Twilio —
becomes one :class:`TwilioRestError` whose ``kind`` says which and whose message says what to do;
the engine's ``Telephony`` raises :class:`TelephonyError` with the same words. Messages never carry
the auth token (:func:`redact`).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException


class RestErrorKind(StrEnum):
    AUTH = "auth"
    """Twilio refused the credentials (HTTP 401/403, e.g. error 20003)."""
    NOT_FOUND = "not_found"
    """No such number on the account (HTTP 404, error 20404)."""
    UNREACHABLE = "unreachable"
    """No answer: connection refused, DNS, timeout, bad base URL."""
    REJECTED = "rejected"
    """Any other error answer (400, 429, 5xx)."""
    BAD_RESPONSE = "bad_response"
    """An answer that is not the Twilio API's JSON (a wrong ``TWILIO_API_BASE_URL``)."""


class TelephonyError(Exception):
    """Twilio refused a call update, or could not be reached: what the engine's ``Telephony`` raises
    (``engine.context``); the message says which and why, without the token."""


class TwilioRestError(Exception):
    """A Twilio REST call failed; ``kind`` says how, the message what to do about it."""

    def __init__(self, kind: RestErrorKind, message: str, *, status: int | None = None, code: int | None = None):
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.code = code


def redact(text: str, secret: str) -> str:
    """``text`` without ``secret`` (the auth token) in it."""
    return text.replace(secret, "***") if secret else text


def describe_failure(
    exc: Exception, base_url: str, timeout_s: float
) -> tuple[RestErrorKind, str, int | None, int | None]:
    """(kind, what happened and what to do, HTTP status, Twilio error code) for a failed call."""
    page_error = _page_error(exc)
    if page_error is not None or isinstance(exc, TwilioRestException | TwilioServiceException):
        if page_error is not None:
            status, code, said = page_error
        else:
            assert isinstance(exc, TwilioRestException | TwilioServiceException)
            status, code, said = int(exc.status), _int_or_none(exc.code), _twilio_message(exc)
        where = f"HTTP {status}" + (f", Twilio error {code}" if code and code != status else "")
        if status in (401, 403):
            advice = "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
            return RestErrorKind.AUTH, f"Twilio refused the credentials ({where}: {said}); {advice}", status, code
        if status == 404:
            return RestErrorKind.NOT_FOUND, f"not found on this account ({where}: {said})", status, code
        return RestErrorKind.REJECTED, f"Twilio answered {where}: {said}", status, code
    if isinstance(exc, requests.Timeout):
        return RestErrorKind.UNREACHABLE, f"no answer from {base_url} within {timeout_s:g} s", None, None
    if isinstance(exc, requests.ConnectionError):
        return RestErrorKind.UNREACHABLE, f"cannot connect to {base_url} ({_root_cause(exc)})", None, None
    if isinstance(exc, requests.RequestException):
        return RestErrorKind.UNREACHABLE, f"bad Twilio API URL {base_url} ({type(exc).__name__})", None, None
    if isinstance(exc, ValueError | KeyError | TypeError | AttributeError | TwilioException):
        advice = "check TWILIO_API_BASE_URL"
        return RestErrorKind.BAD_RESPONSE, f"{base_url} did not answer like the Twilio API; {advice}", None, None
    return RestErrorKind.REJECTED, type(exc).__name__, None, None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _page_error(exc: Exception) -> tuple[int, int | None, str] | None:
    """(status, code, message) of a failed list page: the client raises a bare
    ``TwilioException("Unable to fetch page", response)`` there, not a ``TwilioRestException``."""
    if type(exc) is not TwilioException or len(exc.args) < 2:
        return None
    response = exc.args[1]
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        return None
    try:
        body = json.loads(getattr(response, "text", "") or "")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return status, None, f"HTTP {status}"
    return status, _int_or_none(body.get("code")), str(body.get("message") or body.get("title") or f"HTTP {status}")


def _twilio_message(exc: TwilioRestException | TwilioServiceException) -> str:
    """Twilio's own words for the error: the ``message`` (REST) or ``title``/``detail`` (RFC 9457)."""
    if isinstance(exc, TwilioServiceException):
        return exc.detail or exc.title
    msg = str(exc.msg or "")
    return msg.split(": ", 1)[1] if ": " in msg else msg  # twilio prefixes "Unable to fetch page: "


def _root_cause(exc: BaseException) -> str:
    """The innermost cause's text, short (requests wraps urllib3 wraps socket errors)."""
    inner: BaseException = exc
    while inner.__cause__ is not None or (inner.args and isinstance(inner.args[0], BaseException)):
        inner = inner.__cause__ or inner.args[0]
    text = str(inner)
    if "] " in text and text.startswith(("<", "HTTPConnection")):
        text = text.rsplit("] ", 1)[-1]
    return (text or type(inner).__name__)[:160]
