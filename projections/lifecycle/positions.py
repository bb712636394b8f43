"""Where generations are, read from the status rows: serving positions, pauses, live workers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from projections.infra import GenerationState
from projections.runner import WorkerState
from projections.status import LIVE_STATES, STALE_AFTER, PartitionStatus


def serving_positions(
    rows: Sequence[PartitionStatus], names: Sequence[str]
) -> tuple[dict[str, int | None], set[str]]:
    """Each projection's position (its active generation's slowest partition; None: not started)
    and the projections stuck on a paused partition of a live generation."""
    points: dict[str, int | None] = dict.fromkeys(names)
    paused: set[str] = set()
    for row in rows:
        if row.projection not in points:
            continue
        if row.worker_state == WorkerState.PAUSED and row.generation_state in LIVE_STATES:
            paused.add(row.projection)
        if row.generation_state == GenerationState.ACTIVE:
            have = points[row.projection]
            points[row.projection] = row.checkpoint if have is None else min(have, row.checkpoint)
    return points, paused


def live_worker(
    rows: Sequence[PartitionStatus],
    generation: int | None,
    *,
    stale_after: float = STALE_AFTER,
    now: datetime | None = None,
) -> str | None:
    """The id of a worker that looks alive on ``generation``: a running status row updated
    within ``stale_after`` seconds. Such a worker's supervisor also builds and swaps in every
    generation left building."""
    now = now or datetime.now(UTC)
    for row in rows:
        if (
            row.generation == generation
            and row.worker_state in (WorkerState.RUNNING, WorkerState.CATCHING_UP)
            and row.updated_at is not None
            and (now - row.updated_at).total_seconds() < stale_after
        ):
            return str(row.worker)
    return None
