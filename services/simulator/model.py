"""A deterministic model of community traffic: who does what, where, and when.

The model, per community:

* **members** act with a power-law skew: member *k* (1-based rank) is chosen with weight
  ``1 / k ** zipf_s`` (Zipf), so a few members do most of the work, as on every forum. A member
  joins (``member.joined``) the first time they are chosen; the top two of each community are its
  moderators. Now and then a member leaves.
* **questions and answers**: posts (questions, with tags), replies to them (recent posts draw
  most replies), the asker accepting an answer, edits, deletions.
* **reactions**: likes and votes on recent content, a few downvotes and withdrawn reactions.
* **reports** (about ``report_share`` of events): a small share of posts is bad (spam or abuse)
  and draws most reports, with a matching reason; good content draws a few mistaken reports.
* **moderator decisions** on reported content, mostly right (bad content removed or hidden, good
  content kept or dismissed).
* **crises**: with a small probability per event a community is raided -- for a few hundred of
  its events, bad posts appear and many members report them at once (a report spike).

Communities differ in size (a Pareto-like share of the traffic each) and in **time zone**: each
follows a daily cycle of its local hour (quiet at night, busy in the evening), so which
communities are busy moves round the clock. The overall rate follows the same cycle with
``daily_amplitude`` (0: flat), see :func:`daily_factor`; the runner paces by it.

Determinism: the events are a function of the seed and of the event times asked for. Offline,
:meth:`Simulator.history` places the events itself from ``start``; live, the runner asks for
``next_event(now)``. Event ids are ``derived_event_id("sim", seed, run, index)`` and entity ids
carry the ``run`` tag, so two live runs with one seed never reuse an id for different facts.
"""

from __future__ import annotations

import bisect
import math
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Final

from events.catalogue import (
    AnswerAccepted,
    AnyEvent,
    ContentReported,
    MemberJoined,
    MemberLeft,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    PostEdited,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
)
from events.fields import Decision, ReactionKind, ReportReason
from events.ids import derived_event_id
from services.errors import InvalidSetting

_ONE_US: Final = timedelta(microseconds=1)
_DAY_SECONDS: Final = 86_400.0
#: Local hour at which activity peaks (and, 12 hours earlier, is lowest).
PEAK_HOUR: Final = 20.0

_TAGS: Final = (
    "python", "sql", "nats", "postgres", "performance", "security", "testing", "ops",
    "beer", "brewing", "hops", "yeast", "cooking", "travel", "music", "games",
)  # fmt: skip
_WORDS: Final = (
    "how", "why", "stream", "query", "index", "cache", "yeast", "hops", "mash", "recipe",
    "slow", "fast", "error", "config", "deploy", "test", "batch", "replay", "sour", "stout",
)  # fmt: skip
_REACTIONS: Final[tuple[tuple[ReactionKind, int], ...]] = (
    ("upvote", 50), ("like", 25), ("helpful", 10), ("thanks", 7), ("downvote", 6), ("funny", 2),
)  # fmt: skip
_BAD_REASONS: Final[tuple[tuple[ReportReason, int], ...]] = (
    ("spam", 60), ("harassment", 15), ("inappropriate", 15), ("illegal", 5), ("other", 5),
)  # fmt: skip
_MISTAKEN_REASONS: Final[tuple[tuple[ReportReason, int], ...]] = (
    ("off_topic", 50), ("inappropriate", 25), ("other", 25),
)  # fmt: skip
_ON_BAD: Final[tuple[tuple[Decision, int], ...]] = (
    ("remove", 50), ("hide", 25), ("warn", 15), ("keep", 10),
)  # fmt: skip
_ON_GOOD: Final[tuple[tuple[Decision, int], ...]] = (
    ("dismiss", 60), ("keep", 30), ("warn", 10),
)  # fmt: skip

#: What happens, by weight, when nothing special (a crisis) is going on.
ACTIONS: Final[tuple[tuple[str, float], ...]] = (
    ("post", 8.0),
    ("reply", 20.0),
    ("react", 45.0),
    ("unreact", 2.0),
    ("accept", 4.0),
    ("edit", 2.0),
    ("delete", 0.6),
    ("leave", 0.2),
    ("report", 1.0),
    ("decide", 0.5),
)
"""The event mix in percent (it sums to about 83 + joins, which come on first activity)."""


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """The model's knobs; every one is validated, defaults give a lively demo."""

    communities: int = 20
    members: int = 2_000
    """Members per community (potential: each joins on first activity)."""
    zipf_s: float = 1.1
    """Exponent of the members' activity skew."""
    community_skew: float = 1.2
    """Pareto-like skew of traffic across communities (0: all equal)."""
    report_share: float = 0.01
    """Share of events that are reports outside crises (scales the ``report`` weight)."""
    bad_post_share: float = 0.03
    """Share of posts that are spam or abuse (they draw most reports)."""
    crisis_chance: float = 1e-5
    """Probability per event that a crisis (a raid and its report spike) starts somewhere."""
    crisis_events: int = 400
    """How many of the raided community's events a crisis lasts."""
    daily_amplitude: float = 0.5
    """Depth of the daily cycle: rate x (1 + amplitude * cos(hour - peak)); 0 = flat."""

    def __post_init__(self) -> None:
        """Refuse knobs the model cannot use."""
        problems = []
        if self.communities < 1 or self.members < 10:
            problems.append("need at least 1 community and 10 members")
        if not 0 < self.zipf_s <= 4 or not 0 <= self.community_skew <= 4:
            problems.append("zipf_s must be in (0, 4] and community_skew in [0, 4]")
        for name in ("report_share", "bad_post_share", "crisis_chance"):
            if not 0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name} must be in [0, 0.5]")
        if self.crisis_events < 1 or not 0 <= self.daily_amplitude < 1:
            problems.append("crisis_events must be >= 1 and daily_amplitude in [0, 1)")
        if problems:
            raise InvalidSetting("invalid simulator settings: " + "; ".join(problems))


def daily_factor(at: datetime, amplitude: float, utc_offset_hours: float = 0.0) -> float:
    """The daily cycle at ``at``: ``1 + amplitude * cos(2 pi (local hour - PEAK_HOUR) / 24)``.

    Its mean over a day is 1, so a configured rate is the daily average.
    """
    seconds = at.hour * 3600 + at.minute * 60 + at.second + at.microsecond / 1e6
    hour = (seconds / 3600 + utc_offset_hours) % 24
    return 1.0 + amplitude * math.cos(2 * math.pi * (hour - PEAK_HOUR) / 24)


@dataclass(slots=True)
class _Content:
    id: str
    author: str
    post: str  # the post itself for a post
    bad: bool
    replies: list[tuple[str, str]] = field(default_factory=list)  # (reply, author)
    accepted: bool = False
    reports: int = 0


@dataclass(slots=True)
class _Community:
    id: str
    offset: float  # UTC offset of its time zone, hours
    joined: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)
    moderators: tuple[str, str] = ("", "")
    posts: deque[_Content] = field(default_factory=lambda: deque(maxlen=400))
    replies: deque[_Content] = field(default_factory=lambda: deque(maxlen=400))
    reactions: deque[tuple[str, _Content, ReactionKind]] = field(
        default_factory=lambda: deque(maxlen=200)
    )
    reported: dict[str, tuple[_Content, str]] = field(default_factory=dict)  # id -> (c, kind)
    crisis_left: int = 0
    raid: list[_Content] = field(default_factory=list)
    counter: int = 0


class Simulator:
    """Generates coherent events for many communities; the same seed gives the same traffic."""

    def __init__(self, seed: int, config: SimulatorConfig | None = None, *, run: str = "") -> None:
        self.seed = seed
        self.config = config or SimulatorConfig()
        if run and not run.replace("-", "").replace("_", "").isalnum():
            raise InvalidSetting(f"run tag {run!r} must be letters, digits, - or _")
        self.run = run
        self.index = 0
        self.crises = 0
        self._rng = random.Random(seed)
        self._seed_text = str(seed)
        cfg = self.config
        rng = random.Random(f"{seed}/layout")
        self._communities = [
            _Community(f"c{n}", offset=float(rng.randrange(-8, 10)))
            for n in range(1, cfg.communities + 1)
        ]
        self._community_weights = [
            1.0 / (rank**cfg.community_skew) for rank in range(1, cfg.communities + 1)
        ]
        self._member_cum = list(
            accumulate(1.0 / (rank**cfg.zipf_s) for rank in range(1, cfg.members + 1))
        )
        weights = dict(ACTIONS)
        weights["report"] = 100.0 * cfg.report_share
        self._actions = list(weights)
        self._action_cum = list(accumulate(weights.values()))
        tag = f"{run}-" if run else ""
        self._prefix = tag
        for c in self._communities:
            c.moderators = (self._member(1), self._member(2))
        self._last: datetime | None = None
        self._now = datetime(1970, 1, 1, tzinfo=UTC)
        self._cum_minute = -1
        self._handlers: dict[str, Callable[[_Community, str], AnyEvent | None]] = {
            name: getattr(self, f"_{name}") for name in self._actions
        }
        self._community_cum: list[float] = []

    # -- public ---------------------------------------------------------------------------------

    def next_event(self, at: datetime) -> AnyEvent:
        """The next event, at ``at`` (moved just after the previous event if not later)."""
        when = at.astimezone(UTC)
        if self._last is not None and when <= self._last:
            when = self._last + _ONE_US
        self._now = self._last = when
        community = self._pick_community()
        event = self._generate(community)
        self.index += 1
        return event

    def history(self, count: int, start: datetime, rate: float) -> Iterator[AnyEvent]:
        """``count`` events from ``start`` at ``rate`` events/s on average, following the cycle.

        Gaps are exponential with the rate of the moment (``rate x daily_factor``), drawn from
        the simulator's own random stream: the history depends on the seed alone.
        """
        if start.tzinfo is None or not rate > 0:
            raise InvalidSetting("start must be timezone-aware and rate positive")
        at = start.astimezone(UTC)
        for _ in range(count):
            event = self.next_event(at)
            factor = daily_factor(at, self.config.daily_amplitude)
            at = event.occurred_at + timedelta(seconds=self._rng.expovariate(rate * factor))
            yield event

    # -- choosing ---------------------------------------------------------------------------------

    def _member(self, rank: int) -> str:
        return f"m{self._prefix}{rank}"

    def _pick_member(self) -> str:
        point = self._rng.random() * self._member_cum[-1]
        return self._member(bisect.bisect_right(self._member_cum, point) + 1)

    def _pick_community(self) -> _Community:
        minute = int(self._now.timestamp() // 60)
        if minute != self._cum_minute:  # the cycle moves slowly: weigh once a minute
            amplitude = self.config.daily_amplitude
            self._community_cum = list(
                accumulate(
                    w * daily_factor(self._now, amplitude, c.offset)
                    for w, c in zip(self._community_weights, self._communities, strict=True)
                )
            )
            self._cum_minute = minute
        point = self._rng.random() * self._community_cum[-1]
        return self._communities[bisect.bisect_right(self._community_cum, point)]

    def _pick(self, table: tuple[tuple[str, int], ...]) -> str:
        total = sum(w for _, w in table)
        point = self._rng.random() * total
        for name, weight in table:
            point -= weight
            if point < 0:
                return name
        return table[-1][0]

    def _recent(self, pool: deque[_Content]) -> _Content | None:
        """A recent item, the newest most likely (geometric over age)."""
        if not pool:
            return None
        age = min(int(self._rng.expovariate(1 / 25)), len(pool) - 1)
        return pool[-1 - age]

    def _env(self, c: _Community, actor: str) -> dict[str, object]:
        return {
            "id": derived_event_id("sim", self._seed_text, self.run, str(self.index)),
            "community": c.id,
            "actor": actor,
            "occurred_at": self._now,
        }

    def _next_id(self, c: _Community, kind: str) -> str:
        c.counter += 1
        return f"{kind}{self._prefix}{c.counter}"

    def _words(self, low: int, high: int) -> str:
        rng = self._rng
        return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(low, high)))

    # -- generating -------------------------------------------------------------------------------

    def _generate(self, c: _Community) -> AnyEvent:
        rng = self._rng
        if c.crisis_left == 0 and rng.random() < self.config.crisis_chance:
            c.crisis_left = self.config.crisis_events
            c.raid = []
            self.crises += 1
        member = self._pick_member()
        if member in c.gone and rng.random() < 0.5:
            c.gone.discard(member)  # some come back
            return self._join(c, member)
        if member not in c.joined and member not in c.gone:
            return self._join(c, member)
        if member in c.gone:
            member = c.moderators[0]
            if member not in c.joined:
                return self._join(c, member)
        if c.crisis_left > 0:
            c.crisis_left -= 1
            event = self._crisis(c, member)
            if event is not None:
                return event
        for _ in range(4):
            point = rng.random() * self._action_cum[-1]
            action = self._actions[bisect.bisect_right(self._action_cum, point)]
            event = self._handlers[action](c, member)
            if event is not None:
                return event
        return self._post(c, member)

    def _join(self, c: _Community, member: str) -> AnyEvent:
        c.joined.add(member)
        return MemberJoined(**self._env(c, member), member=member)  # type: ignore[arg-type]

    def _crisis(self, c: _Community, member: str) -> AnyEvent | None:
        """During a raid: a third of the events are raiders' posts, most others reports."""
        roll = self._rng.random()
        if roll < 0.3 or not c.raid:
            post = self._post(c, member, bad=True)
            c.raid.append(c.posts[-1])
            return post
        if roll < 0.9:
            return self._report(c, member, target=self._rng.choice(c.raid))
        return None

    def _post(self, c: _Community, member: str, *, bad: bool | None = None) -> AnyEvent:
        rng = self._rng
        is_bad = rng.random() < self.config.bad_post_share if bad is None else bad
        post = _Content(self._next_id(c, "p"), member, "", is_bad)
        post.post = post.id
        c.posts.append(post)
        title = "BUY CHEAP " + self._words(2, 4) if is_bad else self._words(3, 9).capitalize()
        return PostCreated(
            **self._env(c, member),  # type: ignore[arg-type]
            post=post.id,
            title=title + ("?" if not is_bad else ""),
            body=self._words(8, 40),
            tags=sorted(rng.sample(_TAGS, rng.randint(1, 3))),
        )

    def _reply(self, c: _Community, member: str) -> AnyEvent | None:
        post = self._recent(c.posts)
        if post is None:
            return None
        reply = _Content(self._next_id(c, "r"), member, post.id, self._rng.random() < 0.01)
        post.replies.append((reply.id, member))
        c.replies.append(reply)
        return ReplyCreated(
            **self._env(c, member),  # type: ignore[arg-type]
            reply=reply.id,
            post=post.id,
            post_author=post.author,
            body=self._words(5, 60),
        )

    def _target(self, c: _Community) -> _Content | None:
        return self._recent(c.replies if self._rng.random() < 0.5 else c.posts)

    def _react(self, c: _Community, member: str) -> AnyEvent | None:
        target = self._target(c)
        if target is None or target.author == member:
            return None
        kind: ReactionKind = self._pick(_REACTIONS)  # type: ignore[assignment]
        if target.bad and self._rng.random() < 0.6:
            kind = "downvote"
        c.reactions.append((member, target, kind))
        is_reply = target.post != target.id
        return ReactionAdded(
            **self._env(c, member),  # type: ignore[arg-type]
            target=target.id,
            target_kind="reply" if is_reply else "post",
            target_author=target.author,
            kind=kind,
            post=target.post if is_reply else None,
        )

    def _unreact(self, c: _Community, member: str) -> AnyEvent | None:
        if not c.reactions:
            return None
        actor, target, kind = c.reactions.pop()
        is_reply = target.post != target.id
        return ReactionRemoved(
            **self._env(c, actor),  # type: ignore[arg-type]
            target=target.id,
            target_kind="reply" if is_reply else "post",
            target_author=target.author,
            kind=kind,
            post=target.post if is_reply else None,
        )

    def _accept(self, c: _Community, member: str) -> AnyEvent | None:
        post = self._recent(c.posts)
        if post is None or post.accepted or not post.replies:
            return None
        reply, author = self._rng.choice(post.replies)
        if author == post.author:
            return None
        post.accepted = True
        return AnswerAccepted(
            **self._env(c, post.author),  # type: ignore[arg-type]
            post=post.id,
            post_author=post.author,
            reply=reply,
            reply_author=author,
        )

    def _edit(self, c: _Community, member: str) -> AnyEvent | None:
        post = self._recent(c.posts)
        if post is None:
            return None
        return PostEdited(
            **self._env(c, post.author),  # type: ignore[arg-type]
            post=post.id,
            author=post.author,
            body=self._words(8, 40),
        )

    def _delete(self, c: _Community, member: str) -> AnyEvent | None:
        if not c.posts:
            return None
        post = c.posts.pop()  # the newest: second thoughts come quickly
        c.reported.pop(post.id, None)
        return PostDeleted(
            **self._env(c, post.author),  # type: ignore[arg-type]
            post=post.id,
            author=post.author,
        )

    def _leave(self, c: _Community, member: str) -> AnyEvent | None:
        if member in c.moderators:
            return None
        c.joined.discard(member)
        c.gone.add(member)
        return MemberLeft(**self._env(c, member), member=member)  # type: ignore[arg-type]

    def _report(
        self, c: _Community, member: str, target: _Content | None = None
    ) -> AnyEvent | None:
        rng = self._rng
        if target is None:
            bad = [p for p in list(c.posts)[-50:] if p.bad]
            target = rng.choice(bad) if bad and rng.random() < 0.8 else self._target(c)
        if target is None or target.author == member:
            return None
        target.reports += 1
        is_reply = target.post != target.id
        kind = "reply" if is_reply else "post"
        c.reported[target.id] = (target, kind)
        reason = self._pick(_BAD_REASONS if target.bad else _MISTAKEN_REASONS)
        return ContentReported(
            **self._env(c, member),  # type: ignore[arg-type]
            report=self._next_id(c, "q"),
            target=target.id,
            target_kind=kind,  # type: ignore[arg-type]
            target_author=target.author,
            reason=reason,  # type: ignore[arg-type]
            note=self._words(0, 6),
        )

    def _decide(self, c: _Community, member: str) -> AnyEvent | None:
        if not c.reported:
            return None
        moderator = c.moderators[self._rng.random() < 0.3]
        if moderator not in c.joined:
            return None
        key = next(iter(c.reported))  # the oldest open report first
        target, kind = c.reported.pop(key)
        decision = self._pick(_ON_BAD if target.bad else _ON_GOOD)
        return ModerationDecided(
            **self._env(c, moderator),  # type: ignore[arg-type]
            target=target.id,
            target_kind=kind,  # type: ignore[arg-type]
            target_author=target.author,
            decision=decision,  # type: ignore[arg-type]
            note=self._words(0, 5),
        )
