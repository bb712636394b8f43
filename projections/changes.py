"""Row changes: what a projection's fold produces, merged per row before reaching the database.

A fold never writes SQL. It reads the rows it asked for and records changes on a
:class:`Changes` object: additive counters (``add``), overwritten values (``put``), minima and
maxima (``least``/``greatest``), appended rows (``insert``) and deletions (``delete``). Changes to
the same row within a batch collapse into one -- a thousand ``+1`` become one ``+1000`` -- and
:meth:`Changes.get` shows a row as the fold's own earlier changes left it (read your writes), so
folding a batch at once equals folding its events one by one.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

Key = tuple[Any, ...]
"""A row's primary key values, in the table's key-column order."""

Row = dict[str, Any]
"""A row as column name to value."""


@dataclass(slots=True)
class RowChange:
    """Everything a batch does to one row: an optional delete, then an upsert."""

    key: Key
    deleted: bool = False
    add: dict[str, int | float] = field(default_factory=dict)
    put: dict[str, Any] = field(default_factory=dict)
    least: dict[str, Any] = field(default_factory=dict)
    greatest: dict[str, Any] = field(default_factory=dict)

    @property
    def upserts(self) -> bool:
        """True when, after any delete, the row is written."""
        return bool(self.add or self.put or self.least or self.greatest)

    def shape(self) -> tuple[frozenset[str], ...]:
        """The columns touched by each kind of change; rows of one shape share a statement."""
        return (
            frozenset(self.add),
            frozenset(self.put),
            frozenset(self.least),
            frozenset(self.greatest),
        )


class TableSpec:
    """What the engine and the fold need to know of one table: its name, key and columns."""

    __slots__ = ("columns", "defaults", "key", "name")

    def __init__(
        self,
        name: str,
        key: tuple[str, ...],
        columns: tuple[str, ...],
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.key = key
        self.columns = columns
        self.defaults = dict(defaults or {})

    def blank(self, key: Key) -> Row:
        """A row that does not exist yet: its key, and each column's default (or None)."""
        row: Row = {c: self.defaults.get(c) for c in self.columns}
        row.update(zip(self.key, key, strict=True))
        return row

    def start(self, column: str) -> Any:
        """Where a counter starts when its row or value is missing: the default, else 0."""
        value = self.defaults.get(column)
        return 0 if value is None else value


class Changes:
    """The changes one batch makes, with the rows the fold asked to read.

    ``loaded`` maps table name to ``{key: row}`` for the keys the projection requested; a key that
    was requested but not found maps to ``None``. ``whole`` maps table name to the key prefixes
    whose rows were all loaded: a row under one that is not in ``loaded`` does not exist, and
    :meth:`keys_under` lists the rows under it.
    """

    def __init__(
        self,
        specs: Mapping[str, TableSpec],
        loaded: Mapping[str, Mapping[Key, Row | None]] | None = None,
        whole: Mapping[str, set[Key]] | None = None,
    ) -> None:
        self.specs = specs
        self._loaded = loaded or {}
        # For tables read by prefix: prefix -> keys under it, loaded or touched by this batch.
        self._children: dict[str, dict[Key, set[Key]]] = {
            t: {p: set() for p in ps} for t, ps in (whole or {}).items() if ps
        }
        self._sizes = {t: sorted({len(p) for p in ps}) for t, ps in self._children.items()}
        for table, children in self._children.items():
            for key in self._loaded.get(table, {}):
                self._index(table, key, children)
        self._rows: dict[str, dict[Key, RowChange]] = {name: {} for name in specs}
        self._inserts: dict[str, list[Row]] = {name: [] for name in specs}
        # Rows as ``get`` last showed them, kept up to date by every change: a fold reads the
        # same row many times, and rebuilding it from the loaded row and the merged change each
        # time was most of a heavy fold's cost. None: the row does not exist.
        self._views: dict[str, dict[Key, Row | None]] = {name: {} for name in specs}

    def _change(self, table: str, key: Key) -> RowChange:
        rows = self._rows[table]
        change = rows.get(key)
        if change is None:
            change = rows[key] = RowChange(key)
            children = self._children.get(table)
            if children is not None:
                self._index(table, key, children)
        return change

    def _index(self, table: str, key: Key, children: dict[Key, set[Key]]) -> None:
        for size in self._sizes[table]:
            under = children.get(key[:size])
            if under is not None:
                under.add(key)

    def add(self, table: str, key: Key, **deltas: int | float) -> None:
        """Add ``deltas`` to counter columns (a missing row or value starts from the default).

        After a ``put`` of the same column in this batch, the delta is added to the value put.
        """
        change = self._change(table, key)
        for column, delta in deltas.items():
            if column in change.put:
                value = change.put[column]
                start = self.specs[table].start(column) if value is None else value
                change.put[column] = start + delta
                continue
            _refuse_mix(table, column, change, "add", ("least", "greatest"))
            change.add[column] = change.add.get(column, 0) + delta
        view = self._view(table, key)
        if view is not None:
            spec = self.specs[table]
            for column, delta in deltas.items():
                value = view.get(column)
                view[column] = (spec.start(column) if value is None else value) + delta

    def put(self, table: str, key: Key, **values: Any) -> None:
        """Set columns to ``values``; it overrides this batch's earlier changes of the column."""
        change = self._change(table, key)
        mixed = bool(change.add or change.least or change.greatest)
        for column, value in values.items():
            change.put[column] = value
            if mixed:
                change.add.pop(column, None)
                change.least.pop(column, None)
                change.greatest.pop(column, None)
        view = self._view(table, key)
        if view is not None:
            view.update(values)

    def least(self, table: str, key: Key, **values: Any) -> None:
        """Keep the smaller of the stored and the given value (e.g. first seen)."""
        change = self._change(table, key)
        for column, value in values.items():
            if value is None:
                continue
            if column in change.put:
                old = change.put[column]
                change.put[column] = value if old is None or value < old else old
                continue
            _refuse_mix(table, column, change, "least", ("add", "greatest"))
            old = change.least.get(column)
            change.least[column] = value if old is None or value < old else old
        view = self._view(table, key)
        if view is not None:
            for column, value in values.items():
                old = view.get(column)
                if value is not None and (old is None or value < old):
                    view[column] = value

    def greatest(self, table: str, key: Key, **values: Any) -> None:
        """Keep the larger of the stored and the given value (e.g. last seen)."""
        change = self._change(table, key)
        for column, value in values.items():
            if value is None:
                continue
            if column in change.put:
                old = change.put[column]
                change.put[column] = value if old is None or value > old else old
                continue
            _refuse_mix(table, column, change, "greatest", ("add", "least"))
            old = change.greatest.get(column)
            change.greatest[column] = value if old is None or value > old else old
        view = self._view(table, key)
        if view is not None:
            for column, value in values.items():
                old = view.get(column)
                if value is not None and (old is None or value > old):
                    view[column] = value

    def delete(self, table: str, key: Key) -> None:
        """Delete the row; later changes in the same batch start from a blank row."""
        self._rows[table][key] = RowChange(key, deleted=True)
        self._views[table][key] = None
        children = self._children.get(table)
        if children is not None:
            self._index(table, key, children)

    def insert(self, table: str, row: Row) -> None:
        """Append a row to an insert-only table (a ledger, a log)."""
        self._inserts[table].append(row)

    def get(self, table: str, key: Key) -> Row | None:
        """The row as the database holds it plus this batch's changes; None if it does not exist.

        Only rows whose keys the projection requested for this batch (or that this batch deleted)
        can be read; asking for another is a bug in the projection and raises KeyError. The row
        returned is a copy: changing it changes nothing.
        """
        view = self.peek(table, key)
        return None if view is None else dict(view)

    def peek(self, table: str, key: Key) -> Mapping[str, Any] | None:
        """Like :meth:`get`, without the copy: the row itself, which later changes update.

        For a fold that reads many columns of a row many times per event; read what you need
        before changing the row, and never change the mapping itself.
        """
        views = self._views[table]
        view = views.get(key, _UNSEEN)
        if view is _UNSEEN:
            view = views[key] = self._build(table, key)
        return cast(Row | None, view)

    def keys_under(self, table: str, prefix: Key) -> list[Key]:
        """The keys of the rows under ``prefix`` as this batch leaves them so far, sorted.

        ``prefix`` must have been requested whole (a key shorter than the table's key); else
        KeyError, as for :meth:`get`. Sorted, so a fold that walks them is deterministic.
        """
        children = self._children.get(table, {}).get(prefix)
        if children is None:
            raise KeyError(f"{table}{prefix!r} was not requested whole for this batch")
        return sorted(k for k in children if self.peek(table, k) is not None)

    def _view(self, table: str, key: Key) -> Row | None:
        """The view of a row just changed, to update in place; None when there is none to update.

        A view of a row that did not exist is dropped: the next ``get`` builds it from a blank row.
        """
        views = self._views[table]
        view = views.get(key, _UNSEEN)
        if view is None:
            del views[key]
            return None
        return None if view is _UNSEEN else view

    def _build(self, table: str, key: Key) -> Row | None:
        """The row from what was loaded and the merged change (the slow path of ``get``)."""
        change = self._rows[table].get(key)
        loaded = self._loaded.get(table, {})
        if key in loaded:
            base = loaded[key]
        elif (change is not None and change.deleted) or under(key, self._children.get(table)):
            base = None
        else:
            raise KeyError(f"{table}{key!r} was not requested for this batch")
        if change is None:
            return None if base is None else dict(base)
        if change.deleted:
            base = None
        if base is None and not change.upserts:
            return None
        row = self.specs[table].blank(key) if base is None else dict(base)
        return _apply(row, change, self.specs[table])

    def row_changes(self, table: str) -> Iterator[RowChange]:
        """The merged changes to ``table``'s rows, in the order the rows were first touched."""
        return iter(self._rows[table].values())

    def inserts(self, table: str) -> list[Row]:
        """The rows appended to ``table``, in order."""
        return self._inserts[table]

    def __len__(self) -> int:
        return sum(len(r) for r in self._rows.values()) + sum(
            len(i) for i in self._inserts.values()
        )


def under(key: Key, prefixes: Container[Key] | None) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies under one (a prefix loaded whole)."""
    if not prefixes:
        return False
    return any(key[:size] in prefixes for size in range(1, len(key) + 1))


_UNSEEN: Any = object()
"""Marks a row ``get`` has not built yet."""


def _refuse_mix(
    table: str, column: str, change: RowChange, kind: str, others: tuple[str, ...]
) -> None:
    """One upsert cannot both add to and take the min/max of a column; refuse, do not guess."""
    for other in others:
        if column in getattr(change, other):
            raise ValueError(
                f"{table}{change.key!r}: cannot {kind} column {column!r} after {other} "
                "in the same batch (put the computed value instead)"
            )


def _apply(row: Row, change: RowChange, spec: TableSpec) -> Row:
    """Apply a merged change to a row in memory, as the database's upsert will."""
    for column, delta in change.add.items():
        value = row.get(column)
        row[column] = (spec.start(column) if value is None else value) + delta
    row.update(change.put)
    for column, value in change.least.items():
        old = row.get(column)
        row[column] = value if old is None or value < old else old
    for column, value in change.greatest.items():
        old = row.get(column)
        row[column] = value if old is None or value > old else old
    return row
