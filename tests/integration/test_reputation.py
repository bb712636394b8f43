"""The reputation projection on PostgreSQL: the unit scenarios again, replay equals live, and
the same ledger as SQLite for the same history."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.engine import dump, postgres_database
from unit import test_reputation_rules as scenarios
from unit.test_reputation_properties import (
    PROJECTIONS,
    _busy_history,
    check_invariants,
    histories,
    messages_of,
)

from events import Event
from projections.database import create_engine
from projections.reputation import RuleSet, StackExchangeReputation, Tables
from projections.reputation.rules import STACKEXCHANGE
from projections.store import FoldPolicy, ProjectionStore, RawMessage

SCENARIOS: list[Callable[[Any], None]] = [
    test
    for name, test in vars(scenarios).items()
    if name.startswith("test_") and list(inspect.signature(test).parameters) == ["town"]
]


@pytest.fixture
def town(postgres_url: str) -> Iterator[Callable[..., scenarios.Community]]:
    made: list[scenarios.Community] = []

    def make(rules: RuleSet = STACKEXCHANGE) -> scenarios.Community:
        community = scenarios.Community(postgres_url, rules)
        made.append(community)
        return community

    yield make
    for community in made:
        community.close()


@pytest.mark.postgres
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__.removeprefix("test_"))
def test_scenario_on_postgres(scenario: Callable[[Any], None], town: Any) -> None:
    scenario(town)


def test_every_scenario_runs_here_too() -> None:
    assert len(SCENARIOS) >= 20


class PgRun:
    """The three reputation projections in one database (any URL)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)
        self.stores = [ProjectionStore(self.engine, p()) for p in PROJECTIONS]
        for store in self.stores:
            store.ensure(1)

    def feed(self, messages: list[RawMessage], sizes: Iterator[int]) -> None:
        for store in self.stores:
            checkpoint = store.checkpoint(1)
            while True:
                batch = [m for m in messages if m.seq > checkpoint][: next(sizes)]
                if not batch:
                    break
                checkpoint = store.apply(1, 0, checkpoint, batch, FoldPolicy.PAUSE).last_seq

    def tables(self) -> dict[str, list[str]]:
        return {k: v for k, v in dump(self.engine).items() if k.startswith("reputation")}

    def numbers(self) -> dict[str, list[tuple[Any, ...]]]:
        """Ledgers and scores as plain tuples, comparable across database kinds."""
        out: dict[str, list[tuple[Any, ...]]] = {}
        with self.engine.connect() as conn:
            for store in self.stores:
                t = Tables.of(store.projection.name)
                gen = store.generation(1).tables
                ledger, members = gen[t.ledger], gen[t.members]
                out[t.ledger] = [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(
                            ledger.c.seq,
                            ledger.c.n,
                            ledger.c.member,
                            ledger.c.rule,
                            ledger.c.requested,
                            ledger.c.delta,
                            ledger.c.balance,
                        ).order_by(ledger.c.seq, ledger.c.n)
                    )
                ]
                out[t.members] = [
                    tuple(r)
                    for r in conn.execute(
                        sa.select(
                            members.c.community,
                            members.c.member,
                            members.c.score,
                            members.c.trust_level,
                            members.c.days_active,
                            members.c.reports_upheld,
                        ).order_by(members.c.community, members.c.member)
                    )
                ]
        return out

    def close(self) -> None:
        self.engine.dispose()


@pytest.mark.postgres
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(events=histories(), sizes=st.lists(st.integers(1, 9), min_size=1, max_size=6))
def test_replay_in_any_batches_equals_live_on_postgres(
    postgres_server_url: str, events: list[Event], sizes: list[int]
) -> None:
    messages = messages_of(events)
    runs: list[PgRun] = []
    drops: list[Callable[[], None]] = []
    try:
        for _ in range(2):
            url, drop = postgres_database(postgres_server_url)
            drops.append(drop)
            runs.append(PgRun(url))
        one, live = runs
        one.feed(messages, itertools.repeat(len(messages)))
        live.feed(messages, itertools.cycle(sizes))
        assert live.tables() == one.tables()
        check_invariants(one)
    finally:
        for run in runs:
            run.close()
        for drop in drops:
            drop()


@pytest.mark.postgres
def test_postgres_and_sqlite_keep_the_same_ledger(postgres_url: str, tmp_path: Path) -> None:
    messages = messages_of(_busy_history())
    pg, lite = PgRun(postgres_url), PgRun(f"sqlite:///{tmp_path / 'lite'}.db")
    try:
        pg.feed(messages, itertools.cycle([13, 1, 40]))
        lite.feed(messages, itertools.repeat(len(messages)))
        assert pg.numbers() == lite.numbers()
        assert check_invariants(pg) > 100
    finally:
        pg.close()
        lite.close()


BEER = Path(__file__).resolve().parents[3] / "shared" / "data" / "stackexchange-beer"


def test_the_beer_dump_agrees_with_stack_exchange_reputation(tmp_path: Path) -> None:
    """The 2014 rules on real history: members' scores against Users.xml's ``Reputation``.

    Measured: 295 of 833 exact; 297 within +-5; 775 (93 %) exact or exactly +100, the association
    bonus the dump does not record; 822 (98.7 %) within +-5 once that bonus is allowed. The
    bounds below are the measurement less a margin, not a tuning target.
    """
    import xml.etree.ElementTree as ET

    mapping = pytest.importorskip("services.stackexchange.mapping")
    if not (BEER / "Users.xml").exists():
        pytest.skip(f"no Stack Exchange dump at {BEER}")
    engine = create_engine(f"sqlite:///{tmp_path / 'beer'}.db")
    store = ProjectionStore(engine, StackExchangeReputation())
    store.ensure(1)
    events = list(mapping.iter_events(BEER, "beer", work_dir=tmp_path))
    messages = messages_of(events)
    for start in range(0, len(messages), 500):
        batch = messages[start : start + 500]
        store.apply(1, 0, batch[0].seq - 1, batch, FoldPolicy.PAUSE)
    with engine.connect() as conn:
        query = sa.text("SELECT member, score FROM reputation_stackexchange_members__g1")
        scores = {member: score for member, score in conn.execute(query)}
    engine.dispose()
    published = {
        f"u{row.get('Id')}": int(row.get("Reputation", "1"))
        for _, row in ET.iterparse(BEER / "Users.xml")
        if row.tag == "row" and row.get("Id") != "-1"
    }
    differences = [published[m] - scores.get(m, 1) for m in published]
    exact = sum(d == 0 for d in differences)
    bonus = sum(d in (0, 100) for d in differences)
    near = sum(min(abs(d), abs(d - 100)) <= 5 for d in differences)  # +-5, bonus allowed
    assert exact >= 0.33 * len(differences)
    assert bonus >= 0.90 * len(differences)
    assert near >= 0.95 * len(differences)
