"""The TLS contexts of this process's outgoing connections, each made once.

Making a context loads the certificate store: ~20 ms of CPU (over 100 ms the first time), during
which the event loop, and every call's audio on it, stands still. Made per connection, that was
every call's OpenAI socket and every tool request. A context is meant to be shared by many
connections, so each kind is made once, and the server makes them in a thread as it starts
(:func:`load_tls_contexts`). Two, not one: httpx2 sets the ALPN protocols on the context it is
given (``h2`` among them, when enabled), which a WebSocket's handshake must not offer.
"""

from __future__ import annotations

import functools
import logging
import ssl

import httpx2
import trio

log = logging.getLogger(__name__)


@functools.cache
def http_tls_context() -> ssl.SSLContext:
    """For ``httpx2`` clients (tools, webhooks, checks): httpx2's default — the system's store, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``."""
    return httpx2.create_ssl_context()


@functools.cache
def websocket_tls_context() -> ssl.SSLContext:
    """For ``wss://`` sockets (the OpenAI Realtime API): the standard library's default."""
    return ssl.create_default_context()


async def load_tls_contexts() -> None:
    """Make both contexts in a worker thread, so that no task of the event loop waits for them. One
    that cannot be made (``SSL_CERT_FILE`` naming a missing file, say) is logged, not raised: the
    server still starts, and what needs it fails with the same error when it asks for it (a
    failure is not cached, so fixing the file needs no restart)."""

    def load() -> None:
        for make in (http_tls_context, websocket_tls_context):
            try:
                make()
            except (OSError, ssl.SSLError) as error:
                log.error(
                    "cannot load the TLS certificates (%s): HTTPS requests and wss:// sockets will fail "
                    "until it is fixed; check SSL_CERT_FILE and SSL_CERT_DIR",
                    error,
                )

    await trio.to_thread.run_sync(load)
