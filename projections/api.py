"""The contract of a projection: a name, a version, its tables and a pure fold.

A projection never touches the database or the clock. The engine hands it a batch of decoded
events with their stream sequences; it names the rows it needs to read (:meth:`Projection.reads`,
then, from those rows, :meth:`Projection.reads_after`, round after round), and folds the batch into
:class:`~projections.changes.Changes` (:meth:`Projection.fold`). The engine loads those rows,
applies the changes and the checkpoint in one transaction.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar, NamedTuple

import sqlalchemy as sa

from events.catalogue import Event
from projections.changes import Changes, Key, Row


class Delivered(NamedTuple):
    """An event as a fold sees it: decoded, with its stream sequence."""

    seq: int
    event: Event


class Projection(ABC):
    """Base class of every projection.

    Subclasses set ``name`` (a stable identifier, ``[a-z][a-z0-9_]*``) and ``version`` (bump it
    whenever the fold or the tables change meaning: a new version is rebuilt by replay), and
    implement :meth:`define_tables` and :meth:`fold`.
    """

    name: ClassVar[str]
    version: ClassVar[int]

    @abstractmethod
    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """Define the projection's tables on ``metadata``, keyed by logical name.

        Each table must be created with the physical name ``table_name(logical)`` and have a
        primary key; indexes should be named with ``table_name`` too, so several generations of
        the same projection can live side by side during a rebuild.
        """

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        """The rows (by table and key) the fold will read for this batch. None by default.

        A key with fewer values than the table's key is a prefix: every row under it is loaded
        (see :meth:`~projections.changes.Changes.keys_under`).
        """
        return {}

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        """More rows to read, named by rows loaded already; none by default.

        ``loaded`` holds the rows asked for so far, as stored before this batch (None for a key
        without a row). Use it for keys a row holds rather than an event: the author stored on a
        post's row, the voters stored on a reply's row. The engine loads the keys not loaded yet
        and asks again, with those rows added, until no new key is named (a chain: a post's row
        names its replies, a reply's row its voters). Rows loaded already are not loaded again;
        the fold reads every round's rows with ``Changes.get``.
        """
        return {}

    @abstractmethod
    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Fold ``batch`` (in stream order) into ``changes``; deterministic, no I/O, no clock."""


class TableNamer:
    """Maps a projection's logical table names to physical ones for one generation."""

    __slots__ = ("generation", "projection")

    def __init__(self, projection: str, generation: int) -> None:
        self.projection = projection
        self.generation = generation

    def __call__(self, logical: str) -> str:
        """Physical name of ``logical`` in this generation, e.g. ``event_counts__g2``."""
        return f"{logical}__g{self.generation}"
