"""The dead-letter entry points: re-apply what a fold set aside, once its cause is fixed."""

from __future__ import annotations

from collections.abc import Sequence

from projections.errors import ProjectionError
from projections.lifecycle.generations import NoActiveGeneration
from projections.store import ProjectionStore, ReleaseOutcome, RetryOutcome


class NotParked(ProjectionError):
    """A community to release is not parked in that generation."""


def retry_dead_letters(
    store: ProjectionStore, seqs: Sequence[int] | None = None
) -> tuple[int, RetryOutcome]:
    """Re-apply the active generation's dead letters (``seqs`` only, if given).

    Returns the generation and what was applied, found applied already, or still failed.
    """
    active = store.active()
    if active is None:
        raise NoActiveGeneration(f"{store.projection.name} has no active generation")
    return active, store.retry_dead_letters(active, list(seqs) if seqs else None)


def release_community(
    store: ProjectionStore,
    community: str,
    *,
    generation: int | None = None,
    skip_reason: str | None = None,
) -> tuple[int, ReleaseOutcome]:
    """Retry (or, with ``skip_reason``, skip) a parked community's poison event, then its held ones.

    ``generation`` defaults to the active one; a building one is released the same way.
    """
    name = store.projection.name
    number = generation if generation is not None else store.active()
    if number is None:
        raise NoActiveGeneration(f"{name} has no active generation")
    if community not in store.parked_communities(number):
        raise NotParked(f"{community} is not parked in {name} g{number}")
    return number, store.retry_community(number, community, skip_reason=skip_reason)
