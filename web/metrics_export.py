"""``GET /metrics``: the Prometheus exposition, built with ``prometheus_client``.

Why this shape:

- **One private registry per server**, never the library's global one: several servers run in one
  process in the tests, and nothing else in the process should leak into our scrape. It holds
  ``prometheus_client``'s own process and platform collectors (``process_cpu_seconds_total``,
  ``process_resident_memory_bytes``, ``process_open_fds``, … from ``/proc``; ``python_info``) and
  :class:`BridgeCollector` (the metrics view's families, and this engine's live calls, store head
  and projection lag).
- **A scrape is rendered in a worker thread** (the views are read with SQLite, ``/proc`` with
  files), one scrape at a time: the engine's numbers are taken in the trio thread just before
  (:class:`EngineSnapshot`) and handed to the collector, so the collector never reads engine state
  from another thread. Scrapes come every few seconds; serialising them also bounds their cost.
- **The head is the one the views were brought up to** (read-your-writes, as the API's other
  answers), so ``callbridge_projection_lag_events`` is 0 unless the views could not catch up in time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from callbridge.projections.metrics_prometheus import view_metric_families
from callbridge.projections.views_db import open_views

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The exposition's content type (Prometheus text format, as ``generate_latest`` writes it)."""


class EngineSnapshot(NamedTuple):
    """This engine's numbers at the start of a scrape."""

    live_calls: int
    head: int
    """The store position the views were brought up to for this scrape."""
    projected: int
    """The views' position once they were."""


def engine_families(snapshot: EngineSnapshot) -> list[Metric]:
    """Gauges of the running engine: live calls, the store head and how far the views lag."""
    return [
        GaugeMetricFamily("callbridge_live_calls", "Calls in progress on this engine.", value=snapshot.live_calls),
        GaugeMetricFamily(
            "callbridge_store_head_position", "Highest position in the event store.", value=snapshot.head
        ),
        GaugeMetricFamily(
            "callbridge_projection_lag_events",
            "Store positions not yet in the views.",
            value=max(0, snapshot.head - snapshot.projected),
        ),
    ]


class BridgeCollector(Collector):
    """The metrics view's families and the engine's gauges, for one scrape at a time."""

    def __init__(self, views_path: Path) -> None:
        self.views_path = views_path
        self.snapshot: EngineSnapshot | None = None
        """Set by :meth:`MetricsExport.render` before each scrape; None outside one."""

    def collect(self) -> Iterator[Metric]:
        db = open_views(self.views_path)
        try:
            yield from view_metric_families(db)
        finally:
            db.close()
        if self.snapshot is not None:
            yield from engine_families(self.snapshot)


class MetricsExport:
    """One per server: its registry, and the scrape that renders it."""

    def __init__(self, views_path: Path, *, limiter: trio.CapacityLimiter | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._bridge = BridgeCollector(views_path)
        self.registry.register(self._bridge)
        self._limiter = limiter
        self._one_scrape = trio.Lock()

    async def render(self, snapshot: Callable[[], Awaitable[EngineSnapshot]]) -> bytes:
        """The exposition, with the engine's numbers from ``snapshot()`` (awaited in this scrape's turn)."""
        async with self._one_scrape:
            self._bridge.snapshot = await snapshot()
            try:
                return await trio.to_thread.run_sync(generate_latest, self.registry, limiter=self._limiter)
            finally:
                self._bridge.snapshot = None
