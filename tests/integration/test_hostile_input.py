"""Hostile events against every projection and every dashboard query, on SQLite and PostgreSQL.

Issue 14, finding 1: a ``member.joined`` dated 9999-12-31 paused ``engagement`` (OverflowError in
its date arithmetic) and held back every community; a NUL in ``content.hidden.rule`` paused
``moderation`` on PostgreSQL (text cannot hold NUL); events dated in year 1 made the dashboard's
overview, responsiveness, retention and crisis answer 500. The contract now refuses all three
(dead letters of kind ``invalid``, the partition goes on), and what it lets through -- dates at
both ends of 1970-01-01 .. 2999-12-31, the longest strings, every accepted character -- is folded
by every registered projection and read by every dashboard query without an error (the
Hypothesis test below; both databases).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import any_event, free_text
from support.engine import DB_KINDS, postgres_database

from agora.registry import get_projections
from agora.web import data
from events import CODEC, Event, InvalidEvent, subject_of
from events.limits import MAX_EVENT_TIME, MIN_EVENT_TIME
from projections.database import create_engine
from projections.store import FoldPolicy, ProjectionStore, RawMessage

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "v1"


def payload(type_: str, community: str, **changes: Any) -> bytes:
    """A fixture payload of ``type_`` in ``community``, with a fresh id and ``changes``."""
    doc: dict[str, Any] = json.loads((FIXTURES / f"{type_}.json").read_text())
    doc.update(id=str(uuid.uuid4()), community=community, **changes)
    return json.dumps(doc).encode()


@dataclass
class Projected:
    """Every registered projection on one database, generation 1 active, fed batch by batch."""

    url: str
    engine: sa.Engine
    stores: list[ProjectionStore]
    checkpoints: dict[str, int] = field(default_factory=dict)
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def apply(self, payloads: list[bytes]) -> None:
        """Apply ``payloads`` as the next messages, every projection pausing on a fold error."""
        messages = [
            RawMessage(next(self.seq), _subject(data), data, 1_770_000_000_000_000_000)
            for data in payloads
        ]
        for store in self.stores:
            name = store.projection.name
            done = store.apply(1, 0, self.checkpoints.get(name, 0), messages, FoldPolicy.PAUSE)
            self.checkpoints[name] = done.last_seq

    def dead_letters(self) -> dict[str, int]:
        """Dead letters per projection."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT projection, count(*) FROM agora_dead_letters GROUP BY projection")
            )
            return {str(name): int(n) for name, n in rows}

    def read_every_view(self, community: str) -> None:
        """Call every dashboard query for ``community`` with the widest ranges the API allows."""
        with data.snapshot(self.engine) as snap:
            data.community_list(snap)
            data.overview(snap, community, 3660)
            data.overview(snap, community, 1)
            data.moderation_queue(snap, community, 1000)
            for rules in ("default", "stackexchange"):
                board = data.leaderboard(snap, community, rules, 1000)
                for entry in board.members[:3]:
                    data.member_ledger(snap, community, entry.member, rules, 1000)
            data.needs_attention(snap, community, 1000)
            data.responsiveness(snap, community, 3660)
            data.retention(snap, community, 520)
            data.crisis(snap, community, 24 * 92)
            data.crisis(snap, community, 1)


def _subject(data: bytes) -> str:
    """The subject a producer would publish ``data`` on: ``agora.<community>.<type>``."""
    doc = json.loads(data)
    return f"agora.{doc['community']}.{doc['type']}"


@pytest.fixture(scope="module", params=DB_KINDS)
def projected(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Projected]:
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'agora.db'}"
    else:
        url, drop = postgres_database(request.getfixturevalue("postgres_server_url"))
    engine = create_engine(url)
    stores = [ProjectionStore(engine, projection) for projection in get_projections()]
    for store in stores:
        store.ensure(1)
        store.activate(1)
    try:
        yield Projected(url, engine, stores)
    finally:
        engine.dispose()
        drop()


def test_refused_dates_and_nul_are_dead_letters_not_pauses(projected: Projected) -> None:
    """Finding 1: each hostile event is set aside; a later event of another community applies.

    On main this raised FoldFailed (engagement: OverflowError at 9999-12-31; moderation on
    PostgreSQL: DataError, NUL in text) and the year-1 events broke the dashboard queries.
    """
    before = projected.dead_letters()
    hostile = [
        payload("member.joined", "far", occurred_at="9999-12-31T23:59:59Z"),
        payload("member.joined", "far", occurred_at="9999-10-30T00:00:00Z", member="m2"),
        payload("post.created", "far", occurred_at="9999-12-31T23:59:59Z"),
        payload("content.hidden", "far", rule="auto\u0000hide"),
        payload("member.joined", "early", occurred_at="0001-01-01T00:00:00Z"),
        payload("post.created", "early", occurred_at="0001-01-01T00:00:00Z"),
        payload("content.reported", "early", occurred_at="0001-01-01T00:05:00Z"),
    ]
    projected.apply([*hostile, payload("member.joined", "good")])
    after = projected.dead_letters()
    for store in projected.stores:
        name = store.projection.name
        assert after.get(name, 0) - before.get(name, 0) == len(hostile), name
    with projected.engine.connect() as conn:
        counted = conn.execute(
            sa.text("SELECT sum(events) FROM event_counts WHERE community = 'good'")
        ).scalar()
    assert counted == 1
    for community in ("far", "early", "good"):
        projected.read_every_view(community)


def test_year_one_is_refused_and_the_dashboard_answers(projected: Projected) -> None:
    """Finding 1: events dated in year 1 made overview, responsiveness, retention, crisis raise.

    On main they folded, and the dashboard's date arithmetic (a range ending on their day)
    raised OverflowError. Now they are dead letters, and the community's views answer.
    """
    early = [
        payload("member.joined", "year1", occurred_at="0001-01-01T00:00:00Z"),
        payload("post.created", "year1", occurred_at="0001-01-02T00:00:00Z"),
        payload("reply.created", "year1", occurred_at="0001-01-03T00:00:00Z"),
        payload("content.reported", "year1", occurred_at="0001-01-03T00:05:00Z"),
    ]
    projected.apply(early)
    projected.read_every_view("year1")


BOUNDS = [MIN_EVENT_TIME, MIN_EVENT_TIME + timedelta(microseconds=1), MAX_EVENT_TIME]
"""The contract's first and last instants, drawn often beside the whole range."""

_counter = itertools.count()


@st.composite
def extreme_history(draw: st.DrawFn) -> tuple[str, list[Event]]:
    """A short history of one fresh community: dates at the bounds, long and odd strings."""
    community = f"x{next(_counter)}"
    events = draw(
        st.lists(
            any_event(
                communities=[community],
                members=["m" * 64, "m1", "M-_9"],
                posts=["p" * 64, "p1"],
                replies=["r" * 64, "r1"],
            ),
            min_size=1,
            max_size=12,
        )
    )
    result: list[Event] = []
    for event in events:
        if draw(st.booleans()):
            at = draw(st.sampled_from(BOUNDS))
            changes: dict[str, Any] = {"occurred_at": at}
            until = getattr(event, "until", None)
            if until is not None:
                changes["until"] = draw(st.sampled_from([at, MAX_EVENT_TIME]))
            event = _replace(event, **changes)
        if hasattr(event, "title") and event.title is not None and draw(st.booleans()):
            event = _replace(event, title=draw(free_text(300, 300)))
        if hasattr(event, "note") and draw(st.booleans()):
            event = _replace(event, note="\t\r\n" + draw(free_text(0, 40)) + "\U0001f600" * 8)
        result.append(event)
    return community, result


def _replace(event: Event, **changes: Any) -> Event:
    return msgspec.structs.replace(event, **changes)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extreme_history())
def test_every_fold_and_view_survives_the_contracts_extremes(
    projected: Projected, history: tuple[str, list[Event]]
) -> None:
    """Whatever the decoder accepts, every projection folds and every dashboard query reads."""
    community, events = history
    payloads = [CODEC.encode(event) for event in events]
    for event, data_ in zip(events, payloads, strict=True):
        assert CODEC.decode(data_) == event
        assert subject_of(event).startswith(f"agora.{community}.")
    before = projected.dead_letters()
    projected.apply(payloads)
    assert projected.dead_letters() == before  # valid events: none set aside, none paused
    projected.read_every_view(community)


def test_bounds_are_what_the_decoder_accepts() -> None:
    """The bounds drawn above are the contract's: one microsecond outside is refused."""
    assert (
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ) == (MIN_EVENT_TIME, MAX_EVENT_TIME)
    for outside in ("1969-12-31T23:59:59.999999Z", "3000-01-01T00:00:00Z"):
        with pytest.raises(InvalidEvent, match="occurred_at"):
            CODEC.decode(payload("member.joined", "c1", occurred_at=outside))


def test_folds_and_views_survive_any_datetime_defence_in_depth(
    projected: Projected, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: even a decoder whose range were widened to Python's whole datetime
    range (years 1..9999) must not pause a fold or break a dashboard query.

    The seam is the range itself (the bounds :class:`events.Event` checks), widened for this
    test only; canonical bytes then decode as they would under such a contract.
    """
    import events.catalogue

    lowest = datetime.min.replace(tzinfo=UTC)
    highest = datetime.max.replace(tzinfo=UTC)
    monkeypatch.setattr(events.catalogue, "MIN_EVENT_TIME", lowest)
    monkeypatch.setattr(events.catalogue, "MAX_EVENT_TIME", highest)
    for community, at in (("wide-low", lowest), ("wide-high", highest)):
        events_ = [
            msgspec.structs.replace(event, occurred_at=at, community=community)
            for event in _one_of_each()
        ]
        projected.apply([CODEC.encode(event) for event in events_])
        projected.read_every_view(community)


def _one_of_each() -> list[Event]:
    return [CODEC.validate_json((FIXTURES / f"{t}.json").read_bytes()) for t in _TYPES]


_TYPES = [
    "member.joined",
    "post.created",
    "reply.created",
    "reaction.added",
    "answer.accepted",
    "content.reported",
    "content.hidden",
    "content.restored",
    "moderation.decided",
    "post.edited",
    "reply.deleted",
    "reaction.removed",
    "post.deleted",
    "member.left",
]
