"""Reading a served Prometheus exposition in tests, with ``prometheus_client``'s own parser (so a test
reads what a scraper reads, not our idea of the format)."""

from __future__ import annotations

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Metric]:
    """The exposition's families by name (a counter's family name is without ``_total``)."""
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample_key(name: str, labels: dict[str, str]) -> str:
    """``name{a="1",b="2"}`` (labels sorted), or ``name`` without labels: how samples are looked up."""
    if not labels:
        return name
    return name + "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


def samples(text: str) -> dict[str, float]:
    """Every sample of the exposition by :func:`sample_key`, with its value."""
    return {
        sample_key(sample.name, sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
