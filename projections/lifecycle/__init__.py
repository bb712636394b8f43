"""The generation lifecycle: bootstrap, build and swap in, resume, activate, roll back, drop.

A projection's tables come in generations. The first one is created and activated by
:func:`bootstrap`. A rebuild prepares a new generation (:func:`prepare_generation`), which
:func:`build` folds by replay beside the active one -- that keeps serving -- and swaps in
atomically once it has caught up. A stopped build leaves its generation ``building`` at its
checkpoint: :func:`build` of the same number resumes it, in this process or another (a running
supervisor builds every generation left building). :func:`activate` swaps a generation in by
hand, :func:`rollback` swaps an older one back, :func:`drop` frees a generation's tables. The
dead-letter entry points re-apply what a fold set aside once its cause is fixed.

The store (:class:`~projections.store.ProjectionStore`) holds the primitives (ensure, activate,
drop, generations); this package holds the rules around them. Every error is a
:class:`~projections.errors.ProjectionError`; the CLI only presents them.
"""

from __future__ import annotations

from projections.infra import GenerationState
from projections.lifecycle.building import (
    BUILD_POLL,
    BuildEnd,
    BuildOutcome,
    BuildPaused,
    BuildProgress,
    build,
)
from projections.lifecycle.dead_letters import NotParked, release_community, retry_dead_letters
from projections.lifecycle.generations import (
    AlreadyBuilding,
    NoActiveGeneration,
    StartOutOfRange,
    activate,
    bootstrap,
    drop,
    generation_row,
    prepare_generation,
    rollback,
    start_generation,
)
from projections.lifecycle.positions import live_worker, serving_positions
from projections.stream import STREAM_PATIENCE, seq_at_time, stream_head, stream_info

__all__ = [
    "BUILD_POLL",
    "STREAM_PATIENCE",
    "AlreadyBuilding",
    "BuildEnd",
    "BuildOutcome",
    "BuildPaused",
    "BuildProgress",
    "GenerationState",
    "NoActiveGeneration",
    "NotParked",
    "StartOutOfRange",
    "activate",
    "bootstrap",
    "build",
    "drop",
    "generation_row",
    "live_worker",
    "prepare_generation",
    "release_community",
    "retry_dead_letters",
    "rollback",
    "seq_at_time",
    "serving_positions",
    "start_generation",
    "stream_head",
    "stream_info",
]
