"""PostgreSQL bulk writes with COPY: straight into a table, or into a temporary staging table.

A catch-up batch appends thousands of rows. Sent as parameters, each value is adapted in Python
and parsed by the server as part of a statement; COPY streams rows in the format the server
loads fastest, and psycopg formats them in C. Rows that may already exist (the seen table) go
through a staging table first, since COPY itself cannot skip conflicts.

Values are bind-processed as SQLAlchemy would (a JSON column's dict becomes its JSON text), and
driver errors become SQLAlchemy's, so callers handle them as any other statement's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

Processor = Callable[[Any], Any] | None


def copy_rows(
    conn: Connection,
    table: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    converters: Sequence[Processor] | None = None,
) -> None:
    """COPY ``rows`` (values in ``columns`` order) into ``table``, in the current transaction."""
    import psycopg  # only on PostgreSQL: importing it costs every SQLite command 0.2 s of CPU

    quote = conn.dialect.identifier_preparer.quote
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in columns)}) FROM STDIN"
    active = [(i, f) for i, f in enumerate(converters or ()) if f is not None]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(sql) as copy:
            if active:
                for row in rows:
                    values = list(row)
                    for i, convert in active:
                        values[i] = convert(values[i])
                    copy.write_row(values)
            else:
                for row in rows:
                    copy.write_row(row)
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(sql, None, error, psycopg.Error) from error
    finally:
        cursor.close()


def stage(conn: Connection, name: str, columns: Sequence[tuple[str, str]]) -> str:
    """An empty temporary staging table called ``name``, created once per session; its name.

    ``columns`` are (name, SQL type) pairs. The table lives as long as the database session; it
    is emptied here (a transaction may stage several sets of rows) and at each commit, and a
    rolled-back batch leaves nothing in it.
    """
    quote = conn.dialect.identifier_preparer.quote
    spec = ", ".join(f"{quote(c)} {t}" for c, t in columns)
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(name)} ({spec}) ON COMMIT DELETE ROWS; "
        f"TRUNCATE {quote(name)}"
    )
    return name
