"""The moderation queue as a community manager would describe it, on SQLite and PostgreSQL.

Each test tells a short story of a community -- members join and post, others report, moderators
decide, automation hides -- through the real codec and ProjectionStore (one transaction per event,
as a live worker would), then reads the result the way the dashboard does: through the stable
views of the active generation and the queries of ``projections.moderation.queries``.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support.engine import DB_KINDS, database_url, dump

from events import (
    CODEC,
    ContentHidden,
    ContentReported,
    ContentRestored,
    Event,
    MemberJoined,
    MemberLeft,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    PostEdited,
    subject_of,
)
from events.fields import ReportReason
from projections.api import Delivered, TableNamer
from projections.database import create_engine
from projections.moderation import DEFAULT_SETTINGS, ModerationQueue, ModerationSettings
from projections.moderation import queries as q
from projections.store import ProjectionStore, RawMessage

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
DAY1 = T0.date()
DAY2 = DAY1 + timedelta(days=1)
C = "c1"


@pytest.fixture(params=DB_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(database_url(request.param, tmp_path, request))
    yield engine
    engine.dispose()


class Story:
    """A community's history, told event by event and folded as it is told."""

    def __init__(self, engine: sa.Engine, settings: ModerationSettings = DEFAULT_SETTINGS) -> None:
        self.engine = engine
        self.settings = settings
        self.store = ProjectionStore(engine, ModerationQueue.configured(settings)())
        self.store.ensure(1)
        self.store.activate(1)
        self.now = T0
        self.seq = 0
        self.messages: list[RawMessage] = []
        self._reports = 0
        self._posts = 0

    # -- time -----------------------------------------------------------------------------------

    def at(self, when: datetime) -> Story:
        self.now = when
        return self

    def later(self, **delta: float) -> Story:
        self.now += timedelta(**delta)
        return self

    # -- events ---------------------------------------------------------------------------------

    def emit(self, cls: type[Event], actor: str, **fields: Any) -> int:
        event = cls(id=uuid.uuid4(), community=C, actor=actor, occurred_at=self.now, **fields)
        self.seq += 1
        message = RawMessage(self.seq, subject_of(event), CODEC.encode(event), self.seq)
        self.messages.append(message)
        self.store.apply(1, 0, self.seq - 1, [message])
        return self.seq

    def join(self, member: str, *, days_ago: float = 0) -> None:
        saved = self.now
        self.now -= timedelta(days=days_ago)
        self.emit(MemberJoined, member, member=member)
        self.now = saved

    def write_posts(self, author: str, n: int) -> None:
        for _ in range(n):
            self._posts += 1
            self.emit(PostCreated, author, post=f"x{self._posts}", title="Hello")

    def trusted(self, *members: str) -> None:
        """Members of trust level 3: joined 60 days ago, 20 posts each."""
        for member in members:
            self.join(member, days_ago=60)
            self.write_posts(member, 20)

    def report(
        self,
        reporter: str,
        target: str,
        reason: str = "spam",
        *,
        kind: str = "post",
        author: str = "ann",
    ) -> int:
        self._reports += 1
        return self.emit(
            ContentReported,
            reporter,
            report=f"q{self._reports}",
            target=target,
            target_kind=kind,
            target_author=target if kind == "member" else author,
            reason=reason,
        )

    def decide(
        self, moderator: str, target: str, decision: str, *, kind: str = "post", author: str = "ann"
    ) -> int:
        until = self.now + timedelta(days=7) if decision == "suspend" else None
        return self.emit(
            ModerationDecided,
            moderator,
            target=target,
            target_kind=kind,
            target_author=target if kind == "member" else author,
            decision=decision,
            until=until,
        )

    def auto_hide(self, target: str, *, author: str = "ann") -> int:
        return self.emit(
            ContentHidden,
            "system",
            target=target,
            target_kind="post",
            target_author=author,
            rule="auto_hide.score",
        )

    def restore(self, target: str, *, author: str = "ann") -> int:
        return self.emit(
            ContentRestored, "system", target=target, target_kind="post", target_author=author
        )

    def edit(self, post: str, *, author: str = "ann") -> int:
        return self.emit(PostEdited, author, post=post, author=author, body="edited")

    def delete(self, post: str, *, author: str = "ann") -> int:
        return self.emit(PostDeleted, author, post=post, author=author)

    # -- reading --------------------------------------------------------------------------------

    def one(self, table: sa.Table, **key: Any) -> dict[str, Any]:
        """The one row of ``table`` (a stable view, typed) with ``key``; datetimes in UTC."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table).where(*(table.c[k] == v for k, v in key.items()))
            ).all()
        assert len(rows) == 1, f"{table.name} {key}: {len(rows)} rows"
        return {
            k: v.replace(tzinfo=UTC) if isinstance(v, datetime) and v.tzinfo is None else v
            for k, v in rows[0]._mapping.items()
        }

    def item(self, target: str, kind: str = "post") -> dict[str, Any]:
        return self.one(q.STABLE.queue, community=C, target_kind=kind, target=target)

    def report_row(self, seq: int) -> dict[str, Any]:
        return self.one(q.STABLE.reports, community=C, seq=seq)

    def reporter(self, member: str) -> dict[str, Any]:
        return self.one(q.STABLE.reporters, community=C, reporter=member)

    def member(self, member: str) -> dict[str, Any]:
        return self.one(q.STABLE.members, community=C, member=member)

    def weight_now(self, member: str, reason: ReportReason = "spam") -> q.Weight:
        with self.engine.connect() as conn:
            return q.report_weight_now(conn, C, member, reason, self.now, settings=self.settings)


# -- the stories --------------------------------------------------------------------------------


def test_three_spam_reports_from_trusted_members_hide_a_post_and_a_rejection_costs_the_reporters(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    s.join("ann", days_ago=20)
    s.write_posts("ann", 6)
    s.trusted("tom", "tia", "ted")
    ann_before = s.weight_now("ann")

    # Each trusted member's spam report weighs 1 + 3 (trust level) + 0 (no record) + 2 (spam).
    first = s.report("tom", "p1")
    assert (s.item("p1")["score"], s.item("p1")["priority"]) == (6000, "medium")
    second = s.later(minutes=5).report("tia", "p1")
    assert (s.item("p1")["score"], s.item("p1")["priority"]) == (12000, "high")
    assert s.item("p1")["auto_hide_due_at_seq"] is None
    third = s.later(minutes=5).report("ted", "p1")
    item = s.item("p1")
    assert item["score"] == 18000
    assert (item["auto_hide_due_at_seq"], item["auto_hide_score"]) == (third, 18000)

    # The moderation service hides it; an hour later a moderator keeps the post.
    s.later(seconds=2).auto_hide("p1")
    assert s.item("p1")["hidden"]
    decision = s.at(T0 + timedelta(hours=1)).decide("mod", "p1", "keep")
    item = s.item("p1")
    assert (item["status"], item["score"], item["open_reports"]) == ("rejected", 0, 0)
    assert item["resolution_seconds"] == 3600
    assert [s.report_row(seq)["status"] for seq in (first, second, third)] == ["disagreed"] * 3
    for member in ("tom", "tia", "ted"):
        record = s.reporter(member)
        assert (record["agreed"], record["disagreed"]) == (0, 1)
    s.later(minutes=1).restore("p1")
    assert not s.item("p1")["hidden"]

    # The author loses nothing: no sanction, same standing and weight as before.
    assert s.member("ann")["sanctions"] == 0
    assert s.weight_now("ann") == ann_before

    with engine.connect() as conn:
        review = q.auto_hide_review(conn, C, DAY1, DAY1)
        log = conn.execute(
            sa.text(
                "SELECT seq, kind, action, outcome, auto_hidden FROM moderation_log ORDER BY seq"
            )
        ).all()
    assert (review.reviewed, review.rejected, review.false_positive_rate) == (1, 1, Fraction(1))
    assert [tuple(r) for r in log] == [
        (third + 1, "hide", "hidden", None, False),
        (decision, "decision", "keep", "rejected", True),
        (decision + 1, "restore", "restored", None, False),
    ]


def test_a_report_within_24_hours_of_a_rejected_one_does_not_reopen_but_one_after_an_edit_does(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    s.report("bob", "p1")
    s.later(hours=1).decide("mod", "p1", "dismiss")
    assert s.item("p1")["status"] == "rejected"

    # Same reporter, same reason, 5 hours later: recorded, but no reopening and no score.
    again = s.later(hours=5).report("bob", "p1")
    assert s.report_row(again)["status"] == "cooled"
    item = s.item("p1")
    assert (item["status"], item["score"], item["round"], item["reports"]) == (
        "rejected",
        0,
        1,
        2,
    )
    assert s.reporter("bob")["cooled"] == 1

    # The author edits the post: the same report now reopens it, in a second round.
    s.later(hours=1).edit("p1")
    after_edit = s.later(hours=1).report("bob", "p1")
    item = s.item("p1")
    assert s.report_row(after_edit)["status"] == "pending"
    assert (item["status"], item["round"], item["score"]) == ("pending", 2, 3000)
    assert item["opened_at"] == s.now


def test_the_cooldown_is_per_reporter_and_reason_and_lasts_24_hours(engine: sa.Engine) -> None:
    s = Story(engine)
    for post in ("p1", "p2", "p3"):
        s.report("bob", post)
    s.later(hours=1)
    for post in ("p1", "p2", "p3"):
        s.decide("mod", post, "dismiss")

    other_reporter = s.later(hours=1).report("cat", "p1")
    other_reason = s.report("bob", "p2", "harassment")
    assert s.report_row(other_reporter)["status"] == "pending"
    assert s.report_row(other_reason)["status"] == "pending"
    assert s.item("p1")["status"] == s.item("p2")["status"] == "pending"

    within = s.at(T0 + timedelta(hours=24, minutes=59)).report("bob", "p3")
    after = s.at(T0 + timedelta(hours=25, minutes=1)).report("bob", "p3")
    assert s.report_row(within)["status"] == "cooled"
    assert s.report_row(after)["status"] == "pending"
    assert s.item("p3")["round"] == 2


def test_the_cooldown_ends_exactly_24_hours_after_the_resolution(engine: sa.Engine) -> None:
    s = Story(engine)
    s.report("bob", "p1")
    s.report("bob", "p2")
    resolved = T0 + timedelta(hours=1)
    s.at(resolved).decide("mod", "p1", "dismiss")
    s.decide("mod", "p2", "dismiss")
    s.edit("p2")  # edited at the resolution's instant: not after it, so no fresh look
    just_before = s.at(resolved + timedelta(hours=24, microseconds=-1)).report("bob", "p1")
    same_instant = s.report("bob", "p2")
    assert s.report_row(just_before)["status"] == "cooled"
    assert s.report_row(same_instant)["status"] == "cooled"
    at_24_hours = s.at(resolved + timedelta(hours=24)).report("bob", "p1")
    assert s.report_row(at_24_hours)["status"] == "pending"
    assert s.item("p1")["round"] == 2


def test_time_to_resolution_and_sla_breaches_per_day(engine: sa.Engine) -> None:
    s = Story(engine)
    for post in ("p1", "p2", "p3", "p4", "p6"):
        s.report("bob", post)  # day 1, 09:00
    s.at(T0 + timedelta(hours=1)).decide("mod", "p1", "remove")  # waited 1 h
    s.at(T0 + timedelta(hours=6)).decide("mod", "p2", "keep")  # 6 h
    s.at(T0 + timedelta(hours=7)).delete("p6")  # ignored: not a resolution
    s.at(T0 + timedelta(hours=23)).report("cat", "p5")  # day 2, 08:00
    s.at(T0 + timedelta(hours=23, minutes=30)).decide("mod", "p5", "warn")  # 30 min
    s.at(T0 + timedelta(hours=26)).decide("mod", "p3", "hide")  # 26 h: breach
    s.at(T0 + timedelta(hours=27))
    # p4 is still waiting.

    with engine.connect() as conn:
        days = q.resolution_by_day(conn, C, DAY1, DAY2)
        late = q.sla_breaches(conn, C, T0 + timedelta(hours=25))
        early = q.sla_breaches(conn, C, T0 + timedelta(hours=11))
        strict = q.sla_breaches(conn, C, T0 + timedelta(hours=11), sla_hours=4)
        counts = q.open_counts(conn, C)
    assert days == [
        q.DayResolution(DAY1, resolved=2, median_seconds=3600, p90_seconds=21600, sla_breaches=0),
        q.DayResolution(DAY2, resolved=2, median_seconds=1800, p90_seconds=93600, sla_breaches=1),
    ]
    # At day 2, 10:00 the rounds of p3 (decided later, at 11:00) and p4 had waited 25 hours.
    assert [(b.target, b.waited_seconds, b.still_open) for b in late] == [
        ("p3", 25 * 3600, False),
        ("p4", 25 * 3600, True),
    ]
    assert early == []
    # With a 4-hour SLA, at 20:00 on day 1: p2 had been resolved at 15:00, p6 deleted at 16:00.
    assert [b.target for b in strict] == ["p3", "p4"]
    assert counts == {"high": 0, "medium": 0, "low": 1}


def test_a_post_deleted_before_a_decision_is_ignored_and_costs_no_reporter_accuracy(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    s.report("bob", "p1")
    s.later(hours=2).delete("p1")
    item = s.item("p1")
    assert (item["status"], item["score"], item["resolution_seconds"]) == ("ignored", 0, 7200)
    assert item["deleted_at"] is not None
    record = s.reporter("bob")
    assert (record["agreed"], record["disagreed"], record["ignored"]) == (0, 0, 1)

    # Reporting the deleted post again records the report and changes nothing else.
    late = s.later(hours=1).report("cat", "p1")
    assert s.report_row(late)["status"] == "ignored"
    assert (s.item("p1")["status"], s.item("p1")["round"]) == ("ignored", 1)
    with engine.connect() as conn:
        kinds = conn.execute(sa.text("SELECT kind, reports_resolved FROM moderation_log")).all()
    assert [tuple(k) for k in kinds] == [("ignore", 1)]


def test_an_approval_keeps_the_score_sanctions_the_author_and_credits_the_reporters(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    s.join("ann", days_ago=20)
    s.write_posts("ann", 6)  # trust level 2
    assert s.weight_now("ann").standing == 2
    s.report("bob", "p1", "harassment")
    s.report("cat", "p1", "spam")
    s.later(hours=3).decide("mod", "p1", "remove")
    item = s.item("p1")
    assert (item["status"], item["agreed_score"], item["score"]) == ("approved", 7000, 7000)
    assert item["top_reason"] == "harassment"
    assert (s.reporter("bob")["agreed"], s.reporter("cat")["agreed"]) == (1, 1)
    assert s.member("ann")["sanctions"] == 1
    assert s.weight_now("ann").standing == 1

    # Reopened later, the agreed reports still count, as in Discourse's reviewable score.
    s.later(days=3).report("dan", "p1", "off_topic")
    item = s.item("p1")
    assert (item["status"], item["round"], item["score"]) == ("pending", 2, 8000)


def test_one_reporter_counts_once_per_round(engine: sa.Engine) -> None:
    s = Story(engine)
    s.report("bob", "p1", "spam")
    second = s.later(minutes=1).report("bob", "p1", "illegal")
    assert s.report_row(second)["status"] == "duplicate"
    item = s.item("p1")
    assert (item["score"], item["open_reports"], item["reports"]) == (3000, 1, 2)
    assert s.reporter("bob")["duplicates"] == 1


def test_accurate_reporters_rise_and_inaccurate_ones_sink(engine: sa.Engine) -> None:
    s = Story(engine)
    for i in range(6):
        s.report("good", f"g{i}", "off_topic")
        s.report("poor", f"b{i}", "off_topic")
    s.later(hours=1)
    for i in range(6):
        s.decide("mod", f"g{i}", "remove")
        s.decide("mod", f"b{i}", "dismiss")

    # Six resolved reports: 100 % agreement earns 5 * log4(6) = 6.462; 0 % costs as much.
    good = s.later(hours=1).report("good", "p1", "off_topic")
    poor = s.report("poor", "p2", "off_topic")
    assert (s.report_row(good)["accuracy_bonus"], s.report_row(good)["weight"]) == (6462, 7462)
    assert (s.report_row(poor)["accuracy_bonus"], s.report_row(poor)["weight"]) == (-6462, 0)
    with engine.connect() as conn:
        top = q.open_items(conn, C)
    assert [(i.target, i.score) for i in top] == [("p1", 7462), ("p2", 0)]

    # Outcomes fade: a period (30 days) later six outcomes count as 5.4, two periods as 4.86,
    # which is no longer more than five -- the bonus is gone until new outcomes come in.
    assert s.later(days=30).weight_now("good", "off_topic").accuracy_bonus == 6082
    assert s.later(days=30).weight_now("good", "off_topic").accuracy_bonus == 0


def test_the_queue_shows_what_matters_first(engine: sa.Engine) -> None:
    s = Story(engine)
    s.trusted("tom")
    s.report("new1", "p1", "off_topic")  # 1.0
    s.later(minutes=1).report("new2", "p2", "illegal")  # 1 + 5 = 6.0
    s.later(minutes=1).report("tom", "p3", "inappropriate")  # 1 + 3 + 1 = 5.0
    s.later(minutes=1).report("new3", "r1", "harassment", kind="reply")  # 4.0
    s.later(minutes=1).report("new4", "troll", "harassment", kind="member")  # 4.0
    with engine.connect() as conn:
        queue = q.open_items(conn, C)
        medium = q.open_items(conn, C, priority="medium")
        counts = q.open_counts(conn, C)
        explained = q.item_reports(conn, C, "post", "p3")
    assert [(i.target_kind, i.target, i.score, i.priority) for i in queue] == [
        ("post", "p2", 6000, "medium"),
        ("post", "p3", 5000, "medium"),
        ("reply", "r1", 4000, "low"),
        ("member", "troll", 4000, "low"),
        ("post", "p1", 1000, "low"),
    ]
    assert [i.target for i in medium] == ["p2", "p3"]
    assert counts == {"high": 0, "medium": 2, "low": 3}
    assert [
        (r.reporter, r.standing, r.accuracy_bonus, r.reason_bonus, r.weight) for r in explained
    ] == [("tom", 3, 0, 1000, 5000)]


def test_a_moderators_reports_weigh_as_staff(engine: sa.Engine) -> None:
    s = Story(engine)
    s.report("bob", "p1")
    s.decide("mod", "p1", "remove")
    seq = s.later(minutes=1).report("mod", "p2", "other")
    assert s.member("mod")["staff"]
    assert (s.report_row(seq)["standing"], s.report_row(seq)["weight"]) == (5, 6000)


def test_a_removed_members_reports_are_ignored_until_they_come_back(engine: sa.Engine) -> None:
    s = Story(engine)
    s.report("bob", "troll", "harassment", kind="member")
    s.later(hours=1).emit(MemberLeft, "mod", member="troll", reason="removed")
    assert s.item("troll", "member")["status"] == "ignored"
    s.later(days=10).join("troll")
    assert s.item("troll", "member")["deleted_at"] is None
    s.later(hours=1).report("bob", "troll", "harassment", kind="member")
    item = s.item("troll", "member")
    assert (item["status"], item["round"], item["score"]) == ("pending", 2, 4000)
    # A member cannot be hidden: no auto-hide mark, whatever the score.
    assert item["auto_hide_due_at_seq"] is None


def test_auto_hide_is_marked_once_per_round_and_never_on_hidden_content(
    engine: sa.Engine,
) -> None:
    settings = replace(DEFAULT_SETTINGS, auto_hide_score=5000)
    s = Story(engine, settings)
    crossed = s.report("bob", "p1", "illegal")  # 6.0 >= 5.0
    s.report("cat", "p1", "illegal")
    assert s.item("p1")["auto_hide_due_at_seq"] == crossed
    s.auto_hide("p1")
    s.report("dan", "p2", "spam")  # 3.0
    s.auto_hide("p2")  # hidden by a rule before crossing
    s.report("eve", "p2", "spam")  # 6.0, but already hidden
    assert s.item("p2")["auto_hide_due_at_seq"] is None
    assert s.item("p2")["hidden"]


def test_auto_hide_is_marked_at_exactly_the_threshold(engine: sa.Engine) -> None:
    settings = replace(DEFAULT_SETTINGS, auto_hide_score=6000)
    s = Story(engine, settings)
    s.report("bob", "p1", "harassment")  # 1 + 0 + 3 = 4.0: below
    assert s.item("p1")["auto_hide_due_at_seq"] is None
    s.report("cat", "p2", "harassment")  # 4.0
    below = s.report("dan", "p2", "other")  # 4.0 + 1.0 = 5.0: still below
    assert (s.item("p2")["score"], s.item("p2")["auto_hide_due_at_seq"]) == (5000, None)
    assert s.report_row(below)["weight"] == 1000
    at = s.report("eve", "p2", "other")  # 6.0: exactly the threshold, which hides
    item = s.item("p2")
    assert (item["score"], item["auto_hide_due_at_seq"]) == (6000, at)
    assert item["auto_hide_score"] == 6000


def test_a_decision_keeps_each_reporters_cooldown_under_its_own_key(engine: sa.Engine) -> None:
    s = Story(engine)
    s.report("bob", "p1", "spam")
    s.report("cat", "p1", "harassment")
    decided = s.later(hours=1).decide("mod", "p1", "dismiss")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT community, target_kind, target, reporter, reason, outcome, resolved_seq"
                " FROM moderation_cooldowns ORDER BY reporter"
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (C, "post", "p1", "bob", "spam", "rejected", decided),
        (C, "post", "p1", "cat", "harassment", "rejected", decided),
    ]
    # A report reads its cooldown by the same key, in the table's column order.
    report = ContentReported(
        id=uuid.uuid4(),
        community=C,
        actor="bob",
        occurred_at=s.now,
        report="q9",
        target="p1",
        target_kind="post",
        target_author="ann",
        reason="spam",
    )
    wanted = ModerationQueue().reads([Delivered(1, report)])
    assert list(wanted["moderation_cooldowns"]) == [(C, "post", "p1", "bob", "spam")]


def test_the_log_says_who_wrote_a_post_not_its_reporters(engine: sa.Engine) -> None:
    s = Story(engine)
    s.emit(PostCreated, "ann", post="p1", title="Hello")
    # Bob names himself as the author, ann names someone else: neither claim counts.
    bob = s.report("bob", "p1", author="bob")
    ann = s.later(minutes=1).report("ann", "p1", author="zed")
    assert s.item("p1")["target_author"] == "ann"
    assert [s.report_row(seq)["target_author"] for seq in (bob, ann)] == ["ann", "ann"]
    s.later(hours=1).decide("mod", "p1", "dismiss")
    # Ann reported her own post: scored, but never counted towards her accuracy; bob's counts.
    assert (s.reporter("bob")["disagreed"], s.reporter("ann")["disagreed"]) == (1, 0)
    assert s.report_row(ann)["status"] == "disagreed"

    # Reported after its deletion: ann's report on her own post counts nowhere, bob's does.
    s.later(hours=1).delete("p1")
    late = s.later(hours=1).report("ann", "p1", author="bob")
    s.later(minutes=1).report("bob", "p1", author="bob")
    assert s.report_row(late)["status"] == "ignored"
    assert (s.reporter("ann")["ignored"], s.reporter("bob")["ignored"]) == (0, 1)

    # A member is their own author, whatever the report says.
    s.later(minutes=1).emit(
        ContentReported,
        "bob",
        report="m1",
        target="troll",
        target_kind="member",
        target_author="bob",
        reason="harassment",
    )
    assert s.item("troll", "member")["target_author"] == "troll"


def test_without_its_creation_in_the_log_the_first_report_names_the_author(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    s.report("bob", "p9", author="ann")
    ann = s.later(minutes=1).report("ann", "p9", author="bob")  # a later claim changes nothing
    assert (s.item("p9")["target_author"], s.report_row(ann)["target_author"]) == ("ann", "ann")
    s.later(hours=1).decide("mod", "p9", "keep")
    assert (s.reporter("bob")["disagreed"], s.reporter("ann")["disagreed"]) == (1, 0)


def canonical(engine: sa.Engine, generation: int = 1) -> dict[str, list[tuple[Any, ...]]]:
    """Every moderation table, rows in key order, values in one form for both databases."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            value = value.astimezone(UTC) if value.tzinfo else value
            return value.strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, bool):
            return int(value)
        return value

    out: dict[str, list[tuple[Any, ...]]] = {}
    tables = ModerationQueue().define_tables(sa.MetaData(), TableNamer("moderation", generation))
    with engine.connect() as conn:
        for logical, table in tables.items():
            rows = conn.execute(sa.select(table).order_by(*table.primary_key.columns)).all()
            out[logical] = [tuple(plain(v) for v in row) for row in rows]
    return out


def test_replaying_a_story_in_other_batches_gives_identical_tables(
    engine: sa.Engine, tmp_path: Path
) -> None:
    s = Story(engine)
    rng = random.Random(7)
    s.trusted("tom", "tia")
    reporters = ["tom", "tia", "bob", "cat"]
    for _ in range(60):
        s.later(minutes=rng.randrange(1, 900))
        target = f"p{rng.randrange(6)}"
        match rng.randrange(7):
            case 0 | 1 | 2:
                s.report(rng.choice(reporters), target, rng.choice(["spam", "illegal", "other"]))
            case 3:
                s.decide("mod", target, rng.choice(["keep", "remove", "dismiss", "hide"]))
            case 4:
                s.edit(target)
            case 5:
                s.auto_hide(target)
            case _:
                s.delete(target)
    live = canonical(engine)
    assert live["moderation_queue"] and live["moderation_log"]

    replay = create_engine(f"sqlite:///{tmp_path / 'replay.db'}")
    try:
        store = ProjectionStore(replay, ModerationQueue())
        store.ensure(1)
        checkpoint = 0
        while checkpoint < len(s.messages):
            batch = s.messages[checkpoint : checkpoint + rng.randrange(1, 12)]
            checkpoint = store.apply(1, 0, checkpoint, batch).last_seq
        assert canonical(replay) == live
        if engine.dialect.name == "sqlite":  # same database kind: byte-identical
            live_dump = {k: v for k, v in dump(engine).items() if k.startswith("moderation_")}
            replay_dump = {k: v for k, v in dump(replay).items() if k.startswith("moderation_")}
            assert replay_dump == live_dump
    finally:
        replay.dispose()


def test_a_moderator_changing_their_mind_changes_the_status_but_not_the_reports(
    engine: sa.Engine,
) -> None:
    s = Story(engine)
    first = s.report("bob", "p1")
    s.later(hours=1).decide("mod", "p1", "keep")
    s.later(hours=1).decide("lead", "p1", "remove")
    item = s.item("p1")
    assert (item["status"], item["decision"], item["decided_by"]) == ("approved", "remove", "lead")
    assert (item["score"], item["round"], item["resolution_seconds"]) == (0, 1, 3600)
    assert s.report_row(first)["status"] == "disagreed"
    assert (s.reporter("bob")["agreed"], s.reporter("bob")["disagreed"]) == (0, 1)
    assert s.member("ann")["sanctions"] == 1
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT action, reports_resolved FROM moderation_log ORDER BY seq")
        ).all()
        days = q.resolution_by_day(conn, C, DAY1, DAY1)
    assert [tuple(r) for r in rows] == [("keep", 1), ("remove", 0)]
    assert [d.resolved for d in days] == [1]
