"""Prometheus metrics of projection workers (served by the worker process's endpoint)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "agora_projection_events_total",
    "Stream messages handled by a projection partition (applied, duplicate or dead-lettered).",
    ["projection", "partition"],
)
DEAD_LETTERS = Counter(
    "agora_projection_dead_letters_total",
    "Messages set aside as dead letters.",
    ["projection", "partition"],
)
DUPLICATES = Counter(
    "agora_projection_duplicates_total",
    "Events ignored because their id was applied before.",
    ["projection", "partition"],
)
CHECKPOINT = Gauge(
    "agora_projection_checkpoint",
    "Last stream sequence applied.",
    ["projection", "partition"],
)
LAG = Gauge(
    "agora_projection_lag_events",
    "Events in the stream after the checkpoint, as last reported by the server.",
    ["projection", "partition"],
)
BATCH_SECONDS = Histogram(
    "agora_projection_batch_seconds",
    "Time to apply one batch (one SQL transaction).",
    ["projection", "partition"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
BATCH_EVENTS = Histogram(
    "agora_projection_batch_events",
    "Messages per batch.",
    ["projection", "partition"],
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
)
RESUBSCRIBES = Counter(
    "agora_projection_resubscribes_total",
    "Times the watchdog or a sequence gap made the worker resubscribe from its checkpoint.",
    ["projection", "partition", "reason"],
)
PAUSED = Gauge(
    "agora_projection_paused",
    "1 while the partition is paused by a fold error.",
    ["projection", "partition"],
)
PARKED_FIRST_SEQ = Gauge(
    "agora_projection_parked_first_seq",
    "Stream sequence of the poison event a parked community waits behind (present while parked).",
    ["projection", "generation", "community"],
)
HELD = Gauge(
    "agora_projection_held_events",
    "Events of a parked community held back in order until it is retried or skipped.",
    ["projection", "generation", "community"],
)
