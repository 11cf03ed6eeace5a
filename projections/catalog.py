"""The views callbridge maintains, in the order the runner folds them."""

from __future__ import annotations

from callbridge.projections.conversations import ConversationsProjection
from callbridge.projections.metrics import MetricsProjection
from callbridge.projections.ownership import OwnershipProjection
from callbridge.projections.projection import Projection


def default_projections() -> list[Projection]:
    """Conversations, metrics, and who carries which call."""
    return [ConversationsProjection(), MetricsProjection(), OwnershipProjection()]
