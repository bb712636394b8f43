from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from projections.database import check_connection, create_engine, normalise_url
from projections.errors import DatabaseError


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"


def test_unsupported_database_is_refused() -> None:
    with pytest.raises(DatabaseError, match="unsupported database"):
        normalise_url("mysql://root@127.0.0.1/test")


def _round_trip(engine: sa.Engine) -> list[tuple[str, int]]:
    meta = sa.MetaData()
    table = sa.Table(
        "t", meta, sa.Column("k", sa.String(10), primary_key=True), sa.Column("n", sa.Integer)
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"k": "a", "n": 1}, {"k": "b", "n": 2}])
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(table).order_by(table.c.k))]


def test_sqlite_engine_is_wal_and_round_trips(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'agora.db'}")
    assert check_connection(engine).startswith("SQLite ")
    with engine.connect() as conn:
        assert conn.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
    assert _round_trip(engine) == [("a", 1), ("b", 2)]


@pytest.mark.postgres
def test_postgres_engine_round_trips(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    assert "PostgreSQL" in check_connection(engine)
    assert _round_trip(engine) == [("a", 1), ("b", 2)]
    engine.dispose()


def test_unreachable_database_raises_translated_error() -> None:
    engine = create_engine("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="cannot connect"):
        check_connection(engine)
