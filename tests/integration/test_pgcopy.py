"""PostgreSQL's COPY path writes exactly what the statement path writes, for every projection.

Catch-up batches on PostgreSQL record their events in the seen table and append ledger and log
rows with COPY (through a staging table where rows may exist already); small live batches use
ordinary statements. Both paths must leave identical tables -- duplicates and dead letters
included -- or a replay would not equal the live run.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from support.engine import dump, postgres_database
from support.sample import sample_events

from agora.registry import get_projections
from events import encode
from events.subjects import subject_of
from projections.database import create_engine
from projections.store import ProjectionStore, RawMessage

pytestmark = [pytest.mark.postgres]

START = datetime(2026, 3, 1, tzinfo=UTC)


def _history() -> list[RawMessage]:
    """Coherent sample traffic, copies of earlier events re-published later, and bad bytes."""
    events = list(sample_events(11, 3, 60, 3000, START))
    data = [(subject_of(e), encode(e)) for e in events]
    data += data[100:400]  # re-published after the server's duplicate window: duplicates
    data.insert(1500, ("agora.c1.post.created", b'{"type": "post.created"}'))
    data.append(("agora.c2.nope", b"not json"))
    return [RawMessage(seq, s, d, seq * 1_000_000) for seq, (s, d) in enumerate(data, start=1)]


def _project(url: str, copy_min_rows: int, messages: list[RawMessage]) -> dict[str, list[str]]:
    engine = create_engine(url)
    try:
        for projection in get_projections():
            store = ProjectionStore(engine, projection, copy_min_rows=copy_min_rows)
            store.ensure(1)
            last = 0
            for start in range(0, len(messages), 700):
                last = store.apply(1, 0, last, messages[start : start + 700]).last_seq
            assert last == len(messages)
        return dump(engine)
    finally:
        engine.dispose()


def test_copy_and_statements_leave_identical_tables(postgres_server_url: str) -> None:
    messages = _history()
    copy_url, drop_copy = postgres_database(postgres_server_url)
    plain_url, drop_plain = postgres_database(postgres_server_url)
    try:
        with_copy = _project(copy_url, 1, messages)
        without = _project(plain_url, 10**9, messages)
    finally:
        drop_copy()
        drop_plain()
    assert with_copy == without
    seen = with_copy["agora_seen_event_counts__g1"]
    assert len(seen) == 3000, "every valid event recorded once, copies not again"
    checkpoints = [r for r in with_copy["agora_checkpoints"] if "'event_counts'" in r]
    assert checkpoints and ", 300, 2" in checkpoints[0], checkpoints  # duplicates, dead letters
    ledgers = [n for n, rows in with_copy.items() if n.startswith("reputation_ledger") and rows]
    assert ledgers, "the reputation ledger (appended rows) was written"


def test_copy_errors_are_database_errors(postgres_url: str) -> None:
    """A row the table refuses fails like a statement would: as SQLAlchemy's IntegrityError."""
    from projections.backends import pgcopy

    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (k int PRIMARY KEY, v text NOT NULL)"))
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        pgcopy.copy_rows(conn, "t", ("k", "v"), [(1, "a"), (2, None)])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 0
    engine.dispose()
