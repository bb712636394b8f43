"""What every database backend must do alike: one suite, run on SQLite and on PostgreSQL.

The store relies on these behaviours, whichever backend spells them: upserts that add to
counters, overwrite, and keep the least and the greatest value; appends with defaults; the seen
table that inserts only new keys (with COPY or without); selects by key and by key prefix;
the parked lookup; the layout check; and datetimes that go in and come out as UTC.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa
from support.engine import DB_KINDS, database_url, make_events

from events import CODEC
from events.subjects import subject_of
from projections.backends import Backend, PostgreSQLBackend, SQLiteBackend, backend_for
from projections.backends.base import KEY_CHUNK, SeenRows, Shape
from projections.changes import TableSpec
from projections.columns import UtcDateTime
from projections.counts import EventCounts
from projections.database import create_engine
from projections.errors import ProjectionError
from projections.infra import INFRA, dead_letters, parked
from projections.store import Generation, ProjectionStore, RawMessage

COPY_SIZES = [pytest.param(1, id="copy"), pytest.param(10**9, id="statements")]
"""``copy_min_rows`` making every batch bulk-loaded (where the backend can) or none."""

T0 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


@pytest.fixture(params=DB_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    made = create_engine(database_url(request.param, tmp_path, request))
    yield made
    made.dispose()


def _table() -> tuple[sa.Table, TableSpec]:
    table = sa.Table(
        "things",
        sa.MetaData(),
        sa.Column("community", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("hits", sa.BigInteger, default=0),
        sa.Column("score", sa.Integer, default=100),
        sa.Column("label", sa.Text),
        sa.Column("first_at", UtcDateTime()),
        sa.Column("last_at", UtcDateTime()),
        sa.Column("meta", sa.JSON),
    )
    spec = TableSpec(
        table.name,
        ("community", "day", "n"),
        tuple(c.name for c in table.columns),
        {"hits": 0, "score": 100},
    )
    return table, spec


_ALL: Shape = (
    frozenset({"hits", "score"}),
    frozenset({"label", "meta"}),
    frozenset({"first_at"}),
    frozenset({"last_at"}),
)


def _rows(engine: sa.Engine, table: sa.Table) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]


def _upsert_round(n: int, at: datetime, label: str, delta: int) -> list[dict[str, Any]]:
    # Counter columns carry start + delta, as the store sends them.
    return [
        {
            "community": "c1",
            "day": date(2026, 3, 1),
            "n": i,
            "hits": delta,
            "score": 100 + delta,
            "label": f"{label}{i}",
            "meta": {"i": i, "label": label},
            "first_at": at,
            "last_at": at,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("copy_min_rows", COPY_SIZES)
def test_upsert_adds_puts_and_keeps_least_and_greatest(
    engine: sa.Engine, copy_min_rows: int
) -> None:
    table, spec = _table()
    backend = backend_for(engine, copy_min_rows)
    with engine.begin() as conn:
        table.create(conn)
        backend.upsert(conn, table, spec, _ALL, _upsert_round(300, T0, "a", 2))
    with engine.begin() as conn:
        # 300 again (200 existing, 100 new), later and earlier than the first round
        later = _upsert_round(300, T0 + timedelta(hours=1), "b", 5)
        earlier = [
            dict(r, first_at=T0 - timedelta(hours=2), last_at=T0 - timedelta(hours=2))
            for r in _upsert_round(300, T0, "c", 1)
        ]
        backend.upsert(conn, table, spec, _ALL, later)
        backend.upsert(conn, table, spec, _ALL, earlier)
        # a round touching one counter only leaves the other columns alone
        backend.upsert(conn, table, spec, _counter_only(), _counter_round(50))
    rows = _rows(engine, table)
    assert len(rows) == 300
    first = rows[0]
    assert first[:3] == ("c1", date(2026, 3, 1), 0)
    assert first[3:6] == (2 + 5 + 1 + 7, 100 + 2 + 5 + 1, "c0")
    assert first[6:8] == (T0 - timedelta(hours=2), T0 + timedelta(hours=1))
    assert first[8] == {"i": 0, "label": "c"}
    assert rows[100][3] == 2 + 5 + 1, "rows the counter-only round did not touch"


def _counter_only() -> Shape:
    return (frozenset({"hits"}), frozenset(), frozenset(), frozenset())


def _counter_round(n: int) -> list[dict[str, Any]]:
    return [{"community": "c1", "day": date(2026, 3, 1), "n": i, "hits": 7} for i in range(n)]


def test_upsert_of_a_new_row_gives_untouched_columns_their_defaults(engine: sa.Engine) -> None:
    table, spec = _table()
    backend = backend_for(engine)
    with engine.begin() as conn:
        table.create(conn)
        backend.upsert(conn, table, spec, _counter_only(), _counter_round(1))
    assert _rows(engine, table) == [("c1", date(2026, 3, 1), 0, 7, 100, None, None, None, None)]


@pytest.mark.parametrize("copy_min_rows", COPY_SIZES)
def test_insert_appends_rows_with_defaults(engine: sa.Engine, copy_min_rows: int) -> None:
    table, spec = _table()
    backend = backend_for(engine, copy_min_rows)
    rows = [
        {"community": "c2", "day": date(2026, 3, 2), "n": i, "label": f"x{i}", "first_at": T0}
        for i in range(250)
    ]
    with engine.begin() as conn:
        table.create(conn)
        backend.insert(conn, table, spec, rows)
        backend.insert(conn, table, spec, [])
    stored = _rows(engine, table)
    assert len(stored) == 250
    assert stored[7] == ("c2", date(2026, 3, 2), 7, 0, 100, "x7", T0, None, None)


@pytest.mark.parametrize("copy_min_rows", COPY_SIZES)
def test_insert_of_an_existing_key_fails_like_a_statement(
    engine: sa.Engine, copy_min_rows: int
) -> None:
    table, spec = _table()
    backend = backend_for(engine, copy_min_rows)
    row = {"community": "c", "day": date(2026, 3, 2), "n": 1}
    with engine.begin() as conn:
        table.create(conn)
        backend.insert(conn, table, spec, [row])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        backend.insert(conn, table, spec, [row])


def _seen(engine: sa.Engine) -> sa.Table:
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    return store.generation(1).seen


@pytest.mark.parametrize("copy_min_rows", COPY_SIZES)
def test_seen_rows_are_inserted_once(engine: sa.Engine, copy_min_rows: int) -> None:
    seen = _seen(engine)
    backend = backend_for(engine, copy_min_rows)
    ids = [uuid4() for _ in range(400)]
    first = [("c1", i, n, n * 7) for n, i in enumerate(ids[:300], start=1)]
    # 100 keys seen before (at other sequences, other digests), 100 new, one in another community
    again = [("c1", i, n + 1000, 0) for n, i in enumerate(ids[200:], start=1)]
    again.append(("c2", ids[0], 5000, 1))
    with engine.begin() as conn:
        assert backend.insert_seen(conn, seen, _columns(first)) == 300
    with engine.begin() as conn:
        assert backend.insert_seen(conn, seen, _columns(again)) == 101
    with engine.connect() as conn:
        stored = {
            (r.community, r.event_id): (r.seq, r.digest) for r in conn.execute(sa.select(seen))
        }
    assert len(stored) == 401
    assert stored[("c1", ids[250])] == (251, 251 * 7), "the first record stays"
    assert stored[("c1", ids[350])] == (151 + 1000, 0)
    assert stored[("c2", ids[0])] == (5000, 1)


def _columns(rows: list[tuple[str, UUID, int, int]]) -> SeenRows:
    return SeenRows(*(list(column) for column in zip(*rows, strict=True)))  # type: ignore[arg-type]


def _message(seq: int, event: Any) -> RawMessage:
    return RawMessage(seq, subject_of(event), CODEC.encode(event), seq * 1_000_000)


@pytest.mark.parametrize("copy_min_rows", COPY_SIZES)
def test_store_tells_duplicates_from_conflicts(engine: sa.Engine, copy_min_rows: int) -> None:
    """Through the store: a copy is a duplicate, another content under an id a dead letter."""
    events = make_events(300, communities=3)
    messages = [_message(seq, e) for seq, e in enumerate(events, start=1)]
    changed = events[10]
    conflict = type(changed)(**{**_fields(changed), "occurred_at": T0})
    later = [*messages[:50], _message(0, conflict)]  # copies of seqs 1-50, then a changed one
    later = [m._replace(seq=301 + i) for i, m in enumerate(later)]
    store = ProjectionStore(engine, EventCounts(), copy_min_rows=copy_min_rows)
    store.ensure(1)
    first = store.apply(1, 0, 0, messages)
    second = store.apply(1, 0, 300, later)
    assert (first.applied, first.duplicates, first.dead_letters) == (300, 0, 0)
    assert (second.applied, second.duplicates, second.dead_letters) == (0, 50, 1)
    with engine.connect() as conn:
        letter = conn.execute(sa.select(dead_letters)).one()
    assert (letter.seq, letter.kind) == (351, "conflicting_duplicate")
    assert "was applied at seq 11" in letter.error_message


def _fields(event: Any) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


def test_select_keys_by_key_and_by_prefix(engine: sa.Engine) -> None:
    table, spec = _table()
    backend = backend_for(engine)
    n = KEY_CHUNK * 10 + 7  # more than one chunk
    rows = [
        {"community": f"c{i % 3}", "day": date(2026, 3, 1 + i % 2), "n": i, "first_at": T0}
        for i in range(n)
    ]
    with engine.begin() as conn:
        table.create(conn)
        backend.insert(conn, table, spec, rows)
    wanted = [(r["community"], r["day"], r["n"]) for r in rows[::2]]
    wanted.append(("c0", date(2026, 3, 1), -1))  # no such row
    with engine.connect() as conn:
        found = list(backend.select_keys(conn, table, spec.key, wanted))
        by_prefix = list(backend.select_keys(conn, table, spec.key[:2], [("c1", date(2026, 3, 2))]))
        none = list(backend.select_keys(conn, table, spec.key, []))
    assert sorted(r["n"] for r in found) == list(range(0, n, 2))
    assert all(r["first_at"] == T0 for r in found)
    expected = [i for i in range(n) if i % 3 == 1 and i % 2 == 1]
    assert sorted(r["n"] for r in by_prefix) == expected
    assert none == []


def test_select_keys_by_a_time_key(engine: sa.Engine) -> None:
    """A key column of UtcDateTime (engagement's hours) is matched whatever zone it is given in."""
    table = sa.Table(
        "hours",
        sa.MetaData(),
        sa.Column("community", sa.String(64), primary_key=True),
        sa.Column("hour", UtcDateTime(), primary_key=True),
        sa.Column("n", sa.Integer),
    )
    spec = TableSpec("hours", ("community", "hour"), ("community", "hour", "n"))
    backend = backend_for(engine)
    with engine.begin() as conn:
        table.create(conn)
        backend.insert(
            conn,
            table,
            spec,
            [{"community": "c", "hour": T0 + timedelta(hours=h), "n": h} for h in range(5)],
        )
    paris = timezone(timedelta(hours=1))
    with engine.connect() as conn:
        found = list(backend.select_keys(conn, table, spec.key, [("c", T0.astimezone(paris))]))
    assert [(r["hour"], r["n"]) for r in found] == [(T0, 0)]
    assert found[0]["hour"].tzinfo is UTC


def test_parked_rows_of_one_partition(engine: sa.Engine) -> None:
    backend = backend_for(engine)
    base = {
        "projection": "p",
        "generation": 1,
        "error_class": "E",
        "error_message": "m",
        "since": T0,
        "occurred_at": T0,
    }
    with engine.begin() as conn:
        INFRA.create_all(conn)
        conn.execute(
            parked.insert(),
            [
                {**base, "community": "a", "partition": 0, "first_seq": 5, "held": 2},
                {**base, "community": "b", "partition": 1, "first_seq": 6, "held": 0},
                {**base, "community": "c", "partition": 0, "first_seq": 9, "held": 1},
                {
                    **base,
                    "community": "d",
                    "partition": 0,
                    "first_seq": 3,
                    "generation": 2,
                    "held": 0,
                },
            ],
        )
    with engine.connect() as conn:
        rows = sorted(backend.parked_rows(conn, "p", 1, 0))
        again = sorted(backend.parked_rows(conn, "p", 1, 0))  # the compiled statement, reused
        other = backend.parked_rows(conn, "q", 1, 0)
    assert rows == again == [("a", 5, 2), ("c", 9, 1)]
    assert other == []


def test_layout_check_widens_old_dead_letters_and_refuses_old_seen_tables(
    engine: sa.Engine,
) -> None:
    """An older Agora's tables: ``kind`` varchar(16) is widened; a seen table without digest
    must be rebuilt."""
    projection = EventCounts()
    old = sa.MetaData()
    sa.Table(
        dead_letters.name,
        old,
        *(
            sa.Column(
                c.name, sa.String(16) if c.name == "kind" else c.type, primary_key=c.primary_key
            )
            for c in dead_letters.columns
        ),
    )
    seen = Generation(projection, 1).seen
    sa.Table(
        seen.name,
        old,
        *(
            sa.Column(c.name, c.type, primary_key=c.primary_key)
            for c in seen.columns
            if c.name != "digest"
        ),
    )
    with engine.begin() as conn:
        old.create_all(conn)
    store = ProjectionStore(engine, projection)
    with pytest.raises(ProjectionError, match="rebuild it"):
        store.check_layout(1)
    with engine.connect() as conn:
        kind = next(
            c for c in sa.inspect(conn).get_columns(dead_letters.name) if c["name"] == "kind"
        )
    # PostgreSQL enforces the length and widens it; SQLite enforces none and leaves it be.
    assert getattr(kind["type"], "length", None) == (
        32 if engine.dialect.name == "postgresql" else 16
    )
    store.check_layout(2)  # a generation not created yet: nothing to refuse


def test_utc_datetime_round_trip(engine: sa.Engine) -> None:
    """Stored as ``DateTime(timezone=True)`` stores aware UTC; read back in UTC; naive refused."""
    metadata = sa.MetaData()
    typed = sa.Table(
        "typed",
        metadata,
        sa.Column("k", sa.Integer, primary_key=True),
        sa.Column("at", UtcDateTime()),
    )
    plain = sa.Table(
        "plain",
        metadata,
        sa.Column("k", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True)),
    )
    tokyo = timezone(timedelta(hours=9))
    with engine.begin() as conn:
        metadata.create_all(conn)
        conn.execute(
            typed.insert(),
            [{"k": 1, "at": T0}, {"k": 2, "at": T0.astimezone(tokyo)}, {"k": 3, "at": None}],
        )
        conn.execute(plain.insert(), [{"k": 1, "at": T0}, {"k": 2, "at": T0}, {"k": 3, "at": None}])
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), engine.begin() as conn:
        conn.execute(typed.insert(), [{"k": 4, "at": datetime(2026, 3, 1)}])
    with engine.connect() as conn:
        raw_typed = conn.execute(sa.text("SELECT at FROM typed ORDER BY k")).all()
        raw_plain = conn.execute(sa.text("SELECT at FROM plain ORDER BY k")).all()
        values = conn.execute(sa.select(typed.c.at).order_by(typed.c.k)).scalars().all()
        later = (
            conn.execute(sa.select(typed.c.k).where(typed.c.at > T0 - timedelta(seconds=1)))
            .scalars()
            .all()
        )
    assert raw_typed == raw_plain, "the same stored values as DateTime(timezone=True)"
    assert values == [T0, T0, None]
    assert all(v.tzinfo is UTC for v in values if v is not None)
    assert sorted(later) == [1, 2]


def test_utc_day_is_the_day_in_utc(engine: sa.Engine) -> None:
    backend = backend_for(engine)
    table = sa.Table(
        "moments",
        sa.MetaData(),
        sa.Column("k", sa.Integer, primary_key=True),
        sa.Column("at", UtcDateTime()),
    )
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"k": 1, "at": T0}, {"k": 2, "at": T0 + timedelta(hours=1)}])
        days = (
            conn.execute(sa.select(backend.utc_day(table.c.at)).order_by(table.c.k)).scalars().all()
        )
    assert days == [date(2026, 3, 1), date(2026, 3, 2)]


def test_each_database_has_its_backend(engine: sa.Engine) -> None:
    backend: Backend = backend_for(engine, 17)
    expected = PostgreSQLBackend if engine.dialect.name == "postgresql" else SQLiteBackend
    assert type(backend) is expected
    assert backend.copy_min_rows == 17
    assert ProjectionStore(engine, EventCounts()).backend.name == engine.dialect.name
