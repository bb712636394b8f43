"""A bounded wire fuzz: hostile messages mixed with valid ones, straight onto the stream.

Every producer is untrusted, and a producer that bypasses the publisher can put any bytes on any
subject it may publish to. This test publishes a coherent valid history of five communities with
over ten thousand hostile messages of several classes interleaved at random, folds the stream with
every registered projection through real workers, and checks:

* every valid event is applied: each projection's tables (and seen table) equal a clean run that
  applies the valid messages alone, at the same sequences;
* every hostile message is set aside with its reason: exactly the expected dead letters, of the
  expected kind, and exact copies counted as duplicates;
* no projection paused, every checkpoint at the stream's head.

The counts by class are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import collections
import json
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from support.engine import DB_KINDS, dump, postgres_database

from agora.registry import get_projections
from agora.sample import sample_events
from events import CODEC, Event, subject_of
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore, RawMessage

FAST = WorkerSettings(stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, db_retry=0.2)
START = datetime(2026, 3, 1, tzinfo=UTC)
VALID = 3_000
PER_CLASS = 2_500
COPIES = 500


@dataclass(frozen=True, slots=True)
class Sent:
    """One message to publish: its class (``valid``, ``copy`` or a hostile class) and bytes."""

    kind: str
    subject: str
    data: bytes
    expect: str | None  # the dead-letter kind it must get, None if it is applied or a copy


def _bad_json(rng: random.Random, valid: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 0:
        return valid[: rng.randrange(1, len(valid))]  # truncated
    if choice == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if choice == 2:
        return b"[" * rng.randrange(1, 5000)
    return b"\xff\xfe" + valid


def _schema_invalid(rng: random.Random, body: dict[str, Any]) -> bytes:
    body = dict(body)
    choice = rng.randrange(8)
    if choice == 0:
        body["type"] = f"no.such.type{rng.randrange(99)}"
    elif choice == 1:
        body.pop(rng.choice(["id", "community", "actor", "occurred_at"]))  # all required
    elif choice == 2:
        body["community"] = "not a token!"
    elif choice == 3:
        body["v"] = 99
    elif choice == 4:
        body["id"] = "not-a-uuid"
    elif choice == 5:
        body["actor"] = "a" * 65  # one past the 64-character id limit
    elif choice == 6:
        body["occurred_at"] = "yesterday"
    else:
        body["actor"] = rng.randrange(10**6)  # a number where a string belongs
    return json.dumps(body).encode()


def hostile_stream(seed: int) -> list[Sent]:
    """Valid events of five communities, hostile messages anywhere, repeats after originals."""
    rng = random.Random(seed)
    events: list[Event] = list(sample_events(seed, 5, 60, VALID, START))
    communities = sorted({e.community for e in events})
    placed: list[tuple[float, Sent]] = [
        (float(i), Sent("valid", subject_of(e), CODEC.encode(e), None))
        for i, e in enumerate(events)
    ]

    def anywhere(item: Sent) -> None:
        placed.append((rng.uniform(-1, VALID), item))

    def after(index: int, item: Sent) -> None:
        placed.append((rng.uniform(index + 0.01, VALID), item))

    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        anywhere(
            Sent("bad_json", subject_of(events[i]), _bad_json(rng, placed[i][1].data), "invalid")
        )
    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        body = json.loads(placed[i][1].data)
        anywhere(Sent("schema", subject_of(events[i]), _schema_invalid(rng, body), "invalid"))
    for _ in range(PER_CLASS):
        event = events[rng.randrange(VALID)]
        if rng.random() < 0.5:  # another community's subject: a producer writing elsewhere
            other = rng.choice([c for c in communities if c != event.community])
            subject = f"agora.{other}.{event.TYPE}"
        else:  # another type's subject
            other_type = "member.joined" if event.TYPE == "post.created" else "post.created"
            subject = f"agora.{event.community}.{other_type}"
        anywhere(Sent("subject_mismatch", subject, CODEC.encode(event), "subject_mismatch"))
    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        later = events[i].occurred_at + timedelta(seconds=rng.randrange(1, 999))
        changed = msgspec.structs.replace(events[i], occurred_at=later)
        conflict = Sent(
            "conflict", subject_of(changed), CODEC.encode(changed), "conflicting_duplicate"
        )
        after(i, conflict)
    for _ in range(COPIES):
        i = rng.randrange(VALID)
        after(i, Sent("copy", placed[i][1].subject, placed[i][1].data, None))
    placed.sort(key=lambda p: p[0])
    return [item for _, item in placed]


async def publish_all(js: JetStreamContext, sent: list[Sent]) -> list[int]:
    """Publish in order, each under its own Nats-Msg-Id (the server's window deduplicates none)."""
    futures = [
        await js.publish_async(s.subject, s.data, headers={"Nats-Msg-Id": str(uuid.uuid4())})
        for s in sent
    ]
    acks = await asyncio.wait_for(asyncio.gather(*futures), 120)
    return [int(a.seq) for a in acks]


@pytest.fixture(params=DB_KINDS)
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two fresh databases of one kind: the fuzzed run's and the clean run's."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fuzzed'}.db", f"sqlite:///{tmp_path / 'clean'}.db"
        return
    server: str = request.getfixturevalue("postgres_server_url")
    fuzzed, drop_fuzzed = postgres_database(server)
    clean, drop_clean = postgres_database(server)
    try:
        yield fuzzed, clean
    finally:
        drop_fuzzed()
        drop_clean()


def projection_tables(engine: sa.Engine) -> dict[str, list[str]]:
    """Every projection table and seen table (the engine's bookkeeping left out)."""
    return {
        name: rows
        for name, rows in dump(engine).items()
        if not name.startswith("agora_") or name.startswith("agora_seen_")
    }


async def test_hostile_messages_are_set_aside_and_every_valid_event_is_applied(
    js: JetStreamContext, urls: tuple[str, str]
) -> None:
    sent = hostile_stream(seed=14)
    published_ns = time.time_ns()
    seqs = await publish_all(js, sent)
    head = seqs[-1]
    by_class = collections.Counter(s.kind for s in sent)
    hostile = sum(n for kind, n in by_class.items() if kind not in ("valid", "copy"))
    assert hostile >= 10_000 and len({s.kind for s in sent}) >= 5

    fuzzed = create_engine(urls[0])
    clean = create_engine(urls[1])
    try:
        stores = [ProjectionStore(fuzzed, p) for p in get_projections()]
        for store in stores:
            store.ensure(1)
        workers = [Worker(js, store, generation=1, settings=FAST) for store in stores]
        await asyncio.wait_for(asyncio.gather(*(w.run(until_seq=head) for w in workers)), 240)

        # The clean run: the valid messages alone, at the same sequences, without NATS.
        # (Stream timestamps only date dead letters, which the clean run has none of.)
        messages = [
            RawMessage(seq, s.subject, s.data, published_ns)
            for seq, s in zip(seqs, sent, strict=True)
            if s.kind == "valid"
        ]
        for projection in get_projections():
            store = ProjectionStore(clean, projection)
            store.ensure(1)
            last = 0
            for start in range(0, len(messages), 1_000):
                last = store.apply(1, 0, last, messages[start : start + 1_000]).last_seq
        assert projection_tables(fuzzed) == projection_tables(clean)

        expected = {seq: s.expect for seq, s in zip(seqs, sent, strict=True) if s.expect}
        with fuzzed.connect() as conn:
            letters = conn.execute(
                sa.text("SELECT projection, seq, kind FROM agora_dead_letters")
            ).all()
            checkpoints = conn.execute(
                sa.text(
                    "SELECT projection, last_seq, duplicates, dead_letters FROM agora_checkpoints"
                )
            ).all()
            states = conn.execute(sa.text("SELECT projection, state FROM agora_status")).all()
        for store in stores:
            name = store.projection.name
            got = {int(seq): kind for p, seq, kind in letters if p == name}
            assert got == expected, f"{name}: dead letters differ from the hostile messages"
        assert {(p, int(last), int(dup), int(dead)) for p, last, dup, dead in checkpoints} == {
            (store.projection.name, head, by_class["copy"], len(expected)) for store in stores
        }
        assert all(state != "paused" for _, state in states), states
        kinds = collections.Counter(expected.values())
        print(
            f"\nwire fuzz: {len(sent)} messages: {dict(sorted(by_class.items()))}; "
            f"dead letters per projection by kind: {dict(sorted(kinds.items()))}; "
            f"projections: {[s.projection.name for s in stores]}"
        )
    finally:
        fuzzed.dispose()
        clean.dispose()
