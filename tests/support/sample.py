"""Deterministic sample traffic for the tests (the demo runs the simulator, services/simulator).

:class:`SampleTraffic` plays a few communities: members join before they act, posts come before
their replies, reactions, accepted answers, reports and moderator decisions refer to content that
exists, with its real author, and ``occurred_at`` increases strictly. The same seed gives the same
events -- ids included (``derived_event_id("sample", seed, index)``) -- so publishing a sample
again stores each fact once (the stream dedupes within its window; projections by event id).
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, TypedDict, TypeVar

from events.catalogue import (
    AnswerAccepted,
    AnyEvent,
    ContentHidden,
    ContentReported,
    ContentRestored,
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
)
from events.fields import ContentKind, Decision, ReactionKind, ReportReason
from events.ids import derived_event_id
from events.limits import SYSTEM_ACTOR

#: Average time between two sample events when no explicit time is given.
DEFAULT_STEP = timedelta(seconds=20)

#: Open reports on one piece of content that make the (sample) automation hide it.
AUTO_HIDE_REPORTS = 2

#: How long a ``suspend`` decision lasts (the ``until`` the event carries).
SUSPENSION = timedelta(days=3)

#: For how many following events a suspended member stays inactive in the sample. Counted in
#: events, not time, so that what happens depends on the seed only and never on the clock.
SUSPENSION_EVENTS = 500

_ONE_US = timedelta(microseconds=1)

_FIRST = (
    "Ada", "Bruno", "Chidi", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ines", "Jun",
    "Kofi", "Lena", "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
)  # fmt: skip
_LAST = (
    "Abe", "Berg", "Costa", "Diallo", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
)  # fmt: skip
_NOUNS = (
    "stream", "consumer", "schema", "index", "cache", "migration", "replica", "query",
    "deployment", "backup", "config", "token", "session", "queue", "snapshot", "projection",
)  # fmt: skip
_VERBS = (
    "configure", "debug", "speed up", "test", "monitor", "rotate", "shard", "back up",
    "upgrade", "secure", "replay", "compact",
)  # fmt: skip
_TAGS = (
    "python", "nats", "sql", "postgres", "sqlite", "performance", "security", "ops",
    "testing", "events", "msgspec", "docker",
)  # fmt: skip
_REACTIONS: tuple[tuple[ReactionKind, int], ...] = (
    ("like", 5), ("upvote", 4), ("helpful", 2), ("thanks", 2), ("funny", 1), ("downvote", 1),
)  # fmt: skip
_REASONS: tuple[ReportReason, ...] = ("spam", "inappropriate", "off_topic", "harassment", "other")
_CONTENT_DECISIONS: tuple[tuple[Decision, int], ...] = (
    ("dismiss", 3), ("keep", 2), ("hide", 2), ("remove", 2), ("warn", 1),
)  # fmt: skip
_MEMBER_DECISIONS: tuple[tuple[Decision, int], ...] = (
    ("dismiss", 2), ("warn", 3), ("suspend", 2), ("ban", 1),
)  # fmt: skip

T = TypeVar("T", bound=Hashable)


class _Pool(Generic[T]):
    """A set with O(1) add, remove and deterministic random choice (insertion-ordered list)."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._pos: dict[T, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._pos

    def add(self, item: T) -> None:
        if item not in self._pos:
            self._pos[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        index = self._pos.pop(item, None)
        if index is None:
            return
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._pos[last] = index

    def items(self) -> list[T]:
        return list(self._items)

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]


@dataclass
class _Content:
    """A post or a reply, as the generator remembers it."""

    id: str
    kind: ContentKind
    author: str
    post: str  # the post itself for a post
    replies: _Pool[str] = field(default_factory=_Pool)  # live replies (posts only)
    accepted: bool = False
    hidden: bool = False
    reactions: list[tuple[str, str, ReactionKind]] = field(default_factory=list)


@dataclass
class _Community:
    """What the generator knows about one community."""

    id: str
    outsiders: _Pool[str]
    moderator: str | None = None
    members: _Pool[str] = field(default_factory=_Pool)
    suspended: dict[str, int] = field(default_factory=dict)  # member -> until event index
    content: dict[str, _Content] = field(default_factory=dict)  # live posts and replies
    posts: _Pool[str] = field(default_factory=_Pool)
    replies: _Pool[str] = field(default_factory=_Pool)
    reactions: _Pool[tuple[str, str, ReactionKind]] = field(default_factory=_Pool)
    reports: dict[str, list[str]] = field(default_factory=dict)  # target -> open reporters
    reported: _Pool[str] = field(default_factory=_Pool)  # targets with open reports
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


_Make = Callable[[], AnyEvent | None]


class _Envelope(TypedDict):
    """The fields every event carries."""

    id: uuid.UUID
    community: str
    actor: str
    occurred_at: datetime


class SampleTraffic:
    """An endless, deterministic and coherent source of sample events.

    ``next_event()`` places each event on a jittered grid from ``start`` (one per ``step`` on
    average); ``next_event(at)`` uses the given time instead (the demo's live phase). Either way
    times increase strictly, and the events themselves depend only on the seed.
    """

    def __init__(
        self,
        seed: int,
        communities: int,
        members: int,
        start: datetime,
        *,
        step: timedelta = DEFAULT_STEP,
    ) -> None:
        if communities < 1 or members < 2:
            raise ValueError("sample traffic needs at least 1 community and 2 members")
        if start.tzinfo is None or step <= timedelta(0):
            raise ValueError("start must be timezone-aware and step positive")
        self.seed = seed
        self.start = start.astimezone(UTC)
        self.step = step
        self.index = 0
        self._rng = random.Random(seed)
        self._members = [f"m{n:04d}" for n in range(1, members + 1)]
        self._communities = [
            _Community(f"c{n}", outsiders=self._pool(self._members))
            for n in range(1, communities + 1)
        ]
        self._pending: deque[_Make] = deque()
        self._last: datetime | None = None
        self._now = self.start

    @staticmethod
    def _pool(items: list[str]) -> _Pool[str]:
        pool: _Pool[str] = _Pool()
        for item in items:
            pool.add(item)
        return pool

    def __iter__(self) -> Iterator[AnyEvent]:
        while True:
            yield self.next_event()

    def next_event(self, at: datetime | None = None) -> AnyEvent:
        """Return the next event, at ``at`` if given (moved forward if not after the last)."""
        jitter = self._rng.random()
        when = (
            self.start + self.step * (self.index + 0.9 * jitter)
            if at is None
            else at.astimezone(UTC)
        )
        if self._last is not None and when <= self._last:
            when = self._last + _ONE_US
        self._now = when
        event = self._generate()
        self._last = when
        self.index += 1
        return event

    # -- choosing what happens ---------------------------------------------------------------

    def _generate(self) -> AnyEvent:
        while self._pending:
            event = self._pending.popleft()()
            if event is not None:
                return event
        order = list(self._communities)
        self._rng.shuffle(order)
        for community in order:
            event = self._in(community)
            if event is not None:
                return event
        raise RuntimeError("sample traffic is stuck: no community can produce an event")

    def _in(self, c: _Community) -> AnyEvent | None:
        size = len(c.members)
        options: list[tuple[Callable[[_Community], AnyEvent | None], int]] = [
            (self._join, 40 if size < 5 else 3),
        ]
        if size >= 2:
            options += [
                (self._leave, 1),
                (self._post, 12),
                (self._edit, 3),
                (self._delete_post, 1),
                (self._reply, 25),
                (self._delete_reply, 1),
                (self._react, 30),
                (self._unreact, 3),
                (self._accept, 4),
                (self._report, 3),
                (self._decide, 4),
            ]
        while options:
            chosen = self._rng.choices(range(len(options)), weights=[w for _, w in options])[0]
            event = options[chosen][0](c)
            if event is not None:
                return event
            del options[chosen]
        return None

    # -- helpers -----------------------------------------------------------------------------

    def _env(self, c: _Community, actor: str) -> _Envelope:
        event_id = derived_event_id("sample", str(self.seed), str(self.index))
        return {"id": event_id, "community": c.id, "actor": actor, "occurred_at": self._now}

    def _active(self, c: _Community, member: str) -> bool:
        if member not in c.members:
            return False
        until = c.suspended.get(member)
        return until is None or until <= self.index

    def _actor(self, c: _Community, exclude: str | None = None) -> str | None:
        for _ in range(4):
            member = c.members.choice(self._rng)
            if member != exclude and self._active(c, member):
                return member
        return None

    def _live_content(self, c: _Community) -> _Content | None:
        pool = c.replies if len(c.replies) and self._rng.random() < 0.6 else c.posts
        if not len(pool):
            return None
        content = c.content[pool.choice(self._rng)]
        return None if content.hidden else content

    def _words(self, n: int) -> str:
        return " ".join(self._rng.choice(_NOUNS + _VERBS) for _ in range(n))

    def _title(self) -> str:
        return f"How do I {self._rng.choice(_VERBS)} a {self._rng.choice(_NOUNS)}?"

    def _tags(self) -> list[str]:
        return sorted(self._rng.sample(_TAGS, self._rng.randint(0, 3)))

    def _display_name(self, member: str) -> str:
        n = int(member[1:])
        return f"{_FIRST[n % len(_FIRST)]} {_LAST[(n // len(_FIRST)) % len(_LAST)]}"

    def _forget(self, c: _Community, content: _Content) -> None:
        """Drop deleted content (and a post's replies) with its reactions and open reports."""
        doomed = [content]
        if content.kind == "post":
            doomed += [c.content[r] for r in content.replies.items()]
        else:
            parent = c.content.get(content.post)
            if parent is not None:
                parent.replies.discard(content.id)
        for item in doomed:
            (c.posts if item.kind == "post" else c.replies).discard(item.id)
            for key in item.reactions:
                c.reactions.discard(key)
            self._resolve(c, item.id)
            del c.content[item.id]

    def _resolve(self, c: _Community, target: str) -> None:
        c.reports.pop(target, None)
        c.reported.discard(target)

    # -- one method per kind of event ---------------------------------------------------------

    def _join(self, c: _Community) -> AnyEvent | None:
        if not len(c.outsiders):
            return None
        member = c.outsiders.choice(self._rng)
        c.outsiders.discard(member)
        c.members.add(member)
        if c.moderator is None:
            c.moderator = member
        return MemberJoined(
            **self._env(c, member),
            member=member,
            display_name=self._display_name(member),
        )

    def _leave(self, c: _Community) -> AnyEvent | None:
        member = self._actor(c, exclude=c.moderator)
        if member is None:
            return None
        return self._remove_member(c, member, member, "left")

    def _remove_member(
        self, c: _Community, member: str, actor: str, reason: Literal["left", "removed"]
    ) -> AnyEvent | None:
        if member not in c.members:
            return None
        c.members.discard(member)
        c.outsiders.add(member)
        c.suspended.pop(member, None)
        self._resolve(c, member)
        return MemberLeft(**self._env(c, actor), member=member, reason=reason)

    def _post(self, c: _Community) -> AnyEvent | None:
        author = self._actor(c)
        if author is None:
            return None
        post = c.next_id("p")
        c.content[post] = _Content(post, "post", author, post)
        c.posts.add(post)
        return PostCreated(
            **self._env(c, author),
            post=post,
            title=self._title(),
            body=self._words(self._rng.randint(5, 40)),
            tags=self._tags(),
        )

    def _own_post(self, c: _Community) -> _Content | None:
        if not len(c.posts):
            return None
        content = c.content[c.posts.choice(self._rng)]
        return content if self._active(c, content.author) else None

    def _edit(self, c: _Community) -> AnyEvent | None:
        content = self._own_post(c)
        if content is None:
            return None
        what = self._rng.randrange(3)
        return PostEdited(
            **self._env(c, content.author),
            post=content.id,
            author=content.author,
            title=self._title() if what == 0 else None,
            body=self._words(self._rng.randint(5, 40)) if what == 1 else None,
            tags=self._tags() if what == 2 else None,
        )

    def _delete_post(self, c: _Community) -> AnyEvent | None:
        content = self._own_post(c)
        if content is None:
            return None
        self._forget(c, content)
        return PostDeleted(
            **self._env(c, content.author),
            post=content.id,
            author=content.author,
        )

    def _reply(self, c: _Community) -> AnyEvent | None:
        if not len(c.posts):
            return None
        post = c.content[c.posts.choice(self._rng)]
        author = self._actor(c)
        if author is None or post.hidden:
            return None
        parent: str | None = None
        if len(post.replies) and self._rng.random() < 0.3:
            candidate = c.content[post.replies.choice(self._rng)]
            parent = None if candidate.hidden else candidate.id
        reply = c.next_id("r")
        c.content[reply] = _Content(reply, "reply", author, post.id)
        c.replies.add(reply)
        post.replies.add(reply)
        return ReplyCreated(
            **self._env(c, author),
            reply=reply,
            post=post.id,
            post_author=post.author,
            parent=parent,
            body=self._words(self._rng.randint(3, 30)),
        )

    def _delete_reply(self, c: _Community) -> AnyEvent | None:
        if not len(c.replies):
            return None
        content = c.content[c.replies.choice(self._rng)]
        if not self._active(c, content.author):
            return None
        self._forget(c, content)
        return ReplyDeleted(
            **self._env(c, content.author),
            reply=content.id,
            post=content.post,
            author=content.author,
        )

    def _react(self, c: _Community) -> AnyEvent | None:
        target = self._live_content(c)
        if target is None:
            return None
        actor = self._actor(c, exclude=target.author)
        kind = self._rng.choices([k for k, _ in _REACTIONS], weights=[w for _, w in _REACTIONS])[0]
        key = (actor or "", target.id, kind)
        if actor is None or key in c.reactions:
            return None
        c.reactions.add(key)
        target.reactions.append(key)
        return ReactionAdded(
            **self._env(c, actor),
            target=target.id,
            target_kind=target.kind,
            target_author=target.author,
            kind=kind,
            post=target.post if target.kind == "reply" else None,
        )

    def _unreact(self, c: _Community) -> AnyEvent | None:
        if not len(c.reactions):
            return None
        key = c.reactions.choice(self._rng)
        actor, target_id, kind = key
        if not self._active(c, actor):
            return None
        target = c.content[target_id]
        c.reactions.discard(key)
        target.reactions.remove(key)
        return ReactionRemoved(
            **self._env(c, actor),
            target=target.id,
            target_kind=target.kind,
            target_author=target.author,
            kind=kind,
            post=target.post if target.kind == "reply" else None,
        )

    def _accept(self, c: _Community) -> AnyEvent | None:
        post = self._own_post(c)
        if post is None or post.accepted or post.hidden or not len(post.replies):
            return None
        reply = c.content[post.replies.choice(self._rng)]
        if reply.author == post.author or reply.hidden:
            return None
        post.accepted = True
        return AnswerAccepted(
            **self._env(c, post.author),
            post=post.id,
            post_author=post.author,
            reply=reply.id,
            reply_author=reply.author,
        )

    def _report(self, c: _Community) -> AnyEvent | None:
        target: str | None
        author: str
        kind: Literal["post", "reply", "member"]
        if len(c.reported) and self._rng.random() < 0.5:  # others pile on
            target = c.reported.choice(self._rng)
        elif self._rng.random() < 0.2:
            target = c.members.choice(self._rng)
        else:
            content = self._live_content(c)
            target = None if content is None else content.id
        if target is None or target == c.moderator:
            return None
        if target in c.content:
            found = c.content[target]
            if found.hidden:
                return None
            author, kind = found.author, found.kind
        else:
            author, kind = target, "member"
        reporter = self._actor(c, exclude=author)
        if reporter is None or reporter in c.reports.get(target, ()):
            return None
        c.reports.setdefault(target, []).append(reporter)
        c.reported.add(target)
        if kind != "member" and len(c.reports[target]) == AUTO_HIDE_REPORTS:
            self._pending.append(lambda: self._auto_hide(c, target))
        return ContentReported(
            **self._env(c, reporter),
            report=c.next_id("rep"),
            target=target,
            target_kind=kind,
            target_author=author,
            reason=self._rng.choice(_REASONS),
            note=self._words(self._rng.randint(0, 6)),
        )

    def _auto_hide(self, c: _Community, target: str) -> AnyEvent | None:
        content = c.content.get(target)
        if content is None or content.hidden:
            return None
        content.hidden = True
        return ContentHidden(
            **self._env(c, SYSTEM_ACTOR),
            target=content.id,
            target_kind=content.kind,
            target_author=content.author,
            rule="auto_hide.reports",
            note=f"{AUTO_HIDE_REPORTS} open reports",
        )

    def _decide(self, c: _Community) -> AnyEvent | None:
        moderator = c.moderator
        if not len(c.reported) or moderator is None or not self._active(c, moderator):
            return None
        target = c.reported.choice(self._rng)
        content = c.content.get(target)
        table = _MEMBER_DECISIONS if content is None else _CONTENT_DECISIONS
        decision = self._rng.choices([d for d, _ in table], weights=[w for _, w in table])[0]
        until = self._now + SUSPENSION if decision == "suspend" else None
        self._resolve(c, target)
        kind: Literal["post", "reply", "member"]
        if content is None:
            author, kind = target, "member"
            if decision == "suspend":
                c.suspended[target] = self.index + SUSPENSION_EVENTS
            elif decision == "ban":
                self._pending.append(lambda: self._remove_member(c, target, moderator, "removed"))
        else:
            author, kind = content.author, content.kind
            if decision == "hide":
                content.hidden = True
            elif decision == "remove":
                self._pending.append(lambda: self._moderator_delete(c, content, moderator))
            elif decision in ("dismiss", "keep") and content.hidden:
                self._pending.append(lambda: self._restore(c, content, moderator))
        return ModerationDecided(
            **self._env(c, moderator),
            target=target,
            target_kind=kind,
            target_author=author,
            decision=decision,
            note=self._words(self._rng.randint(0, 6)),
            until=until,
        )

    def _moderator_delete(self, c: _Community, content: _Content, actor: str) -> AnyEvent | None:
        if content.id not in c.content:
            return None
        self._forget(c, content)
        if content.kind == "post":
            return PostDeleted(
                **self._env(c, actor),
                post=content.id,
                author=content.author,
                reason="moderator",
            )
        return ReplyDeleted(
            **self._env(c, actor),
            reply=content.id,
            post=content.post,
            author=content.author,
            reason="moderator",
        )

    def _restore(self, c: _Community, content: _Content, actor: str) -> AnyEvent | None:
        if content.id not in c.content or not content.hidden:
            return None
        content.hidden = False
        return ContentRestored(
            **self._env(c, actor),
            target=content.id,
            target_kind=content.kind,
            target_author=content.author,
            note="reports dismissed",
        )


def sample_events(
    seed: int,
    communities: int,
    members: int,
    count: int,
    start: datetime,
    *,
    step: timedelta = DEFAULT_STEP,
) -> Iterator[AnyEvent]:
    """Yield ``count`` coherent sample events, the same ones for the same arguments."""
    traffic = SampleTraffic(seed, communities, members, start, step=step)
    for _ in range(count):
        yield traffic.next_event()
