"""The engine's own tables: registry of generations, checkpoints, dead letters, status.

They live beside the projection tables in the same database, so a batch's effects, its dead
letters and its checkpoint commit in one transaction.
"""

from __future__ import annotations

import enum

import sqlalchemy as sa

from projections.columns import UtcDateTime


class GenerationState(enum.StrEnum):
    """A generation's state in the registry (the stored values are these strings)."""

    BUILDING = "building"
    """Being built by replay beside the active one; swapped in once caught up."""
    ACTIVE = "active"
    """The stable names point at its tables; its workers keep it live."""
    RETIRED = "retired"
    """Swapped out; its tables are kept (not folded on) for a rollback until dropped."""
    DROPPED = "dropped"
    """Its tables are gone; the number is never reused."""


INFRA = sa.MetaData()
"""Metadata of the engine's tables (created by :func:`projections.store.ensure_infra`)."""

generations = sa.Table(
    "agora_generations",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False, comment="projection code version"),
    sa.Column(
        "state", sa.String(16), nullable=False, comment="building | active | retired | dropped"
    ),
    sa.Column("partitions", sa.Integer, nullable=False),
    sa.Column("start_seq", sa.BigInteger, nullable=False, comment="first stream sequence folded"),
)

checkpoints = sa.Table(
    "agora_checkpoints",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False, comment="last stream sequence applied"),
    sa.Column("events", sa.BigInteger, nullable=False, comment="events applied"),
    sa.Column("duplicates", sa.BigInteger, nullable=False, comment="repeated event ids ignored"),
    sa.Column("dead_letters", sa.BigInteger, nullable=False),
)

dead_letters = sa.Table(
    "agora_dead_letters",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column(
        "kind",
        sa.String(32),
        nullable=False,
        comment="invalid | subject_mismatch | conflicting_duplicate | fold",
    ),
    sa.Column("error_class", sa.String(128), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column(
        "first_seen",
        UtcDateTime(),
        nullable=False,
        comment="the message's stream timestamp (deterministic across replays)",
    ),
)

status = sa.Table(
    "agora_status",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("state", sa.String(16), nullable=False, comment="running | paused | stopped"),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("worker", sa.String(128), nullable=True),
    sa.Column(
        "rate", sa.Float, nullable=False, default=0.0, comment="events/s over the last minute"
    ),
    sa.Column("updated_at", UtcDateTime(), nullable=False, comment="wall clock"),
)

parked = sa.Table(
    "agora_parked",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("community", sa.String(128), primary_key=True),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column(
        "first_seq", sa.BigInteger, nullable=False, comment="the poison event (a dead letter)"
    ),
    sa.Column("error_class", sa.String(128), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column(
        "since",
        UtcDateTime(),
        nullable=False,
        comment="the poison message's stream timestamp",
    ),
    sa.Column("occurred_at", UtcDateTime(), nullable=False, comment="its event time"),
    sa.Column("held", sa.BigInteger, nullable=False, comment="later events held back"),
    sa.Index("agora_parked_by_partition", "projection", "generation", "partition"),
)
"""Communities whose events wait behind a poison event (see docs/operations.md)."""

held = sa.Table(
    "agora_held",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("community", sa.String(128), nullable=False),
    sa.Column("subject", sa.String(256), nullable=False),
    sa.Column("raw", sa.LargeBinary, nullable=False),
    sa.Column(
        "first_seen",
        UtcDateTime(),
        nullable=False,
        comment="the message's stream timestamp",
    ),
    sa.Index("agora_held_by_community", "projection", "generation", "community", "seq"),
)
"""Events of parked communities, held back in stream order until retried or skipped."""

leases = sa.Table(
    "agora_leases",
    INFRA,
    sa.Column("projection", sa.String(64), primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True),
    sa.Column("token", sa.BigInteger, nullable=False, comment="epoch, moved on by a take-over"),
    sa.Column("owner", sa.String(128), nullable=False, comment="the owner's session name"),
    sa.Column(
        "expires",
        sa.Float,
        nullable=False,
        comment="end of the lease, seconds since 1970 by the database's clock",
    ),
)
"""Writer leases: how long a partition's owner may go unseen (see :mod:`projections.lease`)."""
