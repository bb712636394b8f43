"""A fast, deterministic generator of a coherent community history for benchmarks.

The mix follows what a Q&A community produces: mostly reactions and replies, fewer posts, a
trickle of joins, reports and moderator decisions. Members act with a power-law skew; every
reference (reply to a post, reaction to a reply, report of a post) points at something that exists,
with its real author. Event ids are derived from the seed and index, so regenerating the same
history and publishing it again stores nothing twice.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from events import (
    AnswerAccepted,
    AnyEvent,
    ContentReported,
    MemberJoined,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    derived_event_id,
)

START = datetime(2025, 1, 1, tzinfo=UTC)

_WEIGHTS = {
    "join": 4,
    "post": 10,
    "reply": 25,
    "react": 45,
    "unreact": 3,
    "accept": 4,
    "report": 3,
    "decide": 2,
    "delete": 1,
}


def history(
    count: int, *, seed: int = 1, communities: int = 20, start: datetime = START
) -> Iterator[AnyEvent]:
    """Yield ``count`` events across ``communities``, about 20 events a minute per community."""
    rng = random.Random(seed)
    kinds = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    members: dict[str, list[str]] = {f"c{i}": [] for i in range(communities)}
    posts: dict[str, list[tuple[str, str]]] = {c: [] for c in members}
    replies: dict[str, list[tuple[str, str, str, str]]] = {c: [] for c in members}
    reports: dict[str, list[tuple[str, str, str]]] = {c: [] for c in members}
    names = list(members)
    step = timedelta(seconds=60 / (20 * communities))
    n = 0
    i = 0
    while n < count:
        i += 1
        when = start + step * i
        community = names[int(rng.paretovariate(1.2)) % communities]
        kind = rng.choices(kinds, weights)[0]
        pool = members[community]
        if len(pool) < 5:
            kind = "join"
        eid = derived_event_id("bench", str(seed), str(i))
        actor = pool[min(int(rng.paretovariate(1.1)) - 1, len(pool) - 1)] if pool else ""
        event: AnyEvent | None = None
        if kind == "join":
            member = f"m{i}"
            pool.append(member)
            event = MemberJoined(
                id=eid, community=community, actor=member, occurred_at=when, member=member
            )
        elif kind == "post":
            post = f"p{i}"
            posts[community].append((post, actor))
            event = PostCreated(
                id=eid,
                community=community,
                actor=actor,
                occurred_at=when,
                post=post,
                title=f"Question {i}",
                body="How do I ...?",
                tags=["brewing"],
            )
        elif kind == "reply" and posts[community]:
            post, author = rng.choice(posts[community][-200:])
            reply = f"r{i}"
            replies[community].append((reply, actor, post, author))
            event = ReplyCreated(
                id=eid,
                community=community,
                actor=actor,
                occurred_at=when,
                reply=reply,
                post=post,
                post_author=author,
                body="Try this.",
            )
        elif kind in ("react", "unreact") and replies[community]:
            reply, author, post, _ = rng.choice(replies[community][-500:])
            cls = ReactionAdded if kind == "react" else ReactionRemoved
            event = cls(
                id=eid,
                community=community,
                actor=actor,
                occurred_at=when,
                target=reply,
                target_kind="reply",
                target_author=author,
                kind=rng.choice(("upvote", "upvote", "like", "downvote", "helpful")),
                post=post,
            )
        elif kind == "accept" and replies[community]:
            reply, author, post, post_author = rng.choice(replies[community][-200:])
            event = AnswerAccepted(
                id=eid,
                community=community,
                actor=post_author,
                occurred_at=when,
                post=post,
                post_author=post_author,
                reply=reply,
                reply_author=author,
            )
        elif kind == "report" and posts[community]:
            post, author = rng.choice(posts[community][-300:])
            report = f"rep{i}"
            reports[community].append((post, author, report))
            event = ContentReported(
                id=eid,
                community=community,
                actor=actor,
                occurred_at=when,
                report=report,
                target=post,
                target_kind="post",
                target_author=author,
                reason=rng.choice(("spam", "inappropriate", "off_topic")),
            )
        elif kind == "decide" and reports[community]:
            post, author, _ = reports[community].pop(0)
            event = ModerationDecided(
                id=eid,
                community=community,
                actor=pool[0],
                occurred_at=when,
                target=post,
                target_kind="post",
                target_author=author,
                decision=rng.choice(("dismiss", "keep", "hide", "remove")),
            )
        elif kind == "delete" and posts[community]:
            post, author = posts[community].pop(rng.randrange(len(posts[community])))
            event = PostDeleted(
                id=eid,
                community=community,
                actor=author,
                occurred_at=when,
                post=post,
                author=author,
            )
        if event is not None:
            n += 1
            yield event
