"""Every registered projection through the projection test kit (projections/testing.py).

Histories come from the catalogue strategies (small pools of ids, so the same post is reacted
to, reported and deleted; event times over weeks, out of order, and now and then anywhere in the
contract's range) and from the simulator (a small world, reports and bad posts made frequent).
A projection gets these checks by being registered; its own tests keep what only it means (an
oracle, its invariants). The second half shows that each check fails on a projection that
lacks its property.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import any_event

from agora.registry import known_names, registered
from events import MemberJoined, PostCreated, derived_event_id
from events.catalogue import Event
from projections.api import Delivered, TableNamer
from projections.changes import Changes, Key
from projections.counts import EventCounts
from projections.database import create_engine
from projections.testing import (
    KitFailure,
    check_batching,
    check_columns_documented,
    check_projection,
    check_redelivery,
    check_replay_equals_live,
)
from services.simulator.model import Simulator, SimulatorConfig

T0 = datetime(2026, 1, 5, tzinfo=UTC)
POOLS = {
    "communities": ["c1", "c2", "c3"],
    "members": ["m1", "m2", "m3", "m4", "m5"],
    "posts": ["p1", "p2", "p3"],
    "replies": ["r1", "r2", "r3", "r4"],
    "reports": ["q1", "q2", "q3"],
}
SMALL_WORLD = SimulatorConfig(communities=3, members=12, report_share=0.2, bad_post_share=0.3)


@st.composite
def pooled_histories(draw: st.DrawFn) -> list[Event]:
    """Events of any type over small pools, at times over six weeks in any order (some anywhere)."""
    events = draw(st.lists(any_event(**POOLS), min_size=1, max_size=30))
    day = st.one_of(st.integers(0, 2), st.integers(0, 42))
    out = []
    for i, event in enumerate(events):
        if draw(st.integers(0, 9)) == 0:
            out.append(event)  # its drawn time: anywhere in 1970..2999
            continue
        at = T0 + timedelta(days=draw(day), minutes=draw(st.integers(0, 1439)), microseconds=i)
        out.append(msgspec.structs.replace(event, occurred_at=at))
    return out


@st.composite
def simulated_histories(draw: st.DrawFn) -> list[Event]:
    """A slice of the simulator's traffic in a small world: a seed and a length."""
    seed = draw(st.integers(0, 2**16))
    count = draw(st.integers(5, 40))
    return list(Simulator(seed, SMALL_WORLD).history(count, T0, rate=2.0))


histories = st.one_of(pooled_histories(), simulated_histories())
sizes = st.lists(st.integers(1, 9), min_size=1, max_size=5)


@pytest.mark.parametrize("name", known_names())
def test_every_registered_projection_passes_the_kit(name: str) -> None:
    factory = registered()[name]

    @settings(
        max_examples=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(events=histories, batch_sizes=sizes)
    def passes(events: list[Event], batch_sizes: list[int]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{Path(directory) / 'kit'}.db"
            check_projection(factory, events, url, sizes=batch_sizes)

    passes()


@pytest.mark.postgres
@pytest.mark.parametrize("name", known_names())
def test_every_registered_projection_passes_the_kit_on_postgresql(
    name: str, postgres_url: str
) -> None:
    events = list(Simulator(7, SMALL_WORLD).history(40, T0, rate=2.0))
    check_projection(registered()[name], events, postgres_url, sizes=[1, 5, 2])


# -- each check fails a projection without its property -----------------------------------------


def joined(i: int, community: str, member: str = "m1", day: int = 0) -> Event:
    return MemberJoined(
        id=derived_event_id("kit", str(i)),
        community=community,
        actor=member,
        occurred_at=T0 + timedelta(days=day, minutes=i),
        member=member,
    )


HISTORY = [joined(i, f"c{1 + i % 3}", f"m{i % 4}") for i in range(12)]


class PerBatch(EventCounts):
    """Counts batches instead of events: depends on where the batches are cut."""

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for event in {(d.event.community, d.event.TYPE, d.event.occurred_at.date()) for d in batch}:
            changes.add("event_counts", event, events=1)


class Unseen(EventCounts):
    """Reads a row it never declared, and hides the KeyError the engine raises."""

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        super().fold(batch, changes)
        first = batch[0].event
        with contextlib.suppress(KeyError):
            changes.get("event_counts", (first.community, "post.created", first.occurred_at.date()))


class Blind(EventCounts):
    """Reads a row it never declared and lets the KeyError out."""

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        first = batch[0].event
        changes.get("event_counts", (first.community, first.TYPE, first.occurred_at.date()))
        super().fold(batch, changes)


class Remembering(EventCounts):
    """Keeps state outside its tables (a class attribute): a read the engine cannot see."""

    seen: ClassVar[list[int]] = []

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for d in batch:
            self.seen.append(d.seq)
            day = d.event.occurred_at.date()
            changes.greatest(
                "event_counts", (d.event.community, d.event.TYPE, day), events=len(self.seen)
            )


class Latest(EventCounts):
    """One row for all communities, read and overwritten: its answer depends on partitioning."""

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        return {"event_counts": [("all", "any", T0.date())]}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for d in batch:
            row = changes.get("event_counts", ("all", "any", T0.date()))
            before = 0 if row is None else row["events"]
            changes.put("event_counts", ("all", "any", T0.date()), events=before * 3 + d.seq)


def kit_engine(tmp_path: Path) -> sa.Engine:
    return create_engine(f"sqlite:///{tmp_path / 'kit.db'}")


def test_a_well_behaved_projection_passes(tmp_path: Path) -> None:
    check_projection(EventCounts, HISTORY, f"sqlite:///{tmp_path / 'kit.db'}", sizes=[2, 5])


def test_a_fold_that_depends_on_batch_boundaries_fails(tmp_path: Path) -> None:
    with pytest.raises(KitFailure, match="differs between one batch and one event per batch"):
        check_batching(PerBatch, HISTORY, kit_engine(tmp_path))


@pytest.mark.parametrize("projection", [Unseen, Blind])
def test_a_fold_reading_an_undeclared_row_fails_even_if_it_hides_the_error(
    tmp_path: Path, projection: type[EventCounts]
) -> None:
    with pytest.raises(KitFailure, match=r"undeclared reads: event_counts\('c1'"):
        check_batching(projection, HISTORY, kit_engine(tmp_path))


def test_state_kept_outside_the_tables_fails_replay_equals_live(tmp_path: Path) -> None:
    Remembering.seen.clear()
    with pytest.raises(KitFailure, match="differs between live and replayed"):
        check_replay_equals_live(Remembering, HISTORY, kit_engine(tmp_path))
    Remembering.seen.clear()
    with pytest.raises(KitFailure, match="differs between one batch and"):
        check_batching(Remembering, HISTORY, kit_engine(tmp_path))


def test_a_fold_across_communities_fails_under_partitions(tmp_path: Path) -> None:
    engine = kit_engine(tmp_path)
    check_batching(Latest, HISTORY, engine, partitions=1)  # one partition: any batches agree
    with pytest.raises(KitFailure, match="between one batch and 3 partitions by community"):
        check_batching(Latest, HISTORY, engine, partitions=3)


def test_redelivery_changes_nothing_for_a_stateful_projection(tmp_path: Path) -> None:
    """Even a fold that reads its own rows sees no event twice: applied once is applied once."""
    posts = [
        PostCreated(
            id=derived_event_id("kit-post", str(i)),
            community="c1",
            actor="m1",
            occurred_at=T0 + timedelta(minutes=i),
            post=f"p{i}",
            title="t",
        )
        for i in range(5)
    ]
    check_redelivery(Latest, [*posts, *HISTORY], kit_engine(tmp_path), sizes=[2])


class Undocumented(EventCounts):
    """EventCounts with one more column, without a comment."""

    name = "undocumented"

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        tables = super().define_tables(metadata, table_name)
        tables["event_counts"].append_column(sa.Column("extra", sa.Integer))
        return tables


class Nameless(EventCounts):
    name = "nameless"


def test_a_column_without_a_comment_or_a_class_without_a_docstring_fails() -> None:
    check_columns_documented(EventCounts())
    with pytest.raises(KitFailure, match=r"without a comment= .*: event_counts\.extra"):
        check_columns_documented(Undocumented())
    with pytest.raises(KitFailure, match="Nameless has no docstring"):
        check_columns_documented(Nameless())
