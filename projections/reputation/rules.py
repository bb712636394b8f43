"""Reputation rule sets: how many points each kind of event is worth, and the limits around them.

A rule set is data (a frozen msgspec Struct), versioned: the reputation projection's ``version``
is derived from the rule set's, so changing a rule set means a new projection version rebuilt by
replay. Two rule sets ship: :data:`DEFAULT` (Agora's own) and :data:`STACKEXCHANGE` (Stack
Exchange's published point table as of 2014). ``docs/reputation.md`` gives every rule's reason
or source.

Rule-set versions are drawn from one sequence shared by every rule set, so no two rule sets ever
share a version; a change to any rule set takes the next unused number (see :data:`RULE_SETS` and
the fingerprints pinned in ``tests/unit/test_reputation_rules.py``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

import msgspec

from events.fields import Decision, ReactionKind

APPROVING: Final[frozenset[Decision]] = frozenset({"hide", "remove", "warn", "suspend", "ban"})
"""Moderator decisions that uphold the reports against a target (the others reject them)."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ReactionRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Points one kind of reaction moves: to the target's author, and to the reacting member."""

    post: int = 0
    """To the author of the post reacted to."""
    reply: int = 0
    """To the author of the reply reacted to."""
    voter_post: int = 0
    """To the reacting member, on a post (a cost: zero or negative)."""
    voter_reply: int = 0
    """To the reacting member, on a reply (a cost: zero or negative)."""
    capped: bool = True
    """Whether the author's points count against the daily vote cap."""


class TrustLevel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a member needs to reach one trust level; every requirement must hold."""

    level: int
    """1..4 (0 is where everybody starts)."""
    title: str
    """A name for dashboards, e.g. ``member``."""
    min_reputation: int = 0
    min_contributions: int = 0
    """Posts and replies created."""
    min_days_active: int = 0
    """Distinct UTC days (event time) on which the member did anything."""
    min_reactions_given: int = 0
    """Positive reactions given to other members' content (withdrawn ones do not count)."""
    min_reactions_received: int = 0
    """Positive reactions received from other members."""
    max_reports_upheld: int | None = None
    """At most this many upheld reports against the member (None: no limit)."""


class RuleSet(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One complete, versioned set of reputation rules."""

    name: str
    """Stable identifier, ``[a-z][a-z0-9_]*``; names the projection and its tables."""
    version: int
    """From the sequence shared by all rule sets; take the next unused number on any change."""
    initial: int
    """Reputation of a member when first seen (a ``start`` ledger row when not zero)."""
    floor: int
    """Reputation never falls below this; a loss that would cross it is cut short."""
    daily_vote_cap: int | None
    """Most vote-derived points a member can gain per UTC day of event time (None: no cap)."""
    voter_cost_counts_toward_cap: bool
    """Whether the voter's own cost (e.g. -1 for downvoting an answer) moves the day's count."""
    reactions: dict[ReactionKind, ReactionRule]
    """Points per reaction kind; a kind not listed moves no points."""
    positive_reactions: frozenset[ReactionKind]
    """Reaction kinds counted as given/received for trust levels (Discourse's likes)."""
    accepted_answer: int
    """To the author of a reply accepted as the answer. Never capped."""
    accepted_answer_accepter: int
    """To the post's author when they accept someone else's reply. Never capped."""
    report_upheld: dict[Decision, int]
    """Penalty (zero or negative) to the target's author per approving moderator decision."""
    reverse_on_delete: bool
    """Whether deleting a post or reply takes back the points its author earned on it."""
    reverse_on_remove: bool
    """Whether a moderator's ``remove`` decision takes back the points, as a deletion does."""
    trust_levels: tuple[TrustLevel, ...]
    """Levels 1..4 in increasing order; a member holds the highest whose requirements all hold."""

    def __post_init__(self) -> None:
        """Refuse rule sets that cannot be folded sensibly."""
        problems: list[str] = []
        if not _NAME.match(self.name):
            problems.append(f"name {self.name!r} must match {_NAME.pattern}")
        if self.version < 1:
            problems.append("version must be >= 1")
        if self.floor > self.initial:
            problems.append("floor must not exceed initial")
        if self.daily_vote_cap is not None and self.daily_vote_cap < 0:
            problems.append("daily_vote_cap must be >= 0 or None")
        for kind, rule in self.reactions.items():
            if rule.voter_post > 0 or rule.voter_reply > 0:
                problems.append(f"reactions[{kind!r}]: a voter's points are a cost (<= 0)")
        for decision, points in self.report_upheld.items():
            if decision not in APPROVING:
                problems.append(f"report_upheld[{decision!r}]: not an approving decision")
            if points > 0:
                problems.append(f"report_upheld[{decision!r}]: a penalty must be <= 0")
        levels = [t.level for t in self.trust_levels]
        if levels != list(range(1, len(levels) + 1)) or len(levels) > 4:
            problems.append("trust_levels must be levels 1, 2, ... (at most 4), in order")
        if problems:
            raise ValueError(f"rule set {self.name!r}: " + "; ".join(problems))

    def reaction(self, kind: ReactionKind) -> ReactionRule:
        """The rule for ``kind`` (a rule moving no points when the set does not list it)."""
        return self.reactions.get(kind, _NO_POINTS)


_NO_POINTS: Final = ReactionRule(capped=False)


def fingerprint(rules: RuleSet) -> str:
    """A short hash of everything in ``rules`` but its version: it changes with any rule."""
    data = msgspec.json.encode(msgspec.structs.replace(rules, version=1), order="sorted")
    return hashlib.sha256(data).hexdigest()[:16]


DEFAULT: Final = RuleSet(
    name="default",
    version=1,
    initial=0,
    floor=0,
    daily_vote_cap=200,
    voter_cost_counts_toward_cap=False,
    reactions={
        "upvote": ReactionRule(post=10, reply=10),
        "downvote": ReactionRule(post=-2, reply=-2, voter_post=-1, voter_reply=-1),
    },
    positive_reactions=frozenset({"upvote", "like", "helpful", "thanks", "funny"}),
    accepted_answer=15,
    accepted_answer_accepter=2,
    report_upheld={"hide": -10, "remove": -20, "warn": -10, "suspend": -50, "ban": -100},
    reverse_on_delete=True,
    reverse_on_remove=True,
    trust_levels=(
        TrustLevel(level=1, title="basic", min_contributions=1, min_days_active=1),
        TrustLevel(
            level=2,
            title="member",
            min_reputation=15,
            min_contributions=10,
            min_days_active=5,
            min_reactions_given=1,
            min_reactions_received=1,
        ),
        TrustLevel(
            level=3,
            title="regular",
            min_reputation=500,
            min_contributions=50,
            min_days_active=50,
            min_reactions_given=30,
            min_reactions_received=20,
            max_reports_upheld=5,
        ),
        TrustLevel(
            level=4,
            title="leader",
            min_reputation=2000,
            min_contributions=200,
            min_days_active=100,
            min_reactions_given=100,
            min_reactions_received=100,
            max_reports_upheld=2,
        ),
    ),
)
"""Agora's own rules; the reasoning for each is in docs/reputation.md."""

STACKEXCHANGE: Final = RuleSet(
    name="stackexchange",
    version=2,
    initial=1,
    floor=1,
    daily_vote_cap=200,
    voter_cost_counts_toward_cap=True,
    reactions={
        "upvote": ReactionRule(post=5, reply=10),
        "downvote": ReactionRule(post=-2, reply=-2, voter_reply=-1),
    },
    positive_reactions=frozenset({"upvote"}),
    accepted_answer=15,
    accepted_answer_accepter=2,
    report_upheld={"remove": -100},
    reverse_on_delete=True,
    reverse_on_remove=True,
    trust_levels=(
        TrustLevel(level=1, title="vote up, flag", min_reputation=15),
        TrustLevel(level=2, title="vote down", min_reputation=125),
        TrustLevel(level=3, title="edit freely", min_reputation=2000),
        TrustLevel(level=4, title="moderator tools", min_reputation=10000),
    ),
)
"""Stack Exchange's published point table as of 2014; sources in docs/reputation.md."""

RULE_SETS: Final[dict[str, RuleSet]] = {r.name: r for r in (DEFAULT, STACKEXCHANGE)}
"""The rule sets Agora ships, by name."""


def _points(value: int) -> str:
    return f"{value:+d}" if value else "0"


def points_table(rule_sets: tuple[RuleSet, ...]) -> str:
    """The rule sets side by side as a Markdown table (docs/reputation.md quotes it verbatim)."""
    rows: list[tuple[str, list[str]]] = [
        ("version", [str(r.version) for r in rule_sets]),
        ("initial reputation", [str(r.initial) for r in rule_sets]),
        ("floor", [str(r.floor) for r in rule_sets]),
        (
            "daily cap on vote points",
            ["none" if r.daily_vote_cap is None else str(r.daily_vote_cap) for r in rule_sets],
        ),
        (
            "voter's cost counts against their cap",
            ["yes" if r.voter_cost_counts_toward_cap else "no" for r in rule_sets],
        ),
    ]
    kinds = sorted({k for r in rule_sets for k in r.reactions})
    for kind in kinds:
        for label, attr in (
            ("post", "post"),
            ("reply", "reply"),
            ("post, to the voter", "voter_post"),
            ("reply, to the voter", "voter_reply"),
        ):
            rows.append(
                (
                    f"`{kind}` on a {label}",
                    [_points(getattr(r.reaction(kind), attr)) for r in rule_sets],
                )
            )
        rows.append(
            (
                f"`{kind}` counts against the cap",
                ["yes" if r.reaction(kind).capped else "no" for r in rule_sets],
            )
        )
    rows.append(("answer accepted, to its author", [_points(r.accepted_answer) for r in rule_sets]))
    rows.append(
        ("answer accepted, to the asker", [_points(r.accepted_answer_accepter) for r in rule_sets])
    )
    for decision in ("hide", "remove", "warn", "suspend", "ban"):
        rows.append(
            (
                f"report upheld: `{decision}`",
                [_points(r.report_upheld.get(decision, 0)) for r in rule_sets],
            )
        )
    rows.append(
        ("deletion takes points back", ["yes" if r.reverse_on_delete else "no" for r in rule_sets])
    )
    rows.append(
        (
            "moderator's `remove` takes points back",
            ["yes" if r.reverse_on_remove else "no" for r in rule_sets],
        )
    )
    rows.append(
        (
            "reactions counted for trust",
            [", ".join(f"`{k}`" for k in sorted(r.positive_reactions)) for r in rule_sets],
        )
    )
    header = "| rule | " + " | ".join(f"`{r.name}`" for r in rule_sets) + " |"
    rule = "|---|" + "---|" * len(rule_sets)
    lines = [header, rule, *(f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows)]
    return "\n".join(lines) + "\n"


def trust_table(rules: RuleSet) -> str:
    """One rule set's trust levels as a Markdown table."""
    lines = [
        "| level | title | reputation | contributions | days active | reactions given "
        "| reactions received | upheld reports at most |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in rules.trust_levels:
        limit = "any" if t.max_reports_upheld is None else str(t.max_reports_upheld)
        lines.append(
            f"| {t.level} | {t.title} | {t.min_reputation} | {t.min_contributions} "
            f"| {t.min_days_active} | {t.min_reactions_given} | {t.min_reactions_received} "
            f"| {limit} |"
        )
    return "\n".join(lines) + "\n"
