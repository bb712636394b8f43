"""The demo's sample traffic: deterministic, valid and coherent as a community's history."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from support.sample import DEFAULT_STEP, SampleTraffic, sample_events

from events.catalogue import (
    EVENT_TYPES,
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
from events.codec import decode, encode
from events.ids import derived_event_id
from events.limits import SYSTEM_ACTOR

START = datetime(2024, 1, 1, tzinfo=UTC)


@dataclass
class _Community:
    members: set[str] = field(default_factory=set)
    moderator: str | None = None
    posts: dict[str, str] = field(default_factory=dict)  # live post -> author
    replies: dict[str, tuple[str, str]] = field(
        default_factory=dict
    )  # live reply -> (author, post)
    ever: set[str] = field(default_factory=set)  # every post and reply id ever created
    reactions: set[tuple[str, str, str]] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)  # targets with open reports
    hidden: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)

    def author(self, target: str, kind: str) -> str:
        if kind == "post":
            assert target in self.posts, f"post {target} does not exist (anymore)"
            return self.posts[target]
        if kind == "reply":
            assert target in self.replies, f"reply {target} does not exist (anymore)"
            return self.replies[target][0]
        assert kind == "member" and target in self.members, f"member {target} is not a member"
        return target

    def drop_post(self, post: str) -> None:
        del self.posts[post]
        for reply in [r for r, (_, p) in self.replies.items() if p == post]:
            self.drop_reply(reply)
        self.forget(post)

    def drop_reply(self, reply: str) -> None:
        del self.replies[reply]
        self.forget(reply)

    def forget(self, target: str) -> None:
        self.reactions = {r for r in self.reactions if r[1] != target}
        self.reported.discard(target)
        self.hidden.discard(target)


def check_coherent(events: list[AnyEvent]) -> None:
    """Replay ``events`` and fail on the first one that refers to something that is not there."""
    communities: dict[str, _Community] = {}
    last: datetime | None = None
    for i, e in enumerate(events):
        where = f"event {i} ({e.TYPE} in {e.community})"
        assert e.occurred_at.utcoffset() == timedelta(0), where
        assert last is None or e.occurred_at > last, f"{where}: time goes backwards"
        last = e.occurred_at
        c = communities.setdefault(e.community, _Community())
        if isinstance(e, MemberJoined):
            assert e.actor == e.member and e.member not in c.members, where
            c.members.add(e.member)
            c.moderator = c.moderator or e.member
            continue
        if e.actor == SYSTEM_ACTOR:
            assert isinstance(e, ContentHidden), where
        else:
            assert e.actor in c.members, f"{where}: actor {e.actor} is not a member"
        match e:
            case MemberLeft():
                assert e.member in c.members and e.member != c.moderator, where
                assert e.actor == (e.member if e.reason == "left" else c.moderator), where
                c.members.discard(e.member)
                c.reported.discard(e.member)
            case PostCreated():
                assert e.post not in c.ever, where
                c.ever.add(e.post)
                c.posts[e.post] = e.actor
            case PostEdited():
                assert c.author(e.post, "post") == e.author == e.actor, where
            case PostDeleted():
                assert c.author(e.post, "post") == e.author, where
                assert e.actor == (e.author if e.reason == "author" else c.moderator), where
                c.drop_post(e.post)
            case ReplyCreated():
                assert e.reply not in c.ever, where
                assert c.author(e.post, "post") == e.post_author, where
                if e.parent is not None:
                    assert c.replies[e.parent][1] == e.post, f"{where}: parent elsewhere"
                c.ever.add(e.reply)
                c.replies[e.reply] = (e.actor, e.post)
            case ReplyDeleted():
                assert c.replies[e.reply] == (e.author, e.post), where
                assert e.actor == (e.author if e.reason == "author" else c.moderator), where
                c.drop_reply(e.reply)
            case ReactionAdded():
                assert c.author(e.target, e.target_kind) == e.target_author != e.actor, where
                expected_post = c.replies[e.target][1] if e.target_kind == "reply" else None
                assert e.post == expected_post, where
                assert e.target not in c.hidden, f"{where}: reaction to hidden content"
                key = (e.actor, e.target, e.kind)
                assert key not in c.reactions, f"{where}: same reaction twice"
                c.reactions.add(key)
            case ReactionRemoved():
                assert c.author(e.target, e.target_kind) == e.target_author, where
                key = (e.actor, e.target, e.kind)
                assert key in c.reactions, f"{where}: removes a reaction never added"
                c.reactions.discard(key)
            case AnswerAccepted():
                assert c.author(e.post, "post") == e.post_author == e.actor, where
                assert c.replies[e.reply] == (e.reply_author, e.post), where
                assert e.reply_author != e.post_author and e.post not in c.accepted, where
                c.accepted.add(e.post)
            case ContentReported():
                assert c.author(e.target, e.target_kind) == e.target_author != e.actor, where
                assert e.target != c.moderator, where
                c.reported.add(e.target)
            case ModerationDecided():
                assert e.actor == c.moderator, where
                assert e.target in c.reported, f"{where}: decision without an open report"
                assert c.author(e.target, e.target_kind) == e.target_author, where
                assert (e.until is not None) == (e.decision == "suspend"), where
                c.reported.discard(e.target)
                if e.decision == "hide":
                    c.hidden.add(e.target)
            case ContentHidden():
                assert c.author(e.target, e.target_kind) == e.target_author, where
                assert e.target not in c.hidden, where
                c.hidden.add(e.target)
            case ContentRestored():
                assert c.author(e.target, e.target_kind) == e.target_author, where
                assert e.target in c.hidden and e.actor == c.moderator, where
                c.hidden.discard(e.target)
            case _:  # pragma: no cover
                pytest.fail(f"{where}: unexpected type")


def test_the_same_seed_gives_the_same_events() -> None:
    first = list(sample_events(7, 3, 50, 2000, START))
    again = list(sample_events(7, 3, 50, 2000, START))
    assert first == again
    assert [encode(e) for e in first] == [encode(e) for e in again]
    other = list(sample_events(8, 3, 50, 2000, START))
    assert [e.id for e in other] != [e.id for e in first]
    assert [encode(e) for e in other] != [encode(e) for e in first]


def test_ids_are_derived_from_seed_and_index() -> None:
    events = list(sample_events(42, 2, 20, 300, START))
    assert [e.id for e in events] == [derived_event_id("sample", "42", str(i)) for i in range(300)]


def test_every_event_is_valid_and_round_trips() -> None:
    for event in sample_events(1, 5, 200, 5000, START):
        assert decode(encode(event)) == event


def test_every_event_type_appears() -> None:
    counts = Counter(e.TYPE for e in sample_events(1, 5, 200, 5000, START))
    assert set(counts) == {t.TYPE for t in EVENT_TYPES}
    assert counts["member.joined"] >= 5  # every community has members


@pytest.mark.parametrize(
    ("seed", "communities", "members", "count"),
    [(1, 5, 200, 5000), (2, 3, 30, 8000), (3, 1, 2, 500), (4, 2, 8, 6000), (5, 8, 40, 4000)],
)
def test_history_is_coherent(seed: int, communities: int, members: int, count: int) -> None:
    events = list(sample_events(seed, communities, members, count, START))
    assert len(events) == count
    check_coherent(events)


def test_times_increase_from_start_in_utc() -> None:
    start = datetime(2024, 6, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    events = list(sample_events(9, 2, 20, 1000, start))
    assert events[0].occurred_at >= start
    assert events[-1].occurred_at < start + DEFAULT_STEP * 1000
    assert all(e.occurred_at.tzinfo is not None for e in events)
    assert all(e.occurred_at.utcoffset() == timedelta(0) for e in events)


def test_live_times_change_nothing_but_times() -> None:
    """next_event(at) -- the demo's live phase -- yields the same facts at other times."""
    planned = list(sample_events(11, 3, 30, 3000, START))
    live = SampleTraffic(11, 3, 30, START)
    stuck_clock = START - timedelta(days=1)  # earlier than the last event: moved forward
    events = [live.next_event(stuck_clock) for _ in range(3000)]
    check_coherent(events)
    for a, b in zip(planned, events, strict=True):
        b = msgspec.structs.replace(b, occurred_at=a.occurred_at)
        if isinstance(b, ModerationDecided) and isinstance(a, ModerationDecided):
            b = msgspec.structs.replace(b, until=a.until)
        assert a == b


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SampleTraffic(1, 1, 2, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="at least"):
        SampleTraffic(1, 1, 1, START)
    with pytest.raises(ValueError, match="at least"):
        SampleTraffic(1, 0, 10, START)


def test_the_checker_catches_incoherence() -> None:
    events = list(sample_events(1, 1, 10, 400, START))
    first_reply = next(i for i, e in enumerate(events) if isinstance(e, ReplyCreated))
    reply = events[first_reply]
    assert isinstance(reply, ReplyCreated)
    its_post = next(
        i for i, e in enumerate(events) if isinstance(e, PostCreated) and e.post == reply.post
    )
    # a reply to a post that was never created
    without_post = events[:its_post] + events[its_post + 1 :]
    with pytest.raises(AssertionError, match=f"post {reply.post} does not exist"):
        check_coherent(without_post)
    # the right post, the wrong author
    wrong = list(events)
    wrong[first_reply] = msgspec.structs.replace(reply, post_author="m9999")
    with pytest.raises(AssertionError):
        check_coherent(wrong)
