"""The event writer through a long store outage: it keeps retrying, however long the store is down."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from callbridge.engine.events import CallStarted
from callbridge.engine.store import EncodedEvent, EventStore
from callbridge.engine.store_writer import EventWriter


class DownStore(EventStore):
    """A real SQLite store whose writes all fail, counting the attempts."""

    def __init__(self, url: str, until_attempts: int) -> None:
        super().__init__(url)
        self.attempts = 0
        self.until_attempts = until_attempts
        self.reached = trio.Event()

    def append_encoded(self, batch: Sequence[EncodedEvent]) -> int:
        self.attempts += 1
        if self.attempts == self.until_attempts:
            trio.from_thread.run_sync(self.reached.set)
        raise OSError("No space left on device")


async def test_the_writer_survives_an_outage_of_more_than_a_thousand_failed_attempts(
    sqlite_store_url: str, autojump_clock: trio.testing.MockClock
) -> None:
    """The backoff ``0.1 * 2 ** (n - 1)`` overflowed at n ≈ 1075 (about 90 minutes at a 5 s cap):
    the writer crashed, and the server with it, while waiting for the disk to come back."""
    store = DownStore(sqlite_store_url, until_attempts=1200)
    writer = EventWriter(store, flush_interval=0.01, max_backoff=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        writer.record(CallStarted(call_id="CA1", at=0.0, stream_sid="MZ1"))
        await store.reached.wait()  # virtual time: ~100 minutes of retries
        assert writer.statistics().consecutive_failures >= 1200 - 1
        assert writer.pending_count == 1  # still queued, not lost
        nursery.cancel_scope.cancel()
    store.close()
