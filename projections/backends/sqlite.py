"""SQLite: statements straight through the driver, keys passed as one JSON array."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Insert

from projections.backends.base import (
    KEY_CHUNK,
    Backend,
    SeenRows,
    Shape,
    bind_processors,
    insert_columns,
    shape_columns,
)
from projections.changes import Key, Row, TableSpec

_JSON = msgspec.json.Encoder()

BEGIN_OPTION = "sqlite_begin"
"""Execution option choosing how a transaction begins: IMMEDIATE (default) or DEFERRED."""


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy emits BEGIN itself (below); pysqlite's own transaction handling must be off.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # 64 MiB of page cache (default 2 MiB): a catch-up batch touches more pages than that.
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin(conn: Any) -> None:
    # Take the write lock at BEGIN: a transaction that reads the checkpoint and then writes can
    # otherwise fail to upgrade its lock when another writer got there first. Readers (see
    # projections.database.reader) begin DEFERRED: in WAL mode they then never wait for a writer.
    mode = conn.get_execution_options().get(BEGIN_OPTION, "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")


class SQLiteBackend(Backend):
    """The store's statements on SQLite (there is no bulk path: ``copy_min_rows`` is unused)."""

    name = "sqlite"

    @classmethod
    def create_engine(cls, url: sa.URL, **kwargs: Any) -> Engine:
        """WAL, ``synchronous=NORMAL``, a busy timeout, and writers that begin IMMEDIATE."""
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _pragmas)
        sa.event.listen(engine, "begin", _begin)
        return engine

    @staticmethod
    def server_version(conn: Connection) -> str:
        """``SQLite`` and the library's version."""
        return "SQLite " + str(conn.execute(sa.text("select sqlite_version()")).scalar())

    def insert_seen(self, conn: Connection, seen: sa.Table, rows: SeenRows) -> int:
        """One ``INSERT OR IGNORE`` of every row; the event id as its 16 bytes."""
        table = conn.dialect.identifier_preparer.quote(seen.name)
        inserted: int = conn.exec_driver_sql(
            f"INSERT OR IGNORE INTO {table} (community, event_id, seq, digest) VALUES (?, ?, ?, ?)",
            [(c, i.bytes, s, h) for c, i, s, h in rows.rows()],
        ).rowcount
        return inserted

    def select_keys(
        self, conn: Connection, table: sa.Table, columns: tuple[str, ...], keys: list[Key]
    ) -> Iterator[Row]:
        """The keys as one JSON array of arrays (values as SQLAlchemy binds them), read back with
        ``json_each``: one statement text for any number of keys."""
        if not keys:
            return
        statement = self._statements.get((table.name, "select", columns))
        if statement is None:
            key_cols = [table.c[k] for k in columns]
            each = sa.func.json_each(sa.bindparam("keys", type_=sa.String)).table_valued("value")
            fields = [sa.func.json_extract(each.c.value, f"$[{i}]") for i in range(len(key_cols))]
            statement = sa.select(table).where(
                sa.tuple_(*key_cols).in_(sa.select(*fields).select_from(each))
            )
            self._statements[(table.name, "select", columns)] = statement
        binds = bind_processors(table, conn.dialect, columns)
        for start in range(0, len(keys), KEY_CHUNK * 10):
            chunk = keys[start : start + KEY_CHUNK * 10]
            encoded = _JSON.encode(
                [[v if f is None else f(v) for v, f in zip(k, binds, strict=True)] for k in chunk]
            )
            for row in conn.execute(statement, {"keys": encoded.decode()}).mappings():
                yield dict(row)

    def driver_params(self, compiled: sa.sql.compiler.Compiled, params: dict[str, Any]) -> Any:
        """Positional (``?``), in the order the compiled text names them."""
        names = compiled.positiontup  # type: ignore[attr-defined]
        return tuple(params[n] for n in names)

    def upsert(
        self,
        conn: Connection,
        table: sa.Table,
        spec: TableSpec,
        shape: Shape,
        params: list[dict[str, Any]],
    ) -> None:
        """``INSERT ... ON CONFLICT DO UPDATE`` of every row, through the driver."""
        statement = self.upsert_statement(table, spec, shape)
        columns = shape_columns(spec, shape)
        self._execute_many(conn, (table.name, shape), statement, table, spec, columns, params)

    def insert(self, conn: Connection, table: sa.Table, spec: TableSpec, rows: list[Row]) -> None:
        """One ``INSERT`` of every row, through the driver."""
        if not rows:
            return
        columns = insert_columns(spec, rows)
        self._execute_many(conn, (table.name, columns), table.insert(), table, spec, columns, rows)

    def dialect_insert(self, table: sa.Table) -> Insert:
        """SQLite's INSERT (with ``on_conflict_do_update``)."""
        return sqlite.insert(table)

    def _execute_many(
        self,
        conn: Connection,
        key: tuple[Any, ...],
        statement: Any,
        table: sa.Table,
        spec: TableSpec,
        columns: Sequence[str],
        rows: list[Row],
    ) -> None:
        """Execute an INSERT (or upsert) of ``rows``, straight through the driver.

        SQLAlchemy's executemany builds each row's parameters in Python, which cost more than
        SQLite's own work on the row; here the statement is compiled once per table and column
        set, and each row becomes a tuple, its values converted by the columns' bind processors.
        Columns a row leaves out get their scalar default, as SQLAlchemy would give them.
        """
        prepared = self._statements.get((*key, "raw"))
        if prepared is None:
            full = (*columns, *(c for c in spec.defaults if c not in columns))
            compiled = statement.compile(dialect=conn.dialect, column_keys=list(full))
            processors = dict(zip(full, bind_processors(table, conn.dialect, full), strict=True))
            names = tuple(compiled.positiontup)
            # A row's missing columns come from here: literal binds of the statement (a
            # counter's start) and the columns' scalar defaults.
            base = {n: compiled.params[n] for n in names if n not in processors}
            base.update({c: spec.defaults[c] for c in names if c in spec.defaults})
            convert = tuple((n, p) for n in names if (p := processors.get(n)) is not None)
            prepared = (compiled.string, base, operator.itemgetter(*names), convert, len(names))
            self._statements[(*key, "raw")] = prepared
        sql, base, getter, convert, width = prepared
        values: list[Any] = []
        for row in rows:
            merged = base | row
            for name, processor in convert:
                value = merged[name]
                if value is not None:
                    merged[name] = processor(value)
            values.append(getter(merged))
        if width == 1:  # itemgetter of one name returns the value, not a tuple
            values = [(v,) for v in values]
        conn.exec_driver_sql(sql, values)

    def upgrade_infra(self, conn: Connection) -> None:
        """Nothing to do: SQLite does not enforce a ``varchar``'s length."""

    @staticmethod
    def utc_day(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """SQLite keeps the UTC wall time as text: its ``date()`` is the UTC day."""
        return sa.func.date(moment, type_=sa.Date)
