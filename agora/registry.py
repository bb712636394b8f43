"""The projections Agora ships, by name: what `agora worker`, `status` and `rebuild` run.

A projection is registered by a factory returning a fresh instance (a worker process may hold
several stores of the same projection). Names are the projections' ``name`` attributes, which are
also the prefixes of their tables.
"""

from __future__ import annotations

from collections.abc import Callable

from agora.errors import AgoraError
from projections.api import Projection
from projections.counts import EventCounts
from projections.engagement import Engagement
from projections.moderation import ModerationQueue
from projections.reputation import Reputation, StackExchangeReputation

PROJECTIONS: dict[str, Callable[[], Projection]] = {
    EventCounts.name: EventCounts,
    Reputation.name: Reputation,
    StackExchangeReputation.name: StackExchangeReputation,
    ModerationQueue.name: ModerationQueue,
    Engagement.name: Engagement,
}
"""Every projection Agora ships, by name, in the order `agora worker` starts them."""


class UnknownProjection(AgoraError):
    """A projection name that Agora does not ship; the message lists the known names."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown projection {name!r} (known: {', '.join(known_names())})")
        self.name = name


def known_names() -> list[str]:
    """The registered projection names, in registration order."""
    return list(PROJECTIONS)


def get_projection(name: str) -> Projection:
    """A fresh instance of the projection called ``name``; UnknownProjection if there is none."""
    factory = PROJECTIONS.get(name)
    if factory is None:
        raise UnknownProjection(name)
    return factory()


def get_projections(names: list[str] | None = None) -> list[Projection]:
    """Fresh instances of ``names`` (all registered projections when empty), without repeats."""
    chosen = list(dict.fromkeys(names)) if names else known_names()
    return [get_projection(name) for name in chosen]
