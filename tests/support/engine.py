"""Building histories, publishing them, computing oracles and comparing projection databases.

Used by the engine's unit, property, integration and fault tests. Everything here is real: events
are encoded by the real codec, published to a real JetStream stream, and databases are dumped
with plain SQL.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext

from events import (
    CODEC,
    Event,
    MemberJoined,
    PostCreated,
    ReactionAdded,
    ReplyCreated,
    derived_event_id,
)
from events.subjects import subject_of
from projections.api import Delivered
from projections.changes import Changes
from projections.counts import EventCounts
from projections.database import reader

T0 = datetime(2026, 3, 1, tzinfo=UTC)

Key = tuple[str, str, date]
"""A row key of ``event_counts``: (community, type, day)."""


@dataclass(frozen=True, slots=True)
class Wire:
    """One message as it is published: subject, payload bytes and Nats-Msg-Id."""

    subject: str
    data: bytes
    msg_id: str


def make_events(
    n: int, *, communities: int = 8, seed: int = 0, days: int = 4, tag: str = "e"
) -> list[Event]:
    """``n`` valid events of four types over ``communities`` and ``days``, ids unique per tag."""
    rng = random.Random(seed)
    events: list[Event] = []
    for i in range(n):
        common: dict[str, Any] = {
            "id": derived_event_id("test", tag, str(seed), str(i)),
            "community": f"c{rng.randrange(communities)}",
            "actor": f"m{rng.randrange(40)}",
            "occurred_at": T0 + timedelta(seconds=rng.randrange(days * 86_400)),
        }
        kind = rng.randrange(4)
        event: Event
        if kind == 0:
            event = MemberJoined(**common, member=common["actor"])
        elif kind == 1:
            event = PostCreated(**common, post=f"p{i}", title=f"Post {i}")
        elif kind == 2:
            event = ReplyCreated(**common, reply=f"r{i}", post="p1", post_author="m1")
        else:
            event = ReactionAdded(
                **common, target="p1", target_kind="post", target_author="m1", kind="like"
            )
        events.append(event)
    return events


def wires(events: Iterable[Event]) -> list[Wire]:
    """Encode events as they go on the wire (subject, bytes, their id as Nats-Msg-Id)."""
    return [Wire(subject_of(e), CODEC.encode(e), str(e.id)) for e in events]


async def publish(js: JetStreamContext, messages: Sequence[Wire]) -> list[int]:
    """Publish ``messages`` in order (pipelined) and return their stream sequences."""
    futures = []
    for m in messages:
        futures.append(await js.publish_async(m.subject, m.data, headers={"Nats-Msg-Id": m.msg_id}))
    acks = await asyncio.wait_for(asyncio.gather(*futures), 120)
    seqs = [int(a.seq) for a in acks]
    assert not any(a.duplicate for a in acks), "a message was dropped as a duplicate"
    return seqs


async def stream_head(js: JetStreamContext) -> int:
    """The AGORA stream's last sequence."""
    return int((await js.stream_info("AGORA")).state.last_seq)


Counts = dict[Key, tuple[int, int, int]]
"""Rows of event_counts: key -> (events, first_seq, last_seq)."""


def oracle(pairs: Iterable[tuple[int, Event]]) -> Counts:
    """What EventCounts must hold after folding ``(seq, event)`` pairs (each counted once)."""
    out: dict[Key, list[int]] = {}
    for seq, event in pairs:
        key = (event.community, event.TYPE, event.occurred_at.date())
        row = out.get(key)
        if row is None:
            out[key] = [1, seq, seq]
        else:
            row[0] += 1
            row[1] = min(row[1], seq)
            row[2] = max(row[2], seq)
    return {k: (v[0], v[1], v[2]) for k, v in out.items()}


def counts(engine: sa.Engine, table: str = "event_counts__g1") -> Counts:
    """The rows of an event_counts table (or view) as a dict."""
    with reader(engine).connect() as conn:
        rows = conn.execute(
            sa.text(f'SELECT community, type, day, events, first_seq, last_seq FROM "{table}"')
        ).all()
    out: Counts = {}
    for community, type_, day, events, first, last in rows:
        if isinstance(day, str):  # a view on SQLite loses the column type
            day = date.fromisoformat(day)
        out[(community, type_, day)] = (int(events), int(first), int(last))
    return out


def checkpoint_row(engine: sa.Engine, projection: str, generation: int, partition: int = 0) -> Any:
    """The checkpoint row of one partition (last_seq, events, duplicates, dead_letters)."""
    with reader(engine).connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT last_seq, events, duplicates, dead_letters FROM agora_checkpoints "
                "WHERE projection = :p AND generation = :g AND partition = :n"
            ),
            {"p": projection, "g": generation, "n": partition},
        ).one()


def dump(
    engine: sa.Engine, exclude: Iterable[str] = ("agora_status", "agora_leases")
) -> dict[str, list[str]]:
    """Every row of every table, as sorted reprs: two equal dumps are identical databases.

    ``agora_status`` and ``agora_leases`` are left out by default: they record wall-clock times
    and worker ids.
    """
    skip = set(exclude)
    out: dict[str, list[str]] = {}
    with reader(engine).connect() as conn:
        names = sorted(sa.inspect(conn).get_table_names())
        for name in names:
            if name in skip:
                continue
            rows = conn.execute(sa.text(f'SELECT * FROM "{name}"')).all()
            out[name] = sorted(repr(tuple(_plain(v) for v in row)) for row in rows)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


async def wait_until(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float,
    what: str,
    poll: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> float:
    """Poll ``check`` until it is true; return the seconds it took; fail after ``timeout``.

    ``detail`` adds what the failure message should show (a worker's log, a status row).
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            shown = f"\n{detail()}" if detail is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{shown}")
        await asyncio.sleep(poll)


def database_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "p") -> str:
    """A fresh database of ``kind`` (sqlite or postgres) for one test."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name}.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


def postgres_database(server_url: str) -> tuple[str, Callable[[], None]]:
    """Create one more fresh PostgreSQL database; return its URL and a function dropping it."""
    import uuid

    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"agora_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    return url, drop


DB_KINDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
"""Parametrisation over both supported databases; PostgreSQL tests carry the postgres marker."""


class Breakable(EventCounts):
    """EventCounts whose fold raises on events whose actor is in ``broken`` (the bug)."""

    def __init__(self, *broken: str) -> None:
        self.broken = set(broken)

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            if delivered.event.actor in self.broken:
                raise RuntimeError(f"cannot fold the event at seq {delivered.seq}")
        super().fold(batch, changes)
