"""A bounded wire fuzz: hostile messages mixed with valid ones, straight onto the stream.

Every producer is untrusted, and a producer that bypasses the publisher can put any bytes on any
subject it may publish to. This test publishes a coherent valid history of five communities with
ten thousand hostile messages of five classes interleaved at random (bad JSON; bodies the schema
refuses; valid JSON the contract refuses -- a space for ``T``, a key twice, NUL, upper-case or
hyphenless ids, infinite, huge or deeply nested unknown fields, a leap second, years 9999 and 1;
valid events on another community's or type's subject; ids re-sent with other content), exact
copies, and one poison event that ``event_counts`` (made breakable for the test) cannot fold. It
folds the stream with every registered projection through real workers, and checks:

* every valid event is applied: each projection's tables (and seen table) equal a clean run that
  applies the valid messages alone, at the same sequences;
* every hostile message is set aside with its reason: exactly the expected dead letters, of the
  expected kind, and exact copies counted as duplicates;
* no projection paused, every checkpoint at the stream's head, and no community held back but
  the poisoned one, in the one projection that fails on it; after the fix, releasing it makes
  that projection equal the clean run too.

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
from support.engine import DB_KINDS, Breakable, dump, postgres_database
from support.sample import sample_events

from agora.registry import get_projections
from events import CODEC, Event, subject_of
from projections.api import Projection
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore, RawMessage

FAST = WorkerSettings(stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, db_retry=0.2)
START = datetime(2026, 3, 1, tzinfo=UTC)
VALID = 3_000
PER_CLASS = 2_000
COPIES = 500
POISON = "poison"


@dataclass(frozen=True, slots=True)
class Sent:
    """One message to publish: its class, subject and bytes, and what the engine must make of it."""

    kind: str  # valid, poison, copy, or a hostile class
    subject: str
    data: bytes
    expect: str | None  # the dead-letter kind it must get; None if applied or a copy
    community: str | None = None  # the event's community, when it is a valid event or a repeat


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


def _against_contract(rng: random.Random, data: bytes) -> bytes:
    """A valid event's JSON bent one way the contract refuses (issue 14, findings 1 and 7)."""
    body = json.loads(data)
    choice = rng.randrange(10)
    if choice == 0:
        body["occurred_at"] = body["occurred_at"].replace("T", " ")
    elif choice == 1:
        return data[:-1] + b',"actor":"m1"}'  # a key twice: msgspec would keep the last
    elif choice == 2:
        body["note_x"] = "auto\u0000hide"  # NUL in text, even in an unknown field
    elif choice == 3:
        body["id"] = body["id"].upper()
    elif choice == 4:
        body["id"] = body["id"].replace("-", "")
    elif choice == 5:
        return data[:-1] + b',"extra_n":1e999}'  # infinite
    elif choice == 6:
        body["extra_n"] = 2**80
    elif choice == 7:
        body["extra_deep"] = json.loads("[" * 40 + "]" * 40)
    elif choice == 8:
        body["occurred_at"] = body["occurred_at"][:11] + "23:59:60Z"  # a leap second
    else:
        body["occurred_at"] = rng.choice(["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"])
    return json.dumps(body).encode()


def hostile_stream(seed: int) -> list[Sent]:
    """Valid events of five communities, hostile messages anywhere, repeats after originals."""
    rng = random.Random(seed)
    events: list[Event] = list(sample_events(seed, 5, 60, VALID, START))
    poison_at = next(i for i in range(VALID // 3, VALID) if events[i].TYPE == "reply.created")
    events[poison_at] = msgspec.structs.replace(events[poison_at], actor=POISON)
    communities = sorted({e.community for e in events})
    placed: list[tuple[float, Sent]] = [
        (
            float(i),
            Sent(
                "poison" if i == poison_at else "valid",
                subject_of(e),
                CODEC.encode(e),
                None,
                e.community,
            ),
        )
        for i, e in enumerate(events)
    ]

    def anywhere(kind: str, subject: str, data: bytes, expect: str) -> None:
        placed.append((rng.uniform(-1, VALID), Sent(kind, subject, data, expect)))

    def after(index: int, item: Sent) -> None:
        placed.append((rng.uniform(index + 0.01, VALID), item))

    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        anywhere("bad_json", subject_of(events[i]), _bad_json(rng, placed[i][1].data), "invalid")
    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        body = json.loads(placed[i][1].data)
        anywhere("schema", subject_of(events[i]), _schema_invalid(rng, body), "invalid")
    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        data = _against_contract(rng, placed[i][1].data)
        anywhere("contract", subject_of(events[i]), data, "invalid")
    for _ in range(PER_CLASS):
        event = events[rng.randrange(VALID)]
        if rng.random() < 0.5:  # another community's subject: a producer writing elsewhere
            other = rng.choice([c for c in communities if c != event.community])
            subject = f"agora.{other}.{event.TYPE}"
        else:  # another type's subject
            other_type = "member.joined" if event.TYPE == "post.created" else "post.created"
            subject = f"agora.{event.community}.{other_type}"
        anywhere("subject_mismatch", subject, CODEC.encode(event), "subject_mismatch")
    for _ in range(PER_CLASS):
        i = rng.randrange(VALID)
        later = events[i].occurred_at + timedelta(seconds=rng.randrange(1, 999))
        changed = msgspec.structs.replace(events[i], occurred_at=later)
        data = CODEC.encode(changed)
        after(
            i,
            Sent("conflict", subject_of(changed), data, "conflicting_duplicate", changed.community),
        )
    for _ in range(COPIES):
        i = rng.randrange(VALID)
        original = placed[i][1]
        after(i, Sent("copy", original.subject, original.data, None, original.community))
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


def tables_of(engine: sa.Engine, projection: Projection, seen: bool = True) -> dict[str, list[str]]:
    """A projection's tables, and its seen table unless ``seen`` is false."""
    names = {t.name for t in ProjectionStore(engine, projection).generation(1).tables.values()}
    if seen:
        names.add(f"agora_seen_{projection.name}__g1")
    return {name: rows for name, rows in dump(engine).items() if name in names}


def clean_run(
    url: str, projection: Projection, messages: list[RawMessage], seen: bool = True
) -> dict[str, list[str]]:
    """``projection``'s tables after applying ``messages`` alone, in batches, without NATS."""
    engine = create_engine(url)
    try:
        store = ProjectionStore(engine, projection)
        # One clean database serves every projection, and one projection twice: start afresh.
        store.generation(1).metadata.drop_all(engine)
        with engine.begin() as conn:
            for infra in ("agora_checkpoints", "agora_generations"):
                if sa.inspect(conn).has_table(infra):
                    conn.execute(
                        sa.text(f"DELETE FROM {infra} WHERE projection = :p"),
                        {"p": projection.name},
                    )
        store.ensure(1)
        last = 0
        for start in range(0, len(messages), 1_000):
            last = store.apply(1, 0, last, messages[start : start + 1_000]).last_seq
        return tables_of(engine, projection, seen)
    finally:
        engine.dispose()


def engine_rows(engine: sa.Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(query))]


async def test_hostile_messages_are_set_aside_and_every_valid_event_is_applied(
    js: JetStreamContext, urls: tuple[str, str]
) -> None:
    sent = hostile_stream(seed=14)
    published_ns = time.time_ns()
    seqs = await publish_all(js, sent)
    head = seqs[-1]
    by_class = collections.Counter(s.kind for s in sent)
    hostile = sum(n for kind, n in by_class.items() if kind not in ("valid", "poison", "copy"))
    assert hostile >= 10_000 and len(by_class) == 8
    [(poison_seq, poisoned)] = [
        (q, s) for q, s in zip(seqs, sent, strict=True) if s.kind == "poison"
    ]
    assert poisoned.community is not None
    held = {
        q
        for q, s in zip(seqs, sent, strict=True)
        if s.community == poisoned.community and q > poison_seq
    }
    expected = {q: s.expect for q, s in zip(seqs, sent, strict=True) if s.expect}
    # (Stream timestamps only date dead letters, which the clean run has none of.)
    valid = [
        RawMessage(q, s.subject, s.data, published_ns)
        for q, s in zip(seqs, sent, strict=True)
        if s.kind in ("valid", "poison")
    ]

    breakable = Breakable(POISON)
    projections: list[Projection] = [breakable]
    projections += [p for p in get_projections() if p.name != breakable.name]
    fuzzed = create_engine(urls[0])
    try:
        stores = [ProjectionStore(fuzzed, p) for p in projections]
        for store in stores:
            store.ensure(1)
        workers = [Worker(js, store, generation=1, settings=FAST) for store in stores]
        await asyncio.wait_for(asyncio.gather(*(w.run(until_seq=head) for w in workers)), 240)

        letters = engine_rows(fuzzed, "SELECT projection, seq, kind FROM agora_dead_letters")
        checkpoints = {
            p: (int(last), int(dup), int(dead))
            for p, last, dup, dead in engine_rows(
                fuzzed,
                "SELECT projection, last_seq, duplicates, dead_letters FROM agora_checkpoints",
            )
        }
        states = engine_rows(fuzzed, "SELECT projection, state FROM agora_status")
        assert all(state != "paused" for _, state in states), states
        copies_held = sum(
            1 for q, s in zip(seqs, sent, strict=True) if s.kind == "copy" and q in held
        )
        for store in stores:
            name = store.projection.name
            got = {int(q): kind for p, q, kind in letters if p == name}
            if store.projection is breakable:
                # Only the poisoned community waits, behind its poison event. Its later repeats
                # wait with it, except those already judged in the poison's own batch (before
                # its fold failed), which are set aside as a clean run would.
                want = {q: k for q, k in expected.items() if q not in held}
                want[poison_seq] = "fold"
                early = {q: k for q, k in got.items() if q in held}
                assert {q: k for q, k in got.items() if q not in held} == want, name
                assert all(expected.get(q) == k for q, k in early.items()), early
                assert store.parked_communities(1) == [poisoned.community]
                last, duplicates, dead = checkpoints[name]
                assert (last, dead) == (head, len(got))
                assert by_class["copy"] - copies_held <= duplicates <= by_class["copy"]
                clean = [m for m in valid if m.seq not in held and m.seq != poison_seq]
            else:
                assert got == expected, f"{name}: dead letters differ from the hostile messages"
                assert store.parked_communities(1) == [], f"{name} parked a community"
                assert checkpoints[name] == (head, by_class["copy"], len(expected))
                clean = valid
            # A parked community's events after the poison in the poison's own batch are already
            # in the seen table (recorded before the fold failed); the held rest are not.
            seen = store.projection is not breakable
            mine = tables_of(fuzzed, store.projection, seen)
            assert mine == clean_run(urls[1], store.projection, clean, seen), name

        # The fix, then the release: the poisoned projection ends as if it had never failed.
        breakable.broken.clear()
        fixed = Breakable()
        released = stores[0].retry_community(1, poisoned.community)
        assert stores[0].parked_communities(1) == [], released
        got = {
            int(q): k
            for p, q, k in engine_rows(
                fuzzed, "SELECT projection, seq, kind FROM agora_dead_letters"
            )
            if p == breakable.name
        }
        assert got == expected
        final = engine_rows(
            fuzzed,
            "SELECT duplicates, dead_letters FROM agora_checkpoints "
            "WHERE projection = 'event_counts'",
        )
        assert final == [(by_class["copy"], len(expected))]
        assert tables_of(fuzzed, breakable) == clean_run(urls[1], fixed, valid)

        kinds = collections.Counter(expected.values())
        print(
            f"\nwire fuzz: {len(sent)} messages: {dict(sorted(by_class.items()))}; "
            f"dead letters per projection by kind: {dict(sorted(kinds.items()))}; "
            f"held in {breakable.name} behind seq {poison_seq}: {len(held)}; "
            f"projections: {[s.projection.name for s in stores]}"
        )
    finally:
        fuzzed.dispose()
