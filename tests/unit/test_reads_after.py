"""A fold can read rows named by rows: Projection.reads_after, the engine's second load round.

The test projection credits a reaction to the author *stored on the post's row*, ignoring the
author the event carries, so the member's row can only be known after the post's row is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from events import CODEC, PostCreated, PostDeleted, ReactionAdded, ReplyCreated, derived_event_id
from events.catalogue import AnyEvent
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key, Row
from projections.database import create_engine
from projections.store import FoldFailed, FoldPolicy, ProjectionStore, RawMessage

T0 = datetime(2026, 5, 1, tzinfo=UTC)
CAP = 2


def _karma_table(metadata: sa.MetaData, table_name: TableNamer) -> sa.Table:
    """Points per member: what both test projections credit."""
    return sa.Table(
        table_name("karma"),
        metadata,
        sa.Column("member", sa.String, primary_key=True),
        sa.Column("points", sa.Integer, nullable=False, default=0),
    )


class Karma(Projection):
    """Posts remember their author; a reaction to a post gives its stored author a point, up to
    ``CAP``: crediting needs the author's row, known only from the post's row."""

    name = "karma"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        return {
            "posts": sa.Table(
                table_name("posts"),
                metadata,
                sa.Column("post", sa.String, primary_key=True),
                sa.Column("author", sa.String, nullable=False),
            ),
            "karma": _karma_table(metadata, table_name),
        }

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        return {"posts": [(e.target,) for e in _reactions(batch)]}

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        authors = [row["author"] for row in loaded["posts"].values() if row is not None]
        # Posts created earlier in the same batch are not stored yet: their authors come from
        # the events, as a fold sees them.
        authors += [d.event.actor for d in batch if isinstance(d.event, PostCreated)]
        return {"karma": [(a,) for a in authors]}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            event: AnyEvent = delivered.event  # type: ignore[assignment]
            match event:
                case PostCreated():
                    changes.put("posts", (event.post,), author=event.actor)
                case ReactionAdded():
                    post = changes.get("posts", (event.target,))
                    if post is None:
                        continue
                    member = changes.get("karma", (post["author"],))
                    if member is None or member["points"] < CAP:
                        changes.add("karma", (post["author"],), points=1)
                case _:
                    pass


def _reactions(batch: Sequence[Delivered]) -> list[ReactionAdded]:
    return [d.event for d in batch if isinstance(d.event, ReactionAdded)]


def _events() -> list[AnyEvent]:
    out: list[AnyEvent] = []
    for i, author in enumerate(["ann", "bob", "cy"]):
        out.append(
            PostCreated(
                id=derived_event_id("karma", "post", str(i)),
                community="c1",
                actor=author,
                occurred_at=T0 + timedelta(minutes=i),
                post=f"p{i}",
                title="t",
            )
        )
    for j in range(9):
        out.append(
            ReactionAdded(
                id=derived_event_id("karma", "like", str(j)),
                community="c1",
                actor="dee",
                occurred_at=T0 + timedelta(hours=1, minutes=j),
                target=f"p{j % 3}",
                target_kind="post",
                target_author="someone-else",  # ignored: the stored author counts
                kind="like",
            )
        )
    return out


def _applied(
    path: Path, projection: Projection, events: Sequence[AnyEvent], size: int
) -> sa.Engine:
    """A SQLite database at ``path`` with ``events`` applied in batches of ``size``."""
    engine = create_engine(f"sqlite:///{path}")
    store = ProjectionStore(engine, projection)
    store.ensure(1)
    messages = [
        RawMessage(seq, f"agora.c1.{e.TYPE}", CODEC.encode(e), seq)
        for seq, e in enumerate(events, start=1)
    ]
    last = 0
    for start in range(0, len(messages), size):
        last = store.apply(1, 0, last, messages[start : start + size]).last_seq
    return engine


def _points(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT member, points FROM karma__g1"))
        return {str(member): int(points) for member, points in result}


def _karma(tmp_path: Path, name: str, size: int) -> dict[str, int]:
    engine = _applied(tmp_path / f"{name}.db", Karma(), _events(), size)
    rows = _points(engine)
    engine.dispose()
    return rows


def test_rows_named_by_loaded_rows_are_loaded_before_the_fold(tmp_path: Path) -> None:
    expected = {"ann": CAP, "bob": CAP, "cy": CAP}  # three likes each
    assert _karma(tmp_path, "whole", 100) == expected  # posts created in the same batch
    assert _karma(tmp_path, "small", 2) == expected  # posts stored by earlier batches
    assert _karma(tmp_path, "single", 1) == expected


def test_without_the_second_round_the_fold_cannot_read_the_author(tmp_path: Path) -> None:
    class Blind(Karma):
        def reads_after(
            self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
        ) -> Mapping[str, Iterable[Key]]:
            return {}

    engine = create_engine(f"sqlite:///{tmp_path / 'blind'}.db")
    store = ProjectionStore(engine, Blind())
    store.ensure(1)
    messages = [
        RawMessage(seq, f"agora.c1.{e.TYPE}", CODEC.encode(e), seq)
        for seq, e in enumerate(_events(), start=1)
    ]
    store.apply(1, 0, 0, messages[:3])
    with pytest.raises(FoldFailed) as failed:  # the pause policy: the error reaches the caller
        store.apply(1, 0, 3, messages[3:], FoldPolicy.PAUSE)
    assert isinstance(failed.value.error, KeyError)
    assert "was not requested" in str(failed.value.error)
    engine.dispose()


class Roots(Projection):
    """A reaction to a reply credits the author of the reply's *root post*, found by following
    the parents stored on each reply's row: one more load round per level of the thread."""

    name = "roots"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        return {
            "nodes": sa.Table(
                table_name("nodes"),
                metadata,
                sa.Column("node", sa.String, primary_key=True),
                sa.Column("parent", sa.String),
                sa.Column("author", sa.String, nullable=False),
            ),
            "karma": _karma_table(metadata, table_name),
        }

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        return {"nodes": [(e.target,) for e in _reactions(batch)]}

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        rows = [row for row in loaded["nodes"].values() if row is not None]
        # Nodes created in this batch are not stored: theirs come from the events.
        created: list[tuple[str, str | None, str]] = [
            (d.event.reply, d.event.parent or d.event.post, d.event.actor)
            for d in batch
            if isinstance(d.event, ReplyCreated)
        ]
        created += [
            (d.event.post, None, d.event.actor) for d in batch if isinstance(d.event, PostCreated)
        ]
        parents = [(r["parent"],) for r in rows if r["parent"] is not None]
        parents += [(parent,) for _, parent, _ in created if parent is not None]
        authors = [(r["author"],) for r in rows] + [(author,) for _, _, author in created]
        return {"nodes": parents, "karma": authors}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            event: AnyEvent = delivered.event  # type: ignore[assignment]
            match event:
                case PostCreated():
                    changes.put("nodes", (event.post,), parent=None, author=event.actor)
                case ReplyCreated():
                    parent = event.parent or event.post
                    changes.put("nodes", (event.reply,), parent=parent, author=event.actor)
                case ReactionAdded():
                    node = changes.get("nodes", (event.target,))
                    while node is not None and node["parent"] is not None:
                        node = changes.get("nodes", (node["parent"],))
                    if node is not None:
                        changes.add("karma", (node["author"],), points=1)
                case _:
                    pass


def _thread() -> list[AnyEvent]:
    """A post by ann, a chain of replies four deep, and a like on the deepest reply."""
    at = iter(T0 + timedelta(minutes=i) for i in range(100))
    out: list[AnyEvent] = [
        PostCreated(
            id=derived_event_id("roots", "post"),
            community="c1",
            actor="ann",
            occurred_at=next(at),
            post="p",
            title="t",
        )
    ]
    parent: str | None = None
    for depth, author in enumerate(["bob", "cy", "dee", "eve"]):
        out.append(
            ReplyCreated(
                id=derived_event_id("roots", "reply", str(depth)),
                community="c1",
                actor=author,
                occurred_at=next(at),
                reply=f"r{depth}",
                post="p",
                post_author="ann",
                parent=parent,
            )
        )
        parent = f"r{depth}"
    out.append(
        ReactionAdded(
            id=derived_event_id("roots", "like"),
            community="c1",
            actor="fay",
            occurred_at=next(at),
            target="r3",
            target_kind="reply",
            target_author="eve",
            kind="like",
            post="p",
        )
    )
    return out


def test_rows_named_by_rows_of_later_rounds_are_loaded_too(tmp_path: Path) -> None:
    """The like's reply names its parent, which names its parent...: five rounds in all."""
    events = _thread()
    for size in (len(events) - 1, 1):  # the thread stored before the like; one event a batch
        engine = _applied(tmp_path / f"roots{size}.db", Roots(), events, size)
        karma = _points(engine)
        engine.dispose()
        assert karma == {"ann": 1}, size


def test_a_fold_whose_reads_never_settle_is_paused_with_the_reason(tmp_path: Path) -> None:
    class Endless(Karma):
        def reads_after(
            self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
        ) -> Mapping[str, Iterable[Key]]:
            return {"karma": [(f"m{len(loaded.get('karma', {}))}",)]}

    engine = create_engine(f"sqlite:///{tmp_path / 'endless'}.db")
    store = ProjectionStore(engine, Endless())
    store.ensure(1)
    first = _events()[0]
    with pytest.raises(FoldFailed) as failed:
        message = RawMessage(1, f"agora.c1.{first.TYPE}", CODEC.encode(first), 1)
        store.apply(1, 0, 0, [message], FoldPolicy.PAUSE)
    assert "still names new rows after 16 rounds" in str(failed.value)
    assert store.checkpoint(1) == 0
    engine.dispose()


class Votes(Projection):
    """Likes per (post, member); deleting a post removes every like under it, found by prefix."""

    name = "votes"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        return {
            "likes": sa.Table(
                table_name("likes"),
                metadata,
                sa.Column("post", sa.String, primary_key=True),
                sa.Column("member", sa.String, primary_key=True),
                sa.Column("n", sa.Integer, nullable=False, default=0),
            ),
            "karma": _karma_table(metadata, table_name),
        }

    def reads(self, batch: Sequence[Delivered]) -> Mapping[str, Iterable[Key]]:
        # A key shorter than the table's: every like of the deleted post.
        return {"likes": [(d.event.post,) for d in batch if isinstance(d.event, PostDeleted)]}

    def reads_after(
        self, batch: Sequence[Delivered], loaded: Mapping[str, Mapping[Key, Row | None]]
    ) -> Mapping[str, Iterable[Key]]:
        members = [(key[1],) for key, row in loaded.get("likes", {}).items() if row is not None]
        members += [(e.actor,) for e in _reactions(batch)]
        return {"karma": members}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            event: AnyEvent = delivered.event  # type: ignore[assignment]
            match event:
                case ReactionAdded():
                    changes.add("likes", (event.target, event.actor), n=1)
                case PostDeleted():
                    for key in changes.keys_under("likes", (event.post,)):
                        like = changes.get("likes", key)
                        assert like is not None
                        # Each liker gets a point back per like, in key order.
                        changes.add("karma", (key[1],), points=like["n"])
                        changes.delete("likes", key)
                case _:
                    pass


def _likes_then_delete() -> list[AnyEvent]:
    at = iter(T0 + timedelta(minutes=i) for i in range(100))
    out: list[AnyEvent] = []
    for j, (member, post) in enumerate([("ann", "p1"), ("bob", "p1"), ("ann", "p1"), ("cy", "p2")]):
        out.append(
            ReactionAdded(
                id=derived_event_id("votes", str(j)),
                community="c1",
                actor=member,
                occurred_at=next(at),
                target=post,
                target_kind="post",
                target_author="dee",
                kind="like",
            )
        )
    out.append(
        PostDeleted(
            id=derived_event_id("votes", "delete"),
            community="c1",
            actor="dee",
            occurred_at=next(at),
            post="p1",
            author="dee",
        )
    )
    return out


def test_a_key_prefix_loads_every_row_under_it(tmp_path: Path) -> None:
    """Whether the likes were stored before the deletion's batch or made in it."""
    events = _likes_then_delete()
    for size in (len(events), 1, 2):
        engine = _applied(tmp_path / f"votes{size}.db", Votes(), events, size)
        karma = _points(engine)
        with engine.connect() as conn:
            likes = conn.execute(sa.text("SELECT post, member, n FROM likes__g1")).all()
        engine.dispose()
        assert karma == {"ann": 2, "bob": 1}, size
        assert likes == [("p2", "cy", 1)], size
