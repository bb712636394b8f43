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

from events import CODEC, PostCreated, ReactionAdded, derived_event_id
from events.catalogue import AnyEvent
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes, Key, Row
from projections.database import create_engine
from projections.store import FoldFailed, ProjectionStore, RawMessage

T0 = datetime(2026, 5, 1, tzinfo=UTC)
CAP = 2


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
            "karma": sa.Table(
                table_name("karma"),
                metadata,
                sa.Column("member", sa.String, primary_key=True),
                sa.Column("points", sa.Integer, nullable=False, default=0),
            ),
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


def _karma(tmp_path: Path, name: str, size: int) -> dict[str, int]:
    engine = create_engine(f"sqlite:///{tmp_path / name}.db")
    store = ProjectionStore(engine, Karma())
    store.ensure(1)
    messages = [
        RawMessage(seq, f"agora.c1.{e.TYPE}", CODEC.encode(e), seq)
        for seq, e in enumerate(_events(), start=1)
    ]
    last = 0
    for start in range(0, len(messages), size):
        last = store.apply(1, 0, last, messages[start : start + size]).last_seq
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT member, points FROM karma__g1"))
        rows = {str(member): int(points) for member, points in result}
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
    with pytest.raises(FoldFailed) as failed:
        store.apply(1, 0, 3, messages[3:])
    assert isinstance(failed.value.error, KeyError)
    assert "was not requested" in str(failed.value.error)
    engine.dispose()
