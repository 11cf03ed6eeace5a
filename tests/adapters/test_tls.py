"""The process's TLS contexts: made once, and a broken certificate setting never stops the server."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator

import pytest

from callbridge.adapters.tls import http_tls_context, load_tls_contexts, websocket_tls_context


@pytest.fixture(autouse=True)
def fresh_contexts() -> Iterator[None]:
    http_tls_context.cache_clear()
    websocket_tls_context.cache_clear()
    yield
    http_tls_context.cache_clear()  # the next user makes them from the real settings
    websocket_tls_context.cache_clear()


async def test_each_context_is_made_once_and_shared() -> None:
    await load_tls_contexts()
    assert http_tls_context() is http_tls_context()
    assert websocket_tls_context() is websocket_tls_context()
    assert http_tls_context() is not websocket_tls_context()  # httpx2 sets ALPN on its own
    assert websocket_tls_context().verify_mode == ssl.CERT_REQUIRED


async def test_a_missing_certificate_file_is_logged_not_raised_and_fixing_it_needs_no_restart(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent/ca.pem")
    with caplog.at_level(logging.ERROR, logger="callbridge.adapters.tls"):
        await load_tls_contexts()  # the server goes on starting
    assert any("SSL_CERT_FILE" in record.getMessage() for record in caplog.records)
    with pytest.raises(FileNotFoundError):
        http_tls_context()  # what needs it fails with the real error
    monkeypatch.delenv("SSL_CERT_FILE")
    assert http_tls_context().verify_mode == ssl.CERT_REQUIRED  # the failure was not kept
