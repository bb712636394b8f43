"""The error root of the projection package; driver errors are translated into these."""

from __future__ import annotations


class ProjectionError(Exception):
    """Root of every error raised by the ``projections`` package."""


class DatabaseError(ProjectionError):
    """The projection database could not be reached or refused an operation."""


class SubjectMismatch(ProjectionError):
    """A message's subject is not ``agora.<its community>.<its type>``: set aside, never folded."""


class ConflictingDuplicate(ProjectionError):
    """An event id already applied in its community came again with other content: set aside."""
