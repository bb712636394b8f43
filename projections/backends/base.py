"""What a database must do for :class:`projections.store.ProjectionStore`, and what both share.

The store says *what* a batch does (fence on the checkpoint, record seen events, load, fold,
write, move the checkpoint); a backend says *how* each step is spelled on its database: how many
rows are inserted in one go, how keys are passed to a select, how parameters reach the driver.
SQLite and PostgreSQL each have one (:mod:`projections.backends.sqlite`,
:mod:`projections.backends.postgresql`), chosen once from the engine's dialect.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import UUID

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Insert

from projections.changes import Key, Row, TableSpec
from projections.infra import parked

Processor = Callable[[Any], Any] | None
"""A column type's bind processor for a dialect (None: the value goes to the driver as is)."""

Shape = tuple[frozenset[str], ...]
"""The columns a row change adds to, puts, takes the least and the greatest of."""


@dataclass(frozen=True, slots=True)
class SeenRows:
    """Seen-table rows by column: the i-th community, event id, sequence and digest are a row.

    Columns, not row tuples: a catch-up batch records thousands of events, and PostgreSQL takes
    the columns as arrays as they are.
    """

    communities: list[str]
    ids: list[UUID]
    seqs: list[int]
    digests: list[int]

    def __len__(self) -> int:
        return len(self.seqs)

    def rows(self) -> Iterator[tuple[str, UUID, int, int]]:
        """The rows as (community, event id, sequence, digest)."""
        return zip(self.communities, self.ids, self.seqs, self.digests, strict=True)


KEY_CHUNK = 500
"""At most this many keys per select by key (ten times as many through an array or JSON)."""


class Backend(abc.ABC):
    """One database's way of running the store's statements; holds their compiled forms.

    A backend belongs to one store (its statement cache is keyed by table names, which are the
    store's projection's).
    """

    name: ClassVar[str]
    """The SQLAlchemy dialect name this backend serves."""

    def __init__(self, copy_min_rows: int = 200) -> None:
        self.copy_min_rows = copy_min_rows
        """Where bulk loading pays, batches of at least this many rows are written with it."""
        self._statements: dict[tuple[Any, ...], Any] = {}

    # -- connections ------------------------------------------------------------------------

    @classmethod
    @abc.abstractmethod
    def create_engine(cls, url: sa.URL, **kwargs: Any) -> Engine:
        """An engine for ``url`` with this database's settings (``kwargs`` go to SQLAlchemy)."""

    @staticmethod
    @abc.abstractmethod
    def server_version(conn: Connection) -> str:
        """The database's name and version, as the server reports it."""

    # -- the seen table ---------------------------------------------------------------------

    @abc.abstractmethod
    def insert_seen(self, conn: Connection, seen: sa.Table, rows: SeenRows) -> int:
        """Insert ``rows`` into the seen table, skipping keys it holds; the number inserted."""

    # -- reads ------------------------------------------------------------------------------

    @abc.abstractmethod
    def select_keys(
        self, conn: Connection, table: sa.Table, columns: tuple[str, ...], keys: list[Key]
    ) -> Iterator[Row]:
        """The rows of ``table`` whose ``columns`` (its key, or a prefix of it) match ``keys``."""

    def parked_rows(
        self, conn: Connection, projection: str, generation: int, partition: int
    ) -> list[tuple[str, int, int]]:
        """(community, first_seq, held) of each parked community of a partition."""
        compiled = self._statements.get(("parked",))
        if compiled is None:
            # Compiled once and run through the driver: building the statement each batch cost
            # more than running it.
            compiled = self._statements[("parked",)] = (
                sa.select(parked.c.community, parked.c.first_seq, parked.c.held)
                .where(
                    (parked.c.projection == sa.bindparam("p"))
                    & (parked.c.generation == sa.bindparam("g"))
                    & (parked.c.partition == sa.bindparam("n"))
                )
                .compile(dialect=conn.dialect)
            )
        params = {"p": projection, "g": generation, "n": partition}
        rows = conn.exec_driver_sql(compiled.string, self.driver_params(compiled, params)).all()
        return [(str(c), int(first), int(n)) for c, first, n in rows]

    @abc.abstractmethod
    def driver_params(self, compiled: sa.sql.compiler.Compiled, params: dict[str, Any]) -> Any:
        """``params`` by bind name as the driver takes them for ``compiled``'s text."""

    # -- writes -----------------------------------------------------------------------------

    @abc.abstractmethod
    def upsert(
        self,
        conn: Connection,
        table: sa.Table,
        spec: TableSpec,
        shape: Shape,
        params: list[dict[str, Any]],
    ) -> None:
        """Insert or merge rows of one ``shape`` (see :func:`updates` for how they merge)."""

    @abc.abstractmethod
    def insert(self, conn: Connection, table: sa.Table, spec: TableSpec, rows: list[Row]) -> None:
        """Append ``rows`` (new keys only); columns a row leaves out get their defaults."""

    @abc.abstractmethod
    def dialect_insert(self, table: sa.Table) -> Insert:
        """An INSERT of ``table`` with this database's ``on_conflict_do_update``."""

    def upsert_statement(self, table: sa.Table, spec: TableSpec, shape: Shape) -> Any:
        """The upsert of rows of ``shape`` into ``table``, built once."""
        cache_key = (table.name, shape)
        statement = self._statements.get(cache_key)
        if statement is None:
            insert: Any = self.dialect_insert(table)
            statement = insert.on_conflict_do_update(
                index_elements=list(spec.key), set_=updates(table, spec, shape, insert.excluded)
            )
            self._statements[cache_key] = statement
        return statement

    # -- layout -----------------------------------------------------------------------------

    @abc.abstractmethod
    def upgrade_infra(self, conn: Connection) -> None:
        """Bring the engine's own tables, as an older Agora made them, up to date in place."""

    @staticmethod
    @abc.abstractmethod
    def utc_day(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The UTC calendar day of a stored point in time (a :class:`UtcDateTime` column)."""


def shape_columns(spec: TableSpec, shape: Shape) -> tuple[str, ...]:
    """The columns an upsert of ``shape`` writes: the key, then the touched columns, sorted."""
    return (*spec.key, *sorted(frozenset[str]().union(*shape)))


def insert_columns(spec: TableSpec, rows: Sequence[Row]) -> tuple[str, ...]:
    """The columns appended ``rows`` write: those some row has, and those with a default."""
    return tuple(c for c in spec.columns if c in spec.defaults or any(c in r for r in rows))


def bind_processors(
    table: sa.Table, dialect: sa.Dialect, columns: Sequence[str]
) -> list[Processor]:
    """How SQLAlchemy converts each of ``columns``' values for the driver (None: as is)."""
    return [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]


def updates(table: sa.Table, spec: TableSpec, shape: Shape, excluded: Any) -> dict[str, Any]:
    """The SET clause of an upsert: how each touched column combines stored and new values."""
    add, put, least, greatest = shape
    result: dict[str, Any] = {}
    for column in sorted(add):
        # The inserted value is start + delta (see the store's _params); an update adds the delta.
        start = spec.start(column)
        if start:
            result[column] = sa.func.coalesce(table.c[column], start) + (excluded[column] - start)
        else:
            result[column] = sa.func.coalesce(table.c[column], 0) + excluded[column]
    for column in sorted(put):
        result[column] = excluded[column]
    for column in sorted(least):
        result[column] = sa.case(
            (
                sa.or_(table.c[column].is_(None), excluded[column] < table.c[column]),
                excluded[column],
            ),
            else_=table.c[column],
        )
    for column in sorted(greatest):
        result[column] = sa.case(
            (
                sa.or_(table.c[column].is_(None), excluded[column] > table.c[column]),
                excluded[column],
            ),
            else_=table.c[column],
        )
    return result
