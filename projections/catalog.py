"""The views callbridge maintains, in the order the runner folds them."""

from __future__ import annotations

from callbridge.projections.conversations import ConversationsProjection
from callbridge.projections.metrics import MetricsProjection
from callbridge.projections.ownership import OwnershipProjection
from callbridge.projections.projection import Projection
from callbridge.projections.webhooks_view import WebhooksProjection


def default_projections() -> list[Projection]:
    """Conversations, metrics, who carries which call, and the webhooks' deliveries."""
    return [ConversationsProjection(), MetricsProjection(), OwnershipProjection(), WebhooksProjection()]
