"""PostgreSQL through psycopg 3: arrays for keys, COPY for large batches."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.dml import Insert

from projections.backends import pgcopy
from projections.backends.base import (
    KEY_CHUNK,
    Backend,
    SeenRows,
    Shape,
    bind_processors,
    insert_columns,
    shape_columns,
    updates,
)
from projections.changes import Key, Row, TableSpec
from projections.infra import dead_letters

_SEEN_COLUMNS = ("community", "event_id", "seq", "digest")


class PostgreSQLBackend(Backend):
    """The store's statements on PostgreSQL; batches of ``copy_min_rows`` rows or more use COPY."""

    name = "postgresql"

    @classmethod
    def create_engine(cls, url: sa.URL, **kwargs: Any) -> Engine:
        """Connections checked before use: a restarted server costs no failed batch."""
        return sa.create_engine(url, pool_pre_ping=True, **kwargs)

    @staticmethod
    def server_version(conn: Connection) -> str:
        """The server's ``version()`` string."""
        return str(conn.execute(sa.text("select version()")).scalar())

    def insert_seen(self, conn: Connection, seen: sa.Table, rows: SeenRows) -> int:
        """A catch-up batch with COPY, a live one with one statement over four arrays."""
        table = conn.dialect.identifier_preparer.quote(seen.name)
        if len(rows) >= self.copy_min_rows:
            return self._copy_seen(conn, seen.name, table, rows)
        inserted: int = conn.exec_driver_sql(
            f"INSERT INTO {table} (community, event_id, seq, digest) "
            "SELECT * FROM unnest(%(communities)s::text[], %(ids)s::uuid[], "
            "%(seqs)s::bigint[], %(digests)s::bigint[]) "
            "ON CONFLICT (community, event_id) DO NOTHING",
            {
                "communities": rows.communities,
                "ids": rows.ids,
                "seqs": rows.seqs,
                "digests": rows.digests,
            },
        ).rowcount
        return inserted

    def _copy_seen(self, conn: Connection, name: str, table: str, rows: SeenRows) -> int:
        """Record a catch-up batch with COPY; the number of rows inserted.

        Straight into the seen table first, in a savepoint: a copy of an earlier event (rare)
        violates the key, and then the batch goes through a staging table that skips the keys
        present. Straight in costs 2.6 us a row, through staging 5.9 (5,000-row batches).
        """
        try:
            with conn.begin_nested():
                pgcopy.copy_rows(conn, name, _SEEN_COLUMNS, rows.rows())
            return len(rows)
        except sa.exc.IntegrityError:
            pass
        staged = pgcopy.stage(
            conn,
            "agora_stage_seen",
            [("community", "text"), ("event_id", "uuid"), ("seq", "bigint"), ("digest", "bigint")],
        )
        pgcopy.copy_rows(conn, staged, _SEEN_COLUMNS, rows.rows())
        inserted: int = conn.exec_driver_sql(
            f"INSERT INTO {table} (community, event_id, seq, digest) "
            f"SELECT community, event_id, seq, digest FROM {staged} "
            "ON CONFLICT (community, event_id) DO NOTHING"
        ).rowcount
        return inserted

    def select_keys(
        self, conn: Connection, table: sa.Table, columns: tuple[str, ...], keys: list[Key]
    ) -> Iterator[Row]:
        """One array per key column: the statement text stays the same whatever the number of
        keys, so the server and psycopg parse and plan it once."""
        if not keys:
            return
        statement = self._statements.get((table.name, "select", columns))
        if statement is None:
            key_cols = [table.c[k] for k in columns]
            arrays = [
                sa.func.unnest(sa.bindparam(f"k{i}", type_=postgresql.ARRAY(c.type)))
                for i, c in enumerate(key_cols)
            ]
            statement = sa.select(table).where(sa.tuple_(*key_cols).in_(sa.select(*arrays)))
            self._statements[(table.name, "select", columns)] = statement
        for start in range(0, len(keys), KEY_CHUNK * 10):
            chunk = keys[start : start + KEY_CHUNK * 10]
            params = {f"k{i}": [k[i] for k in chunk] for i in range(len(columns))}
            for row in conn.execute(statement, params).mappings():
                yield dict(row)

    def driver_params(self, compiled: sa.sql.compiler.Compiled, params: dict[str, Any]) -> Any:
        """By name (``%(name)s``), as compiled."""
        return params

    def upsert(
        self,
        conn: Connection,
        table: sa.Table,
        spec: TableSpec,
        shape: Shape,
        params: list[dict[str, Any]],
    ) -> None:
        """A large batch through a staging table (COPY), a small one as one executemany."""
        if not params:
            return
        if len(params) >= self.copy_min_rows:
            self._copy_upsert(conn, table, spec, shape, params)
        else:
            conn.execute(self.upsert_statement(table, spec, shape), params)

    def insert(self, conn: Connection, table: sa.Table, spec: TableSpec, rows: list[Row]) -> None:
        """A large batch with COPY, a small one as one executemany."""
        if not rows:
            return
        if len(rows) >= self.copy_min_rows:
            self._copy_inserts(conn, table, spec, rows)
        else:
            conn.execute(table.insert(), rows)

    def dialect_insert(self, table: sa.Table) -> Insert:
        """PostgreSQL's INSERT (with ``on_conflict_do_update``)."""
        return postgresql.insert(table)

    def _copy_inserts(
        self, conn: Connection, table: sa.Table, spec: TableSpec, rows: list[Row]
    ) -> None:
        """COPY appended rows into ``table``; columns a row leaves out get their defaults."""
        columns = insert_columns(spec, rows)
        defaults = spec.defaults
        pgcopy.copy_rows(
            conn,
            table.name,
            columns,
            ([row[c] if c in row else defaults.get(c) for c in columns] for row in rows),
            bind_processors(table, conn.dialect, columns),
        )

    def _copy_upsert(
        self,
        conn: Connection,
        table: sa.Table,
        spec: TableSpec,
        shape: Shape,
        params: list[dict[str, Any]],
    ) -> None:
        """Upsert many rows of one shape: COPY them into a staging table, then one statement."""
        columns = shape_columns(spec, shape)
        staged = pgcopy.stage(
            conn,
            _stage_name(table.name),
            [(c.name, c.type.compile(dialect=conn.dialect)) for c in table.columns],
        )
        pgcopy.copy_rows(
            conn,
            staged,
            columns,
            ([p[c] for c in columns] for p in params),
            bind_processors(table, conn.dialect, columns),
        )
        cache_key = (table.name, shape, "staged")
        statement = self._statements.get(cache_key)
        if statement is None:
            source = sa.table(staged, *(sa.column(c) for c in columns))
            insert = postgresql.insert(table).from_select(
                columns, sa.select(*(source.c[c] for c in columns))
            )
            statement = insert.on_conflict_do_update(
                index_elements=list(spec.key), set_=updates(table, spec, shape, insert.excluded)
            )
            self._statements[cache_key] = statement
        conn.execute(statement)

    def upgrade_infra(self, conn: Connection) -> None:
        """Widen the dead letters' ``kind`` column of an older Agora (16 characters) to 32."""
        inspector = sa.inspect(conn)
        if not inspector.has_table(dead_letters.name):
            return
        kind = next(c for c in inspector.get_columns(dead_letters.name) if c["name"] == "kind")
        if getattr(kind["type"], "length", None) == 16:
            conn.exec_driver_sql(
                f"ALTER TABLE {dead_letters.name} ALTER COLUMN kind TYPE varchar(32)"
            )

    @staticmethod
    def utc_day(moment: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The day of the moment's wall time in UTC (``timestamptz`` has no zone of its own)."""
        return sa.cast(sa.func.timezone("UTC", moment), sa.Date)


def _stage_name(table: str) -> str:
    name = f"agora_stage_{table}"
    # PostgreSQL truncates identifiers at 63 bytes; keep long names distinct.
    return name if len(name) <= 63 else f"agora_stage_{zlib.crc32(table.encode()):08x}"
