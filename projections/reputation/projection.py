"""The reputation projection: explainable points per member, and trust levels, from the log alone.

Every change of a member's score is one ledger row (event, sequence, rule, requested points,
points applied, balance after), so a member's score is always the sum of their ledger. The fold
knows authors from the events themselves (``target_author``, ``author``, ``post_author``...) and
reads only its own tables, each row by a key it can name from the batch (see :func:`_need`).

What the fold keeps besides members and the ledger:

* ``days``: per member and UTC day of event time, the vote-derived points counted against the
  daily cap, and whether the member did anything that day (for trust levels);
* ``reactions``: each live reaction and the points it actually moved (after cap and floor), so
  ``reaction.removed`` takes back exactly those;
* ``holdings``: per content item and member, the points the member holds from it, so a deletion or
  a moderator's removal takes them back;
* ``content``: per post or reply, whether it is deleted (no more points on it), and for a post its
  replies holding points and its accepted reply (with the answerer and the asker's bonus, so a
  move of the accept takes the first answer's points back);
* ``trust``: one row per change of a member's trust level.

A deletion reverses every holder of the item, not only its author (a downvoter's cost is
refunded), and a deleted post takes its replies with it: :meth:`ReputationProjection.reads_after`
asks for all of an item's ``holdings`` rows at once, by key prefix (see :func:`_need_after`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Final, assert_never, cast

import sqlalchemy as sa

from events.catalogue import (
    AnswerAccepted,
    AnyEvent,
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
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    ReplyDeleted,
    acting_member,
)
from events.limits import SYSTEM_ACTOR
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key, Row
from projections.columns import UtcDateTime
from projections.reputation.rules import APPROVING, DEFAULT, STACKEXCHANGE, RuleSet
from projections.reputation.trust import Standing, trust_level

FOLD_REVISION: Final = 4
"""Bump when the fold or the tables change meaning: every rule set's projection is rebuilt.

2: an anonymous reaction's placeholder voter is not a member (no row, no cost, no activity).
3: a deletion reverses every holder of the item and of a deleted post's replies; a moved accept
takes the first answerer's points back; the asker's bonus is held on the accepted reply.
4: the engine keys seen events by community and id with a content digest (a rebuild)."""

_ID = sa.String(64)


def version_of(rules: RuleSet) -> int:
    """The projection version for ``rules``: the fold's revision and the rule set's version."""
    return FOLD_REVISION * 1000 + rules.version


def projection_name(rules: RuleSet) -> str:
    """``reputation`` for the default rules, ``reputation_<name>`` for any other rule set."""
    return "reputation" if rules.name == DEFAULT.name else f"reputation_{rules.name}"


@dataclass(frozen=True, slots=True)
class Tables:
    """Logical table names of one reputation projection (prefixed by the projection's name)."""

    members: str
    ledger: str
    days: str
    reactions: str
    holdings: str
    content: str
    trust: str

    @classmethod
    def of(cls, prefix: str) -> Tables:
        """The names for projection ``prefix``."""
        return cls(
            members=f"{prefix}_members",
            ledger=f"{prefix}_ledger",
            days=f"{prefix}_days",
            reactions=f"{prefix}_reactions",
            holdings=f"{prefix}_holdings",
            content=f"{prefix}_content",
            trust=f"{prefix}_trust",
        )


class ReputationProjection(Projection):
    """Reputation and trust levels under one rule set (see :func:`projection_for`)."""

    rules: ClassVar[RuleSet]

    def __init__(self) -> None:
        self.t = Tables.of(self.name)

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """Members, ledger, per-day counts, live reactions, holdings, content state, trust log."""
        t = self.t
        members = sa.Table(
            table_name(t.members),
            metadata,
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("member", _ID, primary_key=True, comment="member id"),
            # Every NOT NULL column has a default: the engine's upsert proposes a whole row even
            # when it only updates some columns of an existing one.
            sa.Column("score", sa.BigInteger, nullable=False, default=0, comment="= sum(ledger)"),
            sa.Column(
                "trust_level",
                sa.SmallInteger,
                nullable=False,
                default=0,
                comment="trust level the rules give now (0: none, banned or suspended)",
            ),
            sa.Column(
                "contributions",
                sa.Integer,
                nullable=False,
                default=0,
                comment="posts and replies created (count)",
            ),
            sa.Column(
                "days_active",
                sa.Integer,
                nullable=False,
                default=0,
                comment="distinct UTC days with an event by the member (count)",
            ),
            sa.Column(
                "reactions_given",
                sa.Integer,
                nullable=False,
                default=0,
                comment="positive reactions given to other members, withdrawn ones subtracted",
            ),
            sa.Column(
                "reactions_received",
                sa.Integer,
                nullable=False,
                default=0,
                comment="positive reactions received from others, withdrawn ones subtracted",
            ),
            sa.Column(
                "reports_upheld",
                sa.Integer,
                nullable=False,
                default=0,
                comment="approving moderator decisions against the member or their content",
            ),
            sa.Column(
                "banned",
                sa.Boolean,
                nullable=False,
                default=False,
                comment="a ban decision was upheld against the member",
            ),
            sa.Column(
                "suspended_until",
                UtcDateTime(),
                comment="end of the latest suspension (event time), or null",
            ),
            sa.Column(
                "first_seq",
                sa.BigInteger,
                nullable=False,
                default=0,
                comment="stream sequence that created the row",
            ),
            sa.Column(
                "updated_seq",
                sa.BigInteger,
                nullable=False,
                default=0,
                comment="stream sequence of the row's last change",
            ),
            sa.Column("updated_at", UtcDateTime(), comment="event time"),
        )
        sa.Index(
            table_name(f"{t.members}_leaderboard"),
            members.c.community,
            members.c.score.desc(),
            members.c.member,
        )
        ledger = sa.Table(
            table_name(t.ledger),
            metadata,
            sa.Column("seq", sa.BigInteger, primary_key=True, comment="stream sequence"),
            sa.Column("n", sa.SmallInteger, primary_key=True, comment="row within the event"),
            sa.Column("community", _ID, nullable=False, comment="community id"),
            sa.Column("member", _ID, nullable=False, comment="member whose score moved"),
            sa.Column("event_id", sa.Uuid, nullable=False, comment="id of the event that moved it"),
            sa.Column("event_type", sa.String(32), nullable=False, comment="its type"),
            sa.Column("occurred_at", UtcDateTime(), nullable=False, comment="its time"),
            sa.Column("rule", sa.String(64), nullable=False, comment="rule applied (upvote.post)"),
            sa.Column("item_kind", sa.String(8), comment="post or reply the points are tied to"),
            sa.Column("item", _ID, comment="id of that post or reply"),
            sa.Column("requested", sa.Integer, nullable=False, comment="points the rule gives"),
            sa.Column("delta", sa.Integer, nullable=False, comment="points applied (cap, floor)"),
            sa.Column("balance", sa.BigInteger, nullable=False, comment="score after this row"),
        )
        sa.Index(
            table_name(f"{t.ledger}_member"),
            ledger.c.community,
            ledger.c.member,
            ledger.c.seq,
        )
        days = sa.Table(
            table_name(t.days),
            metadata,
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("member", _ID, primary_key=True, comment="member id"),
            sa.Column("day", sa.Date, primary_key=True, comment="UTC day of occurred_at"),
            sa.Column(
                "vote_points",
                sa.Integer,
                nullable=False,
                default=0,
                comment="points applied that day counted against the daily cap",
            ),
            sa.Column(
                "active", sa.Boolean, nullable=False, default=False, comment="member acted that day"
            ),
        )
        reactions = sa.Table(
            table_name(t.reactions),
            metadata,
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("target_kind", sa.String(8), primary_key=True, comment="post or reply"),
            sa.Column("target", _ID, primary_key=True, comment="id of the post or reply"),
            sa.Column("actor", _ID, primary_key=True, comment="member who reacted"),
            sa.Column("kind", sa.String(16), primary_key=True, comment="reaction (upvote)"),
            sa.Column("target_author", _ID, nullable=False, comment="author of the target"),
            sa.Column("day", sa.Date, nullable=False, comment="UTC day of the reaction"),
            sa.Column(
                "author_points",
                sa.Integer,
                nullable=False,
                default=0,
                comment="points it applied to the author",
            ),
            sa.Column(
                "author_counted",
                sa.Integer,
                nullable=False,
                default=0,
                comment="of those, points counted against the author's daily cap",
            ),
            sa.Column(
                "voter_points",
                sa.Integer,
                nullable=False,
                default=0,
                comment="points it applied to the voter (a cost)",
            ),
            sa.Column(
                "voter_counted",
                sa.Integer,
                nullable=False,
                default=0,
                comment="of those, points counted against the voter's daily cap",
            ),
            sa.Column(
                "seq", sa.BigInteger, nullable=False, comment="stream sequence of the reaction"
            ),
        )
        holdings = sa.Table(
            table_name(t.holdings),
            metadata,
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("item_kind", sa.String(8), primary_key=True, comment="post or reply"),
            sa.Column("item", _ID, primary_key=True, comment="id of the post or reply"),
            sa.Column("member", _ID, primary_key=True, comment="member holding the points"),
            sa.Column(
                "points",
                sa.BigInteger,
                nullable=False,
                default=0,
                comment="points held from the item, taken back if it is deleted",
            ),
        )
        content = sa.Table(
            table_name(t.content),
            metadata,
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("kind", sa.String(8), primary_key=True, comment="post or reply"),
            sa.Column("item", _ID, primary_key=True, comment="id of the post or reply"),
            sa.Column(
                "deleted",
                sa.Boolean,
                nullable=False,
                default=False,
                comment="deleted or removed: it earns no more points",
            ),
            sa.Column(
                "reversed",
                sa.Boolean,
                nullable=False,
                default=False,
                comment="the points held on it were taken back when it was deleted",
            ),
            sa.Column("deleted_seq", sa.BigInteger, comment="stream sequence of the deletion"),
            sa.Column("accepted_reply", _ID, comment="for a post: its accepted reply"),
            sa.Column("accepted_author", _ID, comment="for a post: its accepted reply's author"),
            sa.Column(
                "accept_bonus",
                sa.Integer,
                nullable=False,
                default=0,
                comment="for a post: the asker's points for accepting, held on the accepted reply",
            ),
            sa.Column(
                "replies",
                sa.Text,
                nullable=False,
                default="",
                comment="for a post: its replies holding points, space-separated",
            ),
        )
        trust = sa.Table(
            table_name(t.trust),
            metadata,
            sa.Column("seq", sa.BigInteger, primary_key=True, comment="stream sequence"),
            sa.Column("community", _ID, primary_key=True, comment="community id"),
            sa.Column("member", _ID, primary_key=True, comment="member whose level changed"),
            sa.Column(
                "event_id", sa.Uuid, nullable=False, comment="id of the event that changed it"
            ),
            sa.Column("occurred_at", UtcDateTime(), nullable=False, comment="its time"),
            sa.Column("from_level", sa.SmallInteger, nullable=False, comment="trust level before"),
            sa.Column("to_level", sa.SmallInteger, nullable=False, comment="trust level after"),
        )
        sa.Index(table_name(f"{t.trust}_member"), trust.c.community, trust.c.member, trust.c.seq)
        return {
            t.members: members,
            t.ledger: ledger,
            t.days: days,
            t.reactions: reactions,
            t.holdings: holdings,
            t.content: content,
            t.trust: trust,
        }

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        """Every row the fold may read for ``batch``: named by the events' own fields."""
        need = _Need()
        for delivered in batch:
            _need(cast(AnyEvent, delivered.event), need)
        t = self.t
        return {
            t.members: need.members,
            t.days: need.days,
            t.reactions: need.reactions,
            t.holdings: need.holdings,
            t.content: need.content,
        }

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        """The rows a deletion or a moved accept reaches: holdings by item, a post's replies."""
        return _need_after(self.t, batch, loaded)

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """Fold ``batch`` event by event, in stream order."""
        stamps: dict[Key, tuple[int, datetime]] = {}
        for delivered in batch:
            _Step(self.rules, self.t, changes, delivered, stamps).run()
        # Nothing in the fold reads when a member was last touched: written once per batch.
        for key, (seq, at) in stamps.items():
            changes.put(self.t.members, key, updated_seq=seq, updated_at=at)


@dataclass(slots=True)
class _Need:
    members: list[Key] = field(default_factory=list)
    days: list[Key] = field(default_factory=list)
    reactions: list[Key] = field(default_factory=list)
    holdings: list[Key] = field(default_factory=list)
    content: list[Key] = field(default_factory=list)


def _need(event: AnyEvent, need: _Need) -> None:
    """Add the keys of the rows folding ``event`` may read. Mirrors :class:`_Step`."""
    c = event.community
    day = event.occurred_at.date()
    actor = acting_member(event)
    if actor is not None:
        need.members.append((c, actor))
        need.days.append((c, actor, day))
    match event:
        case MemberJoined():
            need.members.append((c, event.member))
        case (
            MemberLeft()
            | PostCreated()
            | PostEdited()
            | ReplyCreated()
            | ContentReported()
            | ContentHidden()
            | ContentRestored()
        ):
            pass
        case PostDeleted():
            need.content.append((c, "post", event.post))
        case ReplyDeleted():
            need.content.append((c, "reply", event.reply))
        case ReactionAdded() | ReactionRemoved():
            need.members.append((c, event.target_author))
            need.days.append((c, event.target_author, day))
            need.reactions.append((c, event.target_kind, event.target, event.actor, event.kind))
            need.content.append((c, event.target_kind, event.target))
            if event.target_kind == "reply" and event.post is not None:
                need.content.append((c, "post", event.post))
        case AnswerAccepted():
            need.members.append((c, event.post_author))
            need.members.append((c, event.reply_author))
            need.content.append((c, "post", event.post))
            need.content.append((c, "reply", event.reply))
        case ModerationDecided():
            need.members.append((c, event.target_author))
            if event.target_kind != "member":
                need.content.append((c, event.target_kind, event.target))
        case _:
            assert_never(event)


def _need_after(
    t: Tables, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
) -> dict[str, list[Key]]:
    """The rows reached through stored rows. Mirrors :meth:`_Step._delete` and ``_accepted``.

    A deleted item's holdings are asked for whole, by the prefix (community, kind, item), and
    then the member rows of their holders; a deleted post's replies are listed on its row, or
    named by this batch's own events. A moved accept needs the first accepted reply and its
    author, stored on the post's row. The engine asks again with the rows named here loaded,
    until nothing new is named.
    """
    deleted: list[Key] = []
    accepted: list[Key] = []
    # By exact type, not `match`: this runs over the whole batch once per load round.
    for delivered in batch:
        event = delivered.event
        kind = type(event)
        if kind not in _REACHING:
            continue
        if kind is PostDeleted:
            deleted.append((event.community, "post", cast(PostDeleted, event).post))
        elif kind is ReplyDeleted:
            deleted.append((event.community, "reply", cast(ReplyDeleted, event).reply))
        elif kind is AnswerAccepted:
            accepted.append((event.community, "post", cast(AnswerAccepted, event).post))
        else:
            decided = cast(ModerationDecided, event)
            if decided.decision == "remove" and decided.target_kind != "member":
                deleted.append((event.community, decided.target_kind, decided.target))
    if not deleted and not accepted:
        return {}
    content = loaded.get(t.content, {})
    rows: list[Key] = []
    members: list[Key] = []
    for key in accepted:
        row = content.get(key)
        if row is not None and row["accepted_reply"] is not None:
            rows.append((key[0], "reply", row["accepted_reply"]))
            if row["accepted_author"] is not None:
                members.append((key[0], row["accepted_author"]))
    items = list(deleted)
    posts = {key for key in deleted if key[1] == "post"}
    if posts:
        for key in posts:
            row = content.get(key)
            if row is not None:
                items += [(key[0], "reply", reply) for reply in row["replies"].split()]
        items += _batch_replies(batch, posts)
        rows += [key for key in items if key[1] == "reply" and key not in content]
    # Every holdings row loaded is under a deleted item: nothing else reads that table by key.
    members += [(key[0], key[3]) for key, row in loaded.get(t.holdings, {}).items() if row]
    return {t.content: rows, t.holdings: items, t.members: members}


_REACHING: frozenset[type[Event]] = frozenset(
    {PostDeleted, ReplyDeleted, AnswerAccepted, ModerationDecided}
)
_NAMING_POST: frozenset[type[Event]] = frozenset({ReactionAdded, ReactionRemoved, AnswerAccepted})


def _batch_replies(batch: Sequence[Delivered], posts: set[Key]) -> list[Key]:
    """The replies this batch's events may list on one of ``posts`` (see :meth:`_Step._award`)."""
    found: list[Key] = []
    for delivered in batch:
        event = delivered.event
        if type(event) not in _NAMING_POST:
            continue
        if type(event) is AnswerAccepted:
            if (event.community, "post", event.post) in posts:
                found.append((event.community, "reply", event.reply))
            continue
        reaction = cast(ReactionAdded | ReactionRemoved, event)
        if reaction.target_kind == "reply" and (event.community, "post", reaction.post) in posts:
            found.append((event.community, "reply", reaction.target))
    return found


def _listed(names: str, name: str) -> bool:
    """Whether ``name`` is in a space-separated list (ids never contain a space)."""
    return f" {name} " in f" {names} "


def _appended(names: str, name: str) -> str:
    return f"{names} {name}" if names else name


class _Step:
    """Folding one event: its context, and the operations every rule is built from."""

    __slots__ = (
        "actor",
        "at",
        "c",
        "changes",
        "day",
        "delivered",
        "event",
        "n",
        "rules",
        "stamps",
        "t",
        "touched",
    )

    def __init__(
        self,
        rules: RuleSet,
        t: Tables,
        changes: Changes,
        delivered: Delivered,
        stamps: dict[Key, tuple[int, datetime]],
    ) -> None:
        self.rules = rules
        self.stamps = stamps
        self.t = t
        self.changes = changes
        self.delivered = delivered
        self.event = cast(AnyEvent, delivered.event)
        # The member acting; None for automation and for an anonymous reaction's placeholder.
        self.actor = acting_member(self.event)
        self.c = self.event.community
        self.at = self.event.occurred_at
        self.day: date = self.at.date()
        self.n = 0
        self.touched: dict[str, None] = {}

    # -- the event types ----------------------------------------------------------------------

    def run(self) -> None:
        """Apply the event's rules, then settle the trust level of every member it touched."""
        event = self.event
        self._activity()
        match event:
            case MemberJoined():
                self._member(event.member)
            case MemberLeft() | PostEdited() | ContentReported() | ContentHidden():
                pass
            case ContentRestored():
                pass  # restoring hidden content gives nothing back: hiding took nothing
            case PostCreated() | ReplyCreated():
                if event.actor != SYSTEM_ACTOR:
                    row = self._member(event.actor)
                    self._set(event.actor, contributions=row["contributions"] + 1)
            case PostDeleted():
                self._delete("post", event.post, self.rules.reverse_on_delete)
            case ReplyDeleted():
                self._delete("reply", event.reply, self.rules.reverse_on_delete)
            case ReactionAdded():
                self._reaction_added(event)
            case ReactionRemoved():
                self._reaction_removed(event)
            case AnswerAccepted():
                self._accepted(event)
            case ModerationDecided():
                self._decided(event)
            case _:
                assert_never(event)
        self._settle()

    def _reaction_added(self, event: ReactionAdded) -> None:
        voter, author, kind, tk = event.actor, event.target_author, event.kind, event.target_kind
        if voter in (SYSTEM_ACTOR, author) or author == SYSTEM_ACTOR:
            return  # no points for reacting to one's own content; automation does not vote
        if self._gone(tk, event.target, event.post):
            return
        key = (self.c, tk, event.target, voter, kind)
        if self.changes.peek(self.t.reactions, key) is not None:
            return  # already reacted this way: a repeat adds nothing
        rule = self.rules.reaction(kind)
        item = (tk, event.target)
        wanted = rule.post if tk == "post" else rule.reply
        author_points = self._award(
            author, wanted, f"{kind}.{tk}", item, capped=rule.capped, post=event.post
        )
        # An anonymous voter (a placeholder, not a member) pays nothing and gives nothing.
        cost = 0 if self.actor is None else rule.voter_post if tk == "post" else rule.voter_reply
        voter_capped = rule.capped and self.rules.voter_cost_counts_toward_cap
        voter_points = self._award(
            voter, cost, f"{kind}.{tk}.voter", item, capped=voter_capped, post=event.post
        )
        if kind in self.rules.positive_reactions:
            if self.actor is not None:
                given = self._member(voter)["reactions_given"]
                self._set(voter, reactions_given=given + 1)
            received = self._member(author)["reactions_received"]
            self._set(author, reactions_received=received + 1)
        self.changes.put(
            self.t.reactions,
            key,
            target_author=author,
            day=self.day,
            author_points=author_points,
            author_counted=author_points if rule.capped else 0,
            voter_points=voter_points,
            voter_counted=voter_points if voter_capped else 0,
            seq=self.delivered.seq,
        )

    def _reaction_removed(self, event: ReactionRemoved) -> None:
        voter, author, kind, tk = event.actor, event.target_author, event.kind, event.target_kind
        key = (self.c, tk, event.target, voter, kind)
        if voter in (SYSTEM_ACTOR, author) or author == SYSTEM_ACTOR:
            return
        row = self.changes.peek(self.t.reactions, key)
        if row is None or row["target_author"] != author:
            return  # nothing to withdraw (never added, withdrawn already, or another author's)
        self.changes.delete(self.t.reactions, key)
        item = (tk, event.target)
        content = self.changes.peek(self.t.content, (self.c, tk, event.target))
        # A reversed item's deletion took back what the reaction moved, the voter's cost too.
        if content is None or not content["reversed"]:
            if row["author_points"]:
                self._undo(author, row["author_points"], row["author_counted"], row["day"], item)
            if row["voter_points"]:
                self._undo(voter, row["voter_points"], row["voter_counted"], row["day"], item)
        if kind in self.rules.positive_reactions:
            if self.actor is not None:
                given = self._member(voter)["reactions_given"]
                self._set(voter, reactions_given=max(0, given - 1))
            received = self._member(author)["reactions_received"]
            self._set(author, reactions_received=max(0, received - 1))

    def _accepted(self, event: AnswerAccepted) -> None:
        asker, answerer = event.post_author, event.reply_author
        if answerer in (asker, event.actor) or SYSTEM_ACTOR in (asker, answerer):
            return  # accepting one's own answer earns nothing
        if self._gone("reply", event.reply, event.post):
            return
        post_key = (self.c, "post", event.post)
        post = self.changes.peek(self.t.content, post_key)
        previous = None if post is None else post["accepted_reply"]
        if previous == event.reply:
            return  # accepted already
        if previous is not None:
            first = self.changes.peek(self.t.content, (self.c, "reply", previous))
            if first is not None and first["deleted"]:
                previous = None  # deleting the accepted reply took the accept with it
        item = ("reply", event.reply)
        bonus = 0
        if previous is not None:
            assert post is not None
            # A move: the first answerer's points go; the asker's bonus follows the accept.
            answered = post["accepted_author"]
            points = self.rules.accepted_answer
            if answered is not None and points:
                self._take_back(answered, points, "accept.moved", ("reply", previous))
            bonus = int(post["accept_bonus"])
            if bonus:
                self.changes.add(self.t.holdings, (self.c, "reply", previous, asker), points=-bonus)
        self._award(answerer, self.rules.accepted_answer, "accept.answer", item, post=event.post)
        if previous is None and event.actor == asker:
            # The asker's bonus is for closing the question: once per post, kept on a move.
            bonus = self._award(
                asker, self.rules.accepted_answer_accepter, "accept.accepter", item, post=event.post
            )
        elif bonus:
            self.changes.add(self.t.holdings, (self.c, *item, asker), points=bonus)
            self._list_reply(event.reply, event.post)
        self.changes.put(
            self.t.content,
            post_key,
            accepted_reply=event.reply,
            accepted_author=answerer,
            accept_bonus=bonus,
        )

    def _decided(self, event: ModerationDecided) -> None:
        author, kind = event.target_author, event.target_kind
        if event.decision not in APPROVING or author == SYSTEM_ACTOR:
            return
        if event.decision == "remove" and kind != "member":
            self._delete(kind, event.target, self.rules.reverse_on_remove)
        if event.actor == author:
            return  # a moderator deciding on their own content: no penalty, no record
        penalty = self.rules.report_upheld.get(event.decision, 0)
        self._award(author, penalty, f"report_upheld.{event.decision}", None)
        row = self._member(author)
        self._set(author, reports_upheld=row["reports_upheld"] + 1)
        if event.decision == "ban":
            self._set(author, banned=True)
        if event.until is not None:
            until = row["suspended_until"]
            if until is None or event.until > until:
                self._set(author, suspended_until=event.until)

    # -- the operations ------------------------------------------------------------------------

    def _activity(self) -> None:
        """Count the UTC day of the event as a day the actor was active."""
        actor = self.actor
        if actor is None:
            return
        row = self._member(actor)
        key = (self.c, actor, self.day)
        day = self.changes.peek(self.t.days, key)
        if day is None or not day["active"]:
            self.changes.put(self.t.days, key, active=True)
            self._set(actor, days_active=row["days_active"] + 1)

    def _member(self, member: str) -> Mapping[str, Any]:
        """The member's row, created (with the rule set's initial reputation) when missing."""
        key = (self.c, member)
        row = self.changes.peek(self.t.members, key)
        if row is not None:
            return row
        initial = self.rules.initial
        self.changes.put(
            self.t.members,
            key,
            score=initial,
            trust_level=0,
            contributions=0,
            days_active=0,
            reactions_given=0,
            reactions_received=0,
            reports_upheld=0,
            banned=False,
            suspended_until=None,
            first_seq=self.delivered.seq,
            updated_seq=self.delivered.seq,
            updated_at=self.at,
        )
        if initial:
            self._ledger(member, "start", initial, initial, initial, None)
        self.touched[member] = None
        created = self.changes.peek(self.t.members, key)
        assert created is not None
        return created

    def _set(self, member: str, **values: Any) -> None:
        self.changes.put(self.t.members, (self.c, member), **values)
        self.touched[member] = None

    def _award(
        self,
        member: str,
        points: int,
        rule: str,
        item: tuple[str, str] | None,
        *,
        capped: bool = False,
        post: str | None = None,
    ) -> int:
        """Give ``points`` under ``rule``, within the daily cap and above the floor.

        Points tied to an ``item`` are held on it, to be taken back if it is deleted; a reply
        holding points is listed on its ``post`` (when the event names it). Returns the points
        applied.
        """
        if points == 0:
            return 0
        cap = self.rules.daily_vote_cap
        granted = points
        if capped and cap is not None and points > 0:
            day = self.changes.peek(self.t.days, (self.c, member, self.day))
            counted = 0 if day is None else int(day["vote_points"])
            granted = min(points, max(0, cap - counted))
        applied = self._apply(member, points, granted, rule, item)
        if capped and applied:
            self.changes.add(self.t.days, (self.c, member, self.day), vote_points=applied)
        if item is not None and applied:
            self.changes.add(self.t.holdings, (self.c, *item, member), points=applied)
            if item[0] == "reply" and post is not None:
                self._list_reply(item[1], post)
        return applied

    def _list_reply(self, reply: str, post: str) -> None:
        """List a reply holding points on its post's row, for when the post is deleted.

        Any event naming the post lists it, even if the reply's first points came from a
        reaction that did not name it.
        """
        post_key = (self.c, "post", post)
        topic = self.changes.peek(self.t.content, post_key)
        replies = "" if topic is None else topic["replies"]
        if not _listed(replies, reply):
            self.changes.put(self.t.content, post_key, replies=_appended(replies, reply))

    def _undo(
        self, member: str, points: int, counted: int, day: date, item: tuple[str, str]
    ) -> None:
        """Take back a withdrawn reaction's ``points`` (above the floor) and its cap count."""
        self._take_back(member, points, f"undo.{self.event.TYPE}", item)
        if counted:
            # The day of the reaction gets its room back; that row may not have been read.
            self.changes.add(self.t.days, (self.c, member, day), vote_points=-counted)

    def _take_back(self, member: str, points: int, rule: str, item: tuple[str, str]) -> None:
        """Take back ``points`` the member holds on ``item`` (above the floor), under ``rule``."""
        self._apply(member, -points, -points, rule, item)
        self.changes.add(self.t.holdings, (self.c, *item, member), points=-points)

    def _delete(self, kind: str, item: str, reverse: bool) -> None:
        """Mark an item deleted (no more points on it) and take back what everybody holds on it.

        A post goes with its replies: theirs are taken back too, and they are marked deleted.
        """
        key = (self.c, kind, item)
        content = self.changes.peek(self.t.content, key)
        if content is not None and content["deleted"]:
            return
        replies = "" if content is None or kind != "post" else content["replies"]
        seq = self.delivered.seq
        self.changes.put(self.t.content, key, deleted=True, reversed=reverse, deleted_seq=seq)
        if not reverse:
            return
        self._reverse(kind, item)
        for reply in replies.split():
            reply_key = (self.c, "reply", reply)
            row = self.changes.peek(self.t.content, reply_key)
            if row is not None and row["deleted"]:
                continue
            self.changes.put(
                self.t.content, reply_key, deleted=True, reversed=True, deleted_seq=seq
            )
            self._reverse("reply", reply)

    def _reverse(self, kind: str, item: str) -> None:
        """Take back the points every holder holds on the item (above the floor)."""
        for held_key in self.changes.keys_under(self.t.holdings, (self.c, kind, item)):
            member = held_key[3]
            held = self.changes.peek(self.t.holdings, held_key)
            if held is None:
                continue
            if held["points"]:
                points = int(held["points"])
                self._apply(member, -points, -points, f"reversal.{self.event.TYPE}", (kind, item))
            self.changes.delete(self.t.holdings, held_key)

    def _apply(
        self,
        member: str,
        requested: int,
        granted: int,
        rule: str,
        item: tuple[str, str] | None,
    ) -> int:
        """Move the score by ``granted`` (a loss cut short at the floor); one ledger row."""
        score = int(self._member(member)["score"])
        applied = granted
        if applied < 0:
            applied = max(applied, min(0, self.rules.floor - score))
        balance = score + applied
        self._set(member, score=balance)
        self._ledger(member, rule, requested, applied, balance, item)
        return applied

    def _ledger(
        self,
        member: str,
        rule: str,
        requested: int,
        delta: int,
        balance: int,
        item: tuple[str, str] | None,
    ) -> None:
        self.changes.insert(
            self.t.ledger,
            {
                "seq": self.delivered.seq,
                "n": self.n,
                "community": self.c,
                "member": member,
                "event_id": self.event.id,
                "event_type": self.event.TYPE,
                "occurred_at": self.at,
                "rule": rule,
                "item_kind": None if item is None else item[0],
                "item": None if item is None else item[1],
                "requested": requested,
                "delta": delta,
                "balance": balance,
            },
        )
        self.n += 1

    def _gone(self, kind: str, item: str, post: str | None) -> bool:
        """Whether the item, or the post a reply belongs to, is deleted."""
        content = self.changes.peek(self.t.content, (self.c, kind, item))
        if content is not None and content["deleted"]:
            return True
        if kind == "reply" and post is not None:
            topic = self.changes.peek(self.t.content, (self.c, "post", post))
            return topic is not None and bool(topic["deleted"])
        return False

    def _settle(self) -> None:
        """Recompute the trust level of every member the event touched; log each change."""
        for member in self.touched:
            key = (self.c, member)
            row = self.changes.peek(self.t.members, key)
            assert row is not None
            standing = Standing(
                reputation=int(row["score"]),
                contributions=int(row["contributions"]),
                days_active=int(row["days_active"]),
                reactions_given=int(row["reactions_given"]),
                reactions_received=int(row["reactions_received"]),
                reports_upheld=int(row["reports_upheld"]),
                banned=bool(row["banned"]),
                suspended_until=row["suspended_until"],
            )
            level = trust_level(self.rules, standing, self.at)
            self.stamps[key] = (self.delivered.seq, self.at)
            if level != row["trust_level"]:
                self.changes.insert(
                    self.t.trust,
                    {
                        "seq": self.delivered.seq,
                        "community": self.c,
                        "member": member,
                        "event_id": self.event.id,
                        "occurred_at": self.at,
                        "from_level": int(row["trust_level"]),
                        "to_level": level,
                    },
                )
                self.changes.put(self.t.members, key, trust_level=level)


def projection_for(rules: RuleSet) -> type[ReputationProjection]:
    """A projection class for ``rules``: its name and version derived from the rule set."""
    return cast(
        type[ReputationProjection],
        type(
            f"Reputation_{rules.name}",
            (ReputationProjection,),
            {
                "__doc__": f"Reputation under the {rules.name!r} rule set.",
                "__module__": __name__,
                "rules": rules,
                "name": projection_name(rules),
                "version": version_of(rules),
            },
        ),
    )


class Reputation(ReputationProjection):
    """Reputation under Agora's default rules (tables ``reputation_*``)."""

    rules = DEFAULT
    name = projection_name(DEFAULT)
    version = version_of(DEFAULT)


class StackExchangeReputation(ReputationProjection):
    """Reputation under Stack Exchange's 2014 rules (tables ``reputation_stackexchange_*``)."""

    rules = STACKEXCHANGE
    name = projection_name(STACKEXCHANGE)
    version = version_of(STACKEXCHANGE)
