"""Reputation rules as a community manager would tell them, folded through the real store.

Each scenario publishes events through the codec into ``ProjectionStore.apply`` (a SQLite file
here; ``tests/integration/test_reputation.py`` replays the same scenarios on PostgreSQL) and reads
the projection's tables back. ``Community`` is the small vocabulary the scenarios are told in.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from events import (
    CODEC,
    AnswerAccepted,
    Event,
    MemberJoined,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    ReplyDeleted,
    derived_event_id,
    subject_of,
)
from events.fields import Decision, ReactionKind
from projections.database import create_engine
from projections.reputation import (
    DEFAULT,
    FOLD_REVISION,
    RULE_SETS,
    STACKEXCHANGE,
    ReactionRule,
    Reputation,
    RuleSet,
    StackExchangeReputation,
    Standing,
    Tables,
    TrustLevel,
    fingerprint,
    projection_for,
    trust_level,
)
from projections.reputation.rules import points_table, trust_table
from projections.store import FoldPolicy, ProjectionStore, RawMessage

T0 = datetime(2014, 1, 21, 9, 0, tzinfo=UTC)


class Community:
    """One community's history, told event by event and folded as it is told."""

    _ids = itertools.count()

    def __init__(self, url: str, rules: RuleSet = STACKEXCHANGE, name: str = "beer") -> None:
        self.engine = create_engine(url)
        self.rules = rules
        self.projection = projection_for(rules)()
        self.store = ProjectionStore(self.engine, self.projection)
        self.store.ensure(1)
        self.t = Tables.of(self.projection.name)
        self.name = name
        self.now = T0
        self.seq = 0
        self.content: dict[str, tuple[str, str, str | None]] = {}  # id -> (kind, author, post)
        self.accepted: dict[str, str] = {}

    # -- telling ---------------------------------------------------------------------------

    def on(self, when: str) -> Community:
        """Move the clock to ``when`` (ISO 8601, UTC)."""
        self.now = datetime.fromisoformat(when).replace(tzinfo=UTC)
        return self

    def publish(self, cls: type[Event], actor: str, **fields: Any) -> Event:
        event = cls(
            id=derived_event_id("reputation-test", str(next(self._ids))),
            community=self.name,
            actor=actor,
            occurred_at=self.now,
            **fields,
        )
        self.now += timedelta(seconds=1)
        self.seq += 1
        message = RawMessage(self.seq, subject_of(event), CODEC.encode(event), self.seq)
        self.store.apply(1, 0, self.seq - 1, [message], FoldPolicy.PAUSE)
        return event

    def joins(self, *members: str) -> None:
        for member in members:
            self.publish(MemberJoined, member, member=member)

    def asks(self, member: str, post: str) -> str:
        self.publish(PostCreated, member, post=post, title=f"Question {post}")
        self.content[post] = ("post", member, None)
        return post

    def answers(self, member: str, post: str, reply: str) -> str:
        asker = self.content[post][1]
        self.publish(ReplyCreated, member, reply=reply, post=post, post_author=asker)
        self.content[reply] = ("reply", member, post)
        return reply

    def _target(self, target: str) -> dict[str, Any]:
        kind, author, post = self.content[target]
        return {"target": target, "target_kind": kind, "target_author": author, "post": post}

    def reacts(
        self, voter: str, target: str, kind: ReactionKind, times: int = 1, anonymous: bool = False
    ) -> None:
        for _ in range(times):
            self.publish(
                ReactionAdded, voter, kind=kind, anonymous=anonymous, **self._target(target)
            )

    def upvote(self, voters: list[str] | str, target: str) -> None:
        for voter in [voters] if isinstance(voters, str) else voters:
            self.reacts(voter, target, "upvote")

    def downvote(self, voters: list[str] | str, target: str) -> None:
        for voter in [voters] if isinstance(voters, str) else voters:
            self.reacts(voter, target, "downvote")

    def withdraws(self, voter: str, target: str, kind: ReactionKind = "upvote") -> None:
        self.publish(ReactionRemoved, voter, kind=kind, **self._target(target))

    def accepts(self, reply: str, by: str | None = None) -> None:
        _, answerer, post = self.content[reply]
        assert post is not None
        asker = self.content[post][1]
        self.publish(
            AnswerAccepted,
            by or asker,
            post=post,
            post_author=asker,
            reply=reply,
            reply_author=answerer,
        )

    def deletes(self, target: str, by: str | None = None) -> None:
        kind, author, post = self.content[target]
        if kind == "post":
            self.publish(PostDeleted, by or author, post=target, author=author)
        else:
            assert post is not None
            self.publish(ReplyDeleted, by or author, reply=target, post=post, author=author)

    def decides(
        self,
        moderator: str,
        target: str,
        decision: Decision,
        until: datetime | None = None,
    ) -> None:
        if target in self.content:
            kind, author, _ = self.content[target]
        else:
            kind, author = "member", target
        self.publish(
            ModerationDecided,
            moderator,
            target=target,
            target_kind=kind,
            target_author=author,
            decision=decision,
            until=until,
        )

    # -- reading -----------------------------------------------------------------------------

    def has_row(self, member: str) -> bool:
        table = self.store.generation(1).tables[self.t.members]
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(table.c.member).where(
                    table.c.community == self.name, table.c.member == member
                )
            ).first()
        return found is not None

    def member(self, member: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            table = self.store.generation(1).tables[self.t.members]
            row = conn.execute(
                sa.select(table).where(table.c.community == self.name, table.c.member == member)
            ).mappings()
            found = row.first()
        assert found is not None, f"{member} has no reputation row"
        return dict(found)

    def score(self, member: str) -> int:
        return int(self.member(member)["score"])

    def level(self, member: str) -> int:
        return int(self.member(member)["trust_level"])

    def ledger(self, member: str) -> list[tuple[str, int, int, int]]:
        """Why is my score X? (rule, requested, delta, balance) in order: one query."""
        table = self.store.generation(1).tables[self.t.ledger]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.rule, table.c.requested, table.c.delta, table.c.balance)
                .where(table.c.community == self.name, table.c.member == member)
                .order_by(table.c.seq, table.c.n)
            ).all()
        return [(r.rule, int(r.requested), int(r.delta), int(r.balance)) for r in rows]

    def trust_history(self, member: str) -> list[tuple[int, int]]:
        table = self.store.generation(1).tables[self.t.trust]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.from_level, table.c.to_level)
                .where(table.c.community == self.name, table.c.member == member)
                .order_by(table.c.seq)
            ).all()
        return [(int(a), int(b)) for a, b in rows]

    def check_ledger(self) -> None:
        """Every member's score is the sum of their ledger, and each balance follows."""
        members = self.store.generation(1).tables[self.t.members]
        with self.engine.connect() as conn:
            names = conn.execute(sa.select(members.c.member)).scalars().all()
        for name in names:
            total = 0
            for rule, _, delta, balance in self.ledger(name):
                total += delta
                assert balance == total, (name, rule)
                assert balance >= self.rules.floor
            assert self.score(name) == total, name

    def close(self) -> None:
        self.check_ledger()
        self.engine.dispose()


Town = Callable[..., Community]
"""Makes a Community on the test's database: ``town()`` (Stack Exchange rules) or
``town(DEFAULT)``."""


@pytest.fixture
def town(tmp_path: Path) -> Any:
    made: list[Community] = []

    def make(rules: RuleSet = STACKEXCHANGE) -> Community:
        community = Community(f"sqlite:///{tmp_path / rules.name}.db", rules)
        made.append(community)
        return community

    yield make
    for community in made:
        community.close()


# -- Stack Exchange rules ---------------------------------------------------------------------


def test_an_answer_upvoted_25_times_in_one_day_earns_200_and_the_accept_on_top_still_counts(
    town: Town,
) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(25)]
    beer.joins("asker", "ale", *voters)
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote(voters, "a1")
    assert beer.score("ale") == 1 + 200
    capped = [row for row in beer.ledger("ale") if row[0] == "upvote.reply" and row[2] == 0]
    assert len(capped) == 5  # the last five votes are in the ledger, worth nothing today
    beer.accepts("a1")
    assert beer.score("ale") == 1 + 200 + 15
    assert beer.score("asker") == 1 + 2


def test_a_question_upvote_earns_5_and_an_answer_upvote_earns_10(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "voter")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote("voter", "q1")
    beer.upvote("voter", "a1")
    assert beer.score("asker") == 1 + 5
    assert beer.score("ale") == 1 + 10
    assert beer.score("voter") == 1  # voting up is free


def test_everybody_starts_at_1_and_the_ledger_says_so(town: Town) -> None:
    beer = town()
    beer.joins("newbie")
    assert beer.score("newbie") == 1
    assert beer.ledger("newbie") == [("start", 1, 1, 1)]


def test_a_self_upvote_and_a_self_accept_earn_nothing(town: Town) -> None:
    beer = town()
    beer.joins("solo")
    beer.asks("solo", "q1")
    beer.answers("solo", "q1", "a1")
    beer.upvote("solo", "q1")
    beer.upvote("solo", "a1")
    beer.downvote("solo", "a1")
    beer.accepts("a1")
    assert beer.score("solo") == 1
    assert beer.ledger("solo") == [("start", 1, 1, 1)]


def test_voting_the_same_way_twice_counts_once(town: Town) -> None:
    beer = town()
    beer.joins("asker", "voter")
    beer.asks("asker", "q1")
    beer.reacts("voter", "q1", "upvote", times=3)
    assert beer.score("asker") == 1 + 5


def test_downvoting_an_answer_costs_the_voter_1_and_downvoting_a_question_is_free(
    town: Town,
) -> None:
    beer = town()
    beer.joins("asker", "ale", "critic", "fan")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("critic", "q1", "c1")
    for target in ("q1", "a1", "c1"):
        beer.upvote("fan", target)  # asker 6, ale 11, critic 11
    beer.downvote("critic", "a1")
    beer.downvote("critic", "q1")
    assert (beer.score("ale"), beer.score("asker")) == (11 - 2, 6 - 2)
    assert beer.score("critic") == 11 - 1  # only the answer downvote costs
    assert beer.ledger("critic")[-1] == ("downvote.reply.voter", -1, -1, 10)
    beer.withdraws("critic", "a1", "downvote")
    assert (beer.score("ale"), beer.score("critic")) == (11, 11)  # both given back


def test_an_imported_vote_without_a_voter_moves_the_authors_points_and_costs_nobody(
    town: Town,
) -> None:
    """A dump's up/down votes name no voter: the importer marks them anonymous."""
    beer = town()
    beer.joins("asker", "ale")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.reacts("anon-1", "a1", "upvote", anonymous=True)
    beer.reacts("anon-2", "a1", "downvote", anonymous=True)
    assert beer.score("ale") == 1 + 10 - 2
    assert not beer.has_row("anon-1") and not beer.has_row("anon-2")  # nobody paid the -1
    assert beer.member("ale")["reactions_received"] == 1


def test_reputation_never_falls_below_1_and_losses_at_the_floor_are_not_owed(
    town: Town,
) -> None:
    beer = town()
    beer.joins("newbie", "v1", "v2", "v3")
    beer.asks("newbie", "q1")
    beer.downvote(["v1", "v2", "v3"], "q1")
    assert beer.score("newbie") == 1
    assert [r[2] for r in beer.ledger("newbie")] == [1, 0, 0, 0]
    beer.asks("newbie", "q2")
    beer.upvote("v1", "q2")
    assert beer.score("newbie") == 1 + 5  # the earlier downvotes are not paid back first


def test_deleting_an_upvoted_answer_takes_its_points_back(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "v1", "v2")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("ale", "q1", "a2")
    beer.upvote(["v1", "v2"], "a1")
    beer.upvote("v1", "a2")
    beer.accepts("a1")
    assert beer.score("ale") == 1 + 30 + 15
    beer.deletes("a1")
    assert beer.score("ale") == 1 + 10  # only a2's upvote is left
    assert beer.ledger("ale")[-1] == ("reversal.reply.deleted", -35, -35, 11)
    beer.upvote("v2", "a1")  # votes on deleted content earn nothing
    beer.withdraws("v1", "a1")  # and withdrawing one takes nothing twice
    assert beer.score("ale") == 11


def test_deleting_a_question_takes_back_its_votes_and_its_answers_points(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "bob", "v1", "v2")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("bob", "q1", "b1")
    beer.upvote("v1", "q1")
    beer.upvote(["v1", "v2"], "a1")
    beer.downvote("v2", "b1")
    beer.accepts("a1")
    assert (beer.score("asker"), beer.score("ale"), beer.score("bob")) == (8, 36, 1)
    assert beer.score("v2") == 0 + 1  # 1, -1 for downvoting an answer (at the floor: 1)
    beer.deletes("q1", by="mod")
    # The question goes with its answers: every point earned on any of them is taken back.
    assert (beer.score("asker"), beer.score("ale"), beer.score("bob")) == (1, 1, 1)
    assert beer.ledger("ale")[-1] == ("reversal.post.deleted", -35, -35, 1)
    assert beer.ledger("asker")[-2:] == [
        ("reversal.post.deleted", -5, -5, 3),  # the question's upvote
        ("reversal.post.deleted", -2, -2, 1),  # the bonus for accepting a1
    ]
    beer.upvote("asker", "a1")  # voting on a deleted question's answers earns nothing
    beer.accepts("b1")
    beer.withdraws("v1", "a1")  # and withdrawing a vote takes nothing twice
    assert (beer.score("asker"), beer.score("ale"), beer.score("bob")) == (1, 1, 1)
    beer.check_ledger()


def test_a_deleted_answer_refunds_its_downvoters(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "v1", "v2")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote(["v1", "v2"], "q1")  # v1 and v2 reach 1 + 0; the asker 11
    beer.upvote("asker", "a1")
    beer.downvote(["v1", "v2"], "a1")
    assert beer.ledger("v1")[-1] == ("downvote.reply.voter", -1, 0, 1)  # at the floor already
    beer.upvote("ale", "q1")
    beer.downvote("asker", "a1")
    assert beer.score("asker") == 1 + 15 - 1
    beer.deletes("a1", by="ale")
    assert beer.score("asker") == 1 + 15  # the downvote's -1 comes back
    assert beer.ledger("asker")[-1] == ("reversal.reply.deleted", 1, 1, 16)
    assert beer.score("v1") == 1  # v1 paid nothing (the floor), so nothing comes back
    assert beer.score("ale") == 1
    beer.withdraws("asker", "a1", "downvote")  # the refund is not paid twice
    assert beer.score("asker") == 16
    beer.check_ledger()


def test_deleting_a_question_refunds_a_downvoter_who_paid_on_an_answer_at_the_floor(
    town: Town,
) -> None:
    beer = town()
    beer.joins("asker", "ale", "v1")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.asks("v1", "q2")
    beer.upvote("asker", "q2")  # v1: 1 + 5
    beer.downvote("v1", "a1")
    # Ale is at the floor and loses nothing; only the voter's cost is held on the answer.
    assert beer.ledger("ale")[-1] == ("downvote.reply", -2, 0, 1)
    assert beer.ledger("v1")[-1] == ("downvote.reply.voter", -1, -1, 5)
    beer.deletes("q1", by="mod")
    assert beer.score("v1") == 6  # the 1 comes back with the question
    assert beer.ledger("v1")[-1] == ("reversal.post.deleted", 1, 1, 6)
    assert beer.score("ale") == 1
    beer.withdraws("v1", "a1", "downvote")  # and is not paid twice
    assert beer.score("v1") == 6


def test_an_answer_voted_on_without_its_question_named_still_goes_with_the_question(
    town: Town,
) -> None:
    beer = town()
    beer.joins("asker", "ale", "v1", "v2")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    # A client that leaves out `post`: the question cannot list the answer yet...
    target = {"target": "a1", "target_kind": "reply", "target_author": "ale", "post": None}
    beer.publish(ReactionAdded, "v1", kind="upvote", **target)
    beer.upvote("v2", "a1")  # ...until a vote that names it
    assert beer.score("ale") == 21
    beer.deletes("q1")
    assert beer.score("ale") == 1
    beer.check_ledger()


def test_deleting_the_accepted_answer_takes_the_askers_bonus_back(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.accepts("a1")
    assert (beer.score("asker"), beer.score("ale")) == (3, 16)
    beer.deletes("a1")
    assert (beer.score("asker"), beer.score("ale")) == (1, 1)
    assert beer.ledger("asker")[-1] == ("reversal.reply.deleted", -2, -2, 1)
    beer.answers("ale", "q1", "a2")
    beer.accepts("a2")  # a new accept after the accepted answer was deleted pays both again
    assert (beer.score("asker"), beer.score("ale")) == (3, 16)


def test_a_reversal_is_cut_short_at_the_floor(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", *[f"v{i}" for i in range(6)])
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("ale", "q1", "a2")
    beer.upvote("v0", "a1")  # 11
    beer.downvote(["v1", "v2", "v3", "v4", "v5"], "a2")  # 11 - 10 = 1
    assert beer.score("ale") == 1
    beer.deletes("a1")  # would take 10, but ale has nothing above the floor
    assert beer.score("ale") == 1
    assert beer.ledger("ale")[-1] == ("reversal.reply.deleted", -10, 0, 1)


def test_withdrawing_an_upvote_takes_back_its_10_and_gives_the_day_its_room_back(
    town: Town,
) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(21)]
    beer.joins("asker", "ale", *voters)
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote(voters[:20], "a1")
    assert beer.score("ale") == 201
    beer.withdraws("v0", "a1")
    assert beer.score("ale") == 191
    beer.upvote("v20", "a1")  # the day has room again
    assert beer.score("ale") == 201


def test_the_cap_is_per_utc_day_of_event_time(town: Town) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(22)]
    beer.joins("asker", "ale", *voters)
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.on("2014-02-01T23:50:00")
    beer.upvote(voters[:21], "a1")
    assert beer.score("ale") == 201
    beer.on("2014-02-02T00:00:00")
    beer.upvote("v21", "a1")
    assert beer.score("ale") == 211
    beer.on("2014-02-01T23:59:00")  # a late event of the capped day: still capped
    beer.answers("ale", "q1", "a2")
    beer.upvote("v0", "a2")
    assert beer.score("ale") == 211


def test_a_downvote_on_a_capped_day_lets_a_later_upvote_earn_back_to_the_cap(
    town: Town,
) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(22)]
    beer.joins("asker", "ale", *voters)
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("ale", "q1", "a2")
    beer.upvote(voters[:20], "a1")  # 200 counted today
    beer.downvote("v0", "a2")  # -2: 198 counted
    beer.upvote(["v20", "v21"], "a2")  # +2 then 0
    assert beer.score("ale") == 1 + 200 - 2 + 2
    assert [r[2] for r in beer.ledger("ale")][-2:] == [2, 0]


def test_the_voters_own_cost_counts_against_their_cap_on_stack_exchange(town: Town) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(21)]
    beer.joins("asker", "ale", "bob", *voters)
    beer.asks("asker", "q1")
    beer.answers("bob", "q1", "b1")
    beer.answers("ale", "q1", "a1")
    beer.downvote("ale", "b1")  # ale: -1, cut to 0 at the floor
    beer.upvote("v0", "a1")  # ale: 11
    beer.downvote("ale", "q1")  # free
    beer.withdraws("ale", "b1", "downvote")  # nothing was taken, nothing is given back
    beer.downvote("ale", "b1")  # ale: 10; today's vote count 10 - 1 = 9
    beer.upvote(voters[1:], "a1")  # 20 more: 191 of room, so the last one earns 1
    assert [r[2] for r in beer.ledger("ale")][:4] == [1, 0, 10, -1]
    assert beer.ledger("ale")[-1] == ("upvote.reply", 10, 1, 201)
    assert beer.score("ale") == 1 + 200  # the day's net, own cost included, is the cap


def test_on_default_rules_the_voters_cost_does_not_touch_their_cap(town: Town) -> None:
    agora = town(DEFAULT)
    voters = [f"v{i}" for i in range(21)]
    agora.joins("ann", "bob", *voters)
    agora.asks("bob", "t1")
    agora.asks("ann", "t2")
    agora.upvote("v0", "t2")  # ann 10
    agora.downvote("ann", "t1")  # ann 9; today's count stays 10
    agora.upvote(voters[1:], "t2")
    assert agora.score("ann") == 200 - 1


def test_a_removed_spam_post_costs_its_author_its_points_and_100(town: Town) -> None:
    beer = town()
    beer.joins("spammer", "v1", "mod")
    beer.asks("spammer", "q1")
    beer.asks("spammer", "q2")
    for voter in ("v1", "mod"):
        beer.upvote(voter, "q1")
    beer.upvote("v1", "q2")
    assert beer.score("spammer") == 16
    beer.decides("mod", "q1", "remove")
    assert beer.score("spammer") == 1  # -10 for the reversal, then -100 cut at the floor
    assert beer.ledger("spammer")[-2:] == [
        ("reversal.moderation.decided", -10, -10, 6),
        ("report_upheld.remove", -100, -5, 1),
    ]
    beer.decides("mod", "q2", "dismiss")
    assert beer.member("spammer")["reports_upheld"] == 1


def test_a_second_accept_moves_the_15_but_the_asker_is_paid_once(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "bob")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.answers("bob", "q1", "b1")
    beer.accepts("a1")
    beer.accepts("a1")  # the same accept again: nothing
    beer.accepts("b1")
    assert beer.score("asker") == 1 + 2
    assert beer.score("bob") == 1 + 15
    assert beer.score("ale") == 1
    assert beer.ledger("ale")[-1] == ("accept.moved", -15, -15, 1)
    beer.deletes("a1")  # the answer no longer accepted: nothing more to take
    assert (beer.score("asker"), beer.score("ale")) == (3, 1)
    beer.deletes("b1")  # the accepted one: the asker's bonus followed the accept to it
    assert (beer.score("asker"), beer.score("bob")) == (1, 1)
    beer.check_ledger()


def test_staff_accepting_an_answer_pays_the_answerer_only(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "mod")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.accepts("a1", by="mod")
    assert (beer.score("ale"), beer.score("asker"), beer.score("mod")) == (16, 1, 1)


def test_privileges_follow_reputation_on_stack_exchange(town: Town) -> None:
    beer = town()
    voters = [f"v{i}" for i in range(13)]
    beer.joins("asker", "ale", *voters)
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote("v0", "a1")
    assert beer.level("ale") == 0  # 11 < 15
    beer.upvote("v1", "a1")
    assert beer.level("ale") == 1  # 21: vote up
    beer.upvote(voters[2:13], "a1")
    assert (beer.score("ale"), beer.level("ale")) == (131, 2)  # vote down
    assert beer.trust_history("ale") == [(0, 1), (1, 2)]
    beer.deletes("a1")
    assert beer.level("ale") == 0
    assert beer.trust_history("ale")[-1] == (2, 0)


def test_a_suspended_member_is_at_level_0_until_the_suspension_ends(town: Town) -> None:
    beer = town()
    beer.joins("asker", "ale", "v1", "v2", "mod")
    beer.asks("asker", "q1")
    beer.answers("ale", "q1", "a1")
    beer.upvote(["v1", "v2"], "a1")
    assert beer.level("ale") == 1
    beer.decides("mod", "ale", "suspend", until=datetime(2014, 3, 1, tzinfo=UTC))
    assert beer.level("ale") == 0
    beer.on("2014-03-02T00:00:00")
    beer.asks("ale", "q2")  # the first event after the suspension
    assert beer.level("ale") == 1


# -- Agora's default rules --------------------------------------------------------------------


def test_default_likes_earn_no_points_but_count_towards_trust(town: Town) -> None:
    agora = town(DEFAULT)
    agora.joins("ann", "bob")
    agora.asks("ann", "t1")
    agora.reacts("bob", "t1", "like")
    agora.reacts("bob", "t1", "thanks")
    assert agora.score("ann") == 0
    assert agora.member("ann")["reactions_received"] == 2
    assert agora.member("bob")["reactions_given"] == 2
    agora.withdraws("bob", "t1", "like")
    assert agora.member("ann")["reactions_received"] == 1


def test_default_a_post_upvote_is_worth_as_much_as_a_reply_upvote(town: Town) -> None:
    agora = town(DEFAULT)
    agora.joins("ann", "bob", "cat")
    agora.asks("ann", "t1")
    agora.answers("bob", "t1", "r1")
    agora.upvote("cat", "t1")
    agora.upvote("cat", "r1")
    assert (agora.score("ann"), agora.score("bob")) == (10, 10)


def test_default_every_downvote_costs_the_voter_and_nobody_goes_below_0(town: Town) -> None:
    agora = town(DEFAULT)
    agora.joins("ann", "bob", "cat")
    agora.asks("ann", "t1")
    agora.answers("bob", "t1", "r1")
    agora.upvote("bob", "t1")  # ann 10
    agora.upvote("ann", "r1")  # bob 10
    agora.downvote("cat", "t1")
    agora.downvote("cat", "r1")
    assert (agora.score("ann"), agora.score("bob"), agora.score("cat")) == (8, 8, 0)
    assert agora.ledger("cat")[-1] == ("downvote.reply.voter", -1, 0, 0)


def test_default_deleting_a_post_takes_back_its_and_its_replies_points_and_refunds_voters(
    town: Town,
) -> None:
    agora = town(DEFAULT)
    agora.joins("ann", "bob", "cat")
    agora.asks("ann", "t1")
    agora.answers("bob", "t1", "r1")
    agora.asks("cat", "t2")
    agora.upvote("ann", "t2")  # cat 10
    agora.upvote("cat", "t1")  # ann 10
    agora.upvote("ann", "r1")  # bob 10
    agora.downvote("cat", "r1")  # bob 8, cat 9
    assert (agora.score("ann"), agora.score("bob"), agora.score("cat")) == (10, 8, 9)
    agora.deletes("t1", by="ann")
    # Everything earned or paid on t1 and on its reply comes back; cat's t2 is untouched.
    assert (agora.score("ann"), agora.score("bob"), agora.score("cat")) == (0, 0, 10)
    assert agora.ledger("cat")[-1] == ("reversal.post.deleted", 1, 1, 10)
    assert agora.ledger("bob")[-1][1:] == (-8, -8, 0)
    agora.upvote("cat", "r1")  # a deleted post's reply earns nothing more
    agora.withdraws("cat", "r1", "downvote")  # and a withdrawal takes nothing twice
    assert (agora.score("ann"), agora.score("bob"), agora.score("cat")) == (0, 0, 10)


def test_default_upheld_reports_cost_more_the_harsher_the_decision(town: Town) -> None:
    agora = town(DEFAULT)
    voters = [f"v{i}" for i in range(20)]
    agora.joins("troll", "mod", *voters)
    agora.asks("troll", "t1")
    agora.asks("troll", "t2")
    agora.upvote(voters, "t2")  # 200
    agora.decides("mod", "t1", "hide")
    agora.decides("mod", "troll", "warn")
    assert agora.score("troll") == 200 - 10 - 10
    agora.decides("mod", "t2", "remove")
    assert agora.score("troll") == 0  # t2's 200 taken back, then -20 cut at 0
    agora.decides("mod", "troll", "ban")
    assert agora.member("troll")["banned"]
    assert agora.member("troll")["reports_upheld"] == 4
    assert agora.level("troll") == 0


def test_default_trust_grows_with_reputation_and_behaviour(town: Town) -> None:
    agora = town(DEFAULT)
    agora.joins("ann", "bob")
    assert agora.level("ann") == 0
    agora.asks("ann", "t0")
    assert agora.level("ann") == 1  # took part once
    for day in range(1, 10):
        agora.on(f"2014-02-{day:02d}T10:00:00")
        agora.answers("ann", "t0", f"r{day}")
    agora.reacts("ann", "t0", "like")  # ann's own post: does not count as given
    agora.asks("bob", "b1")
    agora.reacts("ann", "b1", "like")
    agora.upvote("bob", "r1")  # +10, and a reaction received
    assert agora.level("ann") == 1  # 10 < 15
    agora.upvote("bob", "r2")
    assert agora.level("ann") == 2
    assert agora.trust_history("ann") == [(0, 1), (1, 2)]
    assert agora.member("ann")["days_active"] == 10


def test_a_trust_level_is_reached_at_exactly_its_minimums() -> None:
    """Each rung's documented minimums, said literally: met exactly, the rung is reached; one
    short on any of them (or one report upheld too many), the member stays a rung below."""
    at = datetime(2014, 3, 1, tzinfo=UTC)
    rungs = {
        # (rule set, level): the exact minimums, as docs/reputation.md gives them
        ("default", 1): Standing(reputation=0, contributions=1, days_active=1),
        ("default", 2): Standing(
            reputation=15, contributions=10, days_active=5, reactions_given=1, reactions_received=1
        ),
        ("default", 3): Standing(
            reputation=500,
            contributions=50,
            days_active=50,
            reactions_given=30,
            reactions_received=20,
            reports_upheld=5,
        ),
        ("default", 4): Standing(
            reputation=2000,
            contributions=200,
            days_active=100,
            reactions_given=100,
            reactions_received=100,
            reports_upheld=2,
        ),
        ("stackexchange", 1): Standing(reputation=15),
        ("stackexchange", 2): Standing(reputation=125),
        ("stackexchange", 3): Standing(reputation=2000),
        ("stackexchange", 4): Standing(reputation=10000),
    }
    for (name, level), exact in rungs.items():
        rules = RULE_SETS[name]
        assert trust_level(rules, exact, at) == level, (name, level)
        counters = ("reputation", "contributions", "days_active")
        counters += ("reactions_given", "reactions_received")
        for counter in counters:
            value = getattr(exact, counter)
            if value > 0:
                short = dataclasses.replace(exact, **{counter: value - 1})
                assert trust_level(rules, short, at) == level - 1, (name, level, counter)
        if level >= 3 and name == "default":
            upheld = dataclasses.replace(exact, reports_upheld=exact.reports_upheld + 1)
            assert trust_level(rules, upheld, at) == level - 1, (name, level, "upheld")
    # A higher rung does not count while a lower one is missed.
    skipped = Standing(reputation=2000, contributions=200, days_active=4, reactions_given=100)
    assert trust_level(DEFAULT, dataclasses.replace(skipped, reactions_received=100), at) == 1
    ladder = (
        TrustLevel(level=1, title="one", min_reputation=15),
        TrustLevel(level=2, title="two", min_contributions=1),
    )
    uneven = msgspec.structs.replace(STACKEXCHANGE, trust_levels=ladder)
    assert trust_level(uneven, Standing(reputation=1, contributions=1), at) == 0
    # A suspension holds up to, not including, its end; a ban holds for good.
    top = rungs[("stackexchange", 4)]
    assert trust_level(STACKEXCHANGE, dataclasses.replace(top, suspended_until=at), at) == 4
    later = at + timedelta(microseconds=1)
    assert trust_level(STACKEXCHANGE, dataclasses.replace(top, suspended_until=later), at) == 0
    assert trust_level(STACKEXCHANGE, dataclasses.replace(top, banned=True), at) == 0


# -- versions and rule sets -------------------------------------------------------------------

FINGERPRINTS = {
    # name: (version, fingerprint). A rule changed without taking a new version fails here:
    # give the rule set the next unused version, then update its line.
    "default": (1, "52e76534cc3b2aa1"),
    "stackexchange": (2, "ff5aeebe68082160"),
}


@pytest.mark.parametrize("name", sorted(RULE_SETS))
def test_a_rule_set_cannot_change_without_a_new_version(name: str) -> None:
    rules = RULE_SETS[name]
    assert (rules.version, fingerprint(rules)) == FINGERPRINTS[name]


def test_every_rule_set_has_its_own_version_name_and_tables() -> None:
    versions = [r.version for r in RULE_SETS.values()]
    assert len(set(versions)) == len(versions)
    assert (Reputation.name, Reputation.version) == ("reputation", FOLD_REVISION * 1000 + 1)
    assert (StackExchangeReputation.name, StackExchangeReputation.version) == (
        "reputation_stackexchange",
        FOLD_REVISION * 1000 + 2,
    )
    tables = set(Tables.of(Reputation.name).__slots__)
    assert tables == set(Tables.of("x").__slots__)
    assert Tables.of(Reputation.name).members == "reputation_members"


def test_a_changed_rule_set_is_a_new_projection_version() -> None:
    changed = msgspec.structs.replace(
        STACKEXCHANGE,
        version=3,
        reactions={**STACKEXCHANGE.reactions, "upvote": ReactionRule(post=10, reply=10)},
    )
    assert fingerprint(changed) != fingerprint(STACKEXCHANGE)
    projection = projection_for(changed)
    assert projection.name == StackExchangeReputation.name
    assert projection.version > StackExchangeReputation.version


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"version": 0}, "version"),
        ({"floor": 5, "initial": 1}, "floor"),
        ({"daily_vote_cap": -1}, "daily_vote_cap"),
        ({"reactions": {"downvote": ReactionRule(voter_reply=1)}}, "cost"),
        ({"report_upheld": {"dismiss": -1}}, "approving"),
        ({"report_upheld": {"ban": 5}}, "penalty"),
        ({"trust_levels": (TrustLevel(level=2, title="x"),)}, "trust_levels"),
    ],
)
def test_rule_sets_that_cannot_be_folded_are_refused(change: dict[str, Any], message: str) -> None:
    fields = {f: getattr(DEFAULT, f) for f in DEFAULT.__struct_fields__} | change
    with pytest.raises(ValueError, match=message):
        RuleSet(**fields)


def test_unlisted_reaction_kinds_move_no_points() -> None:
    assert STACKEXCHANGE.reaction("funny") == ReactionRule(capped=False)


DOC = Path(__file__).resolve().parents[2] / "docs" / "reputation.md"


def test_the_documented_tables_are_the_rule_sets() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert points_table((DEFAULT, STACKEXCHANGE)) in text
    assert trust_table(DEFAULT) in text
    assert trust_table(STACKEXCHANGE) in text
    for projection in (Reputation, StackExchangeReputation):
        assert f"`{projection.name}`" in text and str(projection.version) in text
