"""events.acting_member: whose activity an event is."""

from __future__ import annotations

from datetime import UTC, datetime

from events import PostCreated, ReactionAdded, ReactionRemoved, acting_member, new_event_id

AT = datetime(2026, 1, 1, tzinfo=UTC)


def reaction(cls: type[ReactionAdded] | type[ReactionRemoved], actor: str, anonymous: bool):
    """A like on post p1 by ``actor``."""
    return cls(
        id=new_event_id(),
        community="c",
        actor=actor,
        occurred_at=AT,
        target="p1",
        target_kind="post",
        target_author="author",
        kind="like",
        anonymous=anonymous,
    )


def test_a_members_event_is_their_activity() -> None:
    post = PostCreated(
        id=new_event_id(), community="c", actor="m1", occurred_at=AT, post="p1", title="t"
    )
    assert acting_member(post) == "m1"
    assert acting_member(reaction(ReactionAdded, "m2", anonymous=False)) == "m2"


def test_automation_and_anonymous_reactions_are_nobodys_activity() -> None:
    post = PostCreated(
        id=new_event_id(), community="c", actor="system", occurred_at=AT, post="p", title="t"
    )
    assert acting_member(post) is None
    for cls in (ReactionAdded, ReactionRemoved):
        assert acting_member(reaction(cls, "anon-17", anonymous=True)) is None
