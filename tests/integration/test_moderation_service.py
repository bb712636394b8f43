"""The moderation service on a real nats-server and a real database (SQLite, PostgreSQL).

Decisions arrive over HTTP (a real uvicorn on a free loopback port, driven by httpx) and over NATS
request-reply; the reactor publishes ``content.hidden`` exactly once per crossing of the auto-hide
threshold -- also when it dies halfway, when a lagging generation is forced active, and after a
rebuild. The moderation projection runs as a real worker on the same stream.

The reactor tests use a stream whose duplicate window is one second and wait until it has expired
(checked with a probe message), so a second publish of a hide would be *stored*, not deduplicated:
the tests then show that the reactor never sends one, rather than relying on the server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js import JetStreamContext
from support.engine import DB_KINDS, database_url, wait_until

from agora.config import Settings
from agora.embedded import EmbeddedNats
from agora.moderation_wiring import SqlHideCandidates, run_moderation
from agora.stream import StreamSettings, ensure_stream
from events import CODEC, ContentHidden, ContentReported, Event, MemberJoined
from events.ids import derived_event_id
from events.publisher import Publisher, PublishResult, PublishStatus
from events.subjects import STREAM
from projections.database import create_engine
from projections.lifecycle import bootstrap, build, start_generation
from projections.moderation import ModerationQueue
from projections.moderation import queries as q
from projections.runner import Worker, WorkerSettings
from projections.status import wait_for
from projections.store import ProjectionStore
from services.moderation.app import Running
from services.moderation.decisions import DECIDE_SUBJECT
from services.moderation.reactor import RULE, Reactor, SweepState, hide_event_id
from services.moderation.readside import HideCandidate

FAST = WorkerSettings(
    stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1, db_retry=0.2
)
C = "c1"
KEY = b"the-test-deployment-id-key-32-bytes!"
TOKEN = "token-of-mod1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SHORT_WINDOW = 1.0


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(params=DB_KINDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    engine = create_engine(database_url(request.param, tmp_path, request))
    yield engine
    engine.dispose()


def url_of(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.fixture
async def short_js(nats_server: EmbeddedNats) -> AsyncIterator[tuple[Client, JetStreamContext]]:
    """A connection and the AGORA stream with a one-second duplicate window."""
    client = await nats.connect(nats_server.url, connect_timeout=2)
    js = client.jetstream()
    await ensure_stream(js, StreamSettings(duplicate_window=SHORT_WINDOW))
    try:
        yield client, js
    finally:
        await client.close()


class Projection:
    """The moderation projection's generation 1, folded by a background worker."""

    def __init__(self, js: JetStreamContext, engine: sa.Engine) -> None:
        self.js = js
        self.engine = engine
        self.store = ProjectionStore(engine, ModerationQueue())
        bootstrap(self.store, 1)
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self, generation: int = 1) -> None:
        self._stop = asyncio.Event()
        worker = Worker(self.js, self.store, generation=generation, settings=FAST)
        self._task = asyncio.create_task(worker.run(self._stop))

    async def stop(self) -> None:
        if self._stop is not None and self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, 30)
        self._stop = self._task = None

    async def caught_up(self, seq: int) -> None:
        await wait_for(self.engine, ModerationQueue.name, seq, timeout=30)


@pytest.fixture
async def projection(js: JetStreamContext, engine: sa.Engine) -> AsyncIterator[Projection]:
    p = Projection(js, engine)
    p.start()
    yield p
    await p.stop()


@pytest.fixture
async def short_projection(
    short_js: tuple[Client, JetStreamContext], engine: sa.Engine
) -> AsyncIterator[Projection]:
    p = Projection(short_js[1], engine)
    p.start()
    yield p
    await p.stop()


# -- helpers ------------------------------------------------------------------------------------


def report(n: int, target: str = "p1", *, reason: str = "illegal", author: str = "ann") -> Event:
    """A report by a stranger: standing 0, so an ``illegal`` one weighs 1 + 5 = 6 points."""
    return ContentReported(
        id=uuid.uuid4(),
        community=C,
        actor=f"r{n}",
        occurred_at=datetime.now(UTC),
        report=f"rep-{target}-{n}",
        target=target,
        target_kind="post",
        target_author=author,
        reason=reason,  # type: ignore[arg-type]
    )


async def publish(publisher: Publisher, events: Iterable[Event]) -> list[int]:
    results = await publisher.publish_many(list(events))
    assert all(r.status is PublishStatus.STORED for r in results), results
    return [r.seq for r in results if r.seq is not None]


async def hides(js: JetStreamContext, community: str = C) -> int:
    """How many ``content.hidden`` the stream holds for ``community``."""
    subject = f"agora.{community}.content.hidden"
    info = await js.stream_info(STREAM, subjects_filter=subject)
    return int((info.state.subjects or {}).get(subject, 0))


async def head(js: JetStreamContext) -> int:
    return int((await js.stream_info(STREAM)).state.last_seq)


async def last_event(js: JetStreamContext, type_: str, community: str = C) -> Any:
    msg = await js.get_last_msg(STREAM, f"agora.{community}.{type_}")
    assert msg.data is not None
    return CODEC.decode(msg.data)


async def window_expired(publisher: Publisher) -> None:
    """Wait until the stream's duplicate window has passed for a message published now."""
    probe = MemberJoined(
        id=uuid.uuid4(),
        community="probe",
        actor="m1",
        occurred_at=datetime.now(UTC),
        member="m1",
    )
    assert (await publisher.publish(probe)).status is PublishStatus.STORED

    async def stored_again() -> bool:
        return (await publisher.publish(probe)).status is PublishStatus.STORED

    await wait_until(stored_again, 30, "the duplicate window to expire", poll=0.2)


async def cross(publisher: Publisher, projection: Projection, target: str = "p1") -> int:
    """Three ``illegal`` reports (18 points >= 15): the third crosses. Returns its sequence."""
    seqs = await publish(publisher, [report(n, target) for n in (1, 2, 3)])
    await projection.caught_up(seqs[-1])
    return seqs[-1]


def reactor_for(engine: sa.Engine, publisher: Any, js: JetStreamContext, **kwargs: Any) -> Reactor:
    return Reactor(
        SqlHideCandidates(engine), publisher, lambda: head(js), id_key=KEY, interval=0.05, **kwargs
    )


# -- decisions ----------------------------------------------------------------------------------


async def test_decisions_over_http_and_request_reply_are_validated_against_the_queue(
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine: sa.Engine,
    projection: Projection,
    tmp_path: Path,
) -> None:
    publisher = Publisher(nc)
    reported = await publish(publisher, [report(1, "p1", reason="spam"), report(2, "p2")])
    await projection.caught_up(reported[-1])

    settings = Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        database_url=url_of(engine),
        moderator_tokens=f"mod1@*={TOKEN},mod2@{C}|c2=another-token",
        id_key=KEY.decode(),
    )
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_moderation(settings, stop, "127.0.0.1", 0, on_started=started.set_result)
    )
    try:
        running = await asyncio.wait_for(started, 30)
        base = f"http://127.0.0.1:{running.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"ok": True}
            url = f"/v1/communities/{C}/decisions"
            body = {"target_kind": "post", "target": "p1", "decision": "remove", "note": "spam"}

            before = await head(js)
            refusals = [
                (await http.post(url, json=body), 401, "unauthorized"),
                (
                    await http.post(url, json=body, headers={"Authorization": "Bearer nope"}),
                    401,
                    "unauthorized",
                ),
                (
                    await http.post(url, json={**body, "target": "p404"}, headers=AUTH),
                    404,
                    "not_found",
                ),
                (
                    await http.post(url, json={**body, "decision": "suspend"}, headers=AUTH),
                    422,
                    "invalid",
                ),
                (
                    await http.post(url, json={**body, "colour": "red"}, headers=AUTH),
                    422,
                    "invalid",
                ),
                (
                    await http.post("/v1/communities/c%20x/decisions", json=body, headers=AUTH),
                    422,
                    "invalid",
                ),
            ]
            for response, status, code in refusals:
                assert response.status_code == status, response.text
                assert response.json()["ok"] is False
                assert response.json()["error"] == code
            assert "until" in refusals[3][0].json()["reason"]
            assert await head(js) == before, "a refused decision published something"

            decided = await http.post(url, json=body, headers=AUTH)
            assert decided.status_code == 201, decided.text
            answer = decided.json()
            assert (answer["ok"], answer["status"], answer["moderator"]) == (True, "stored", "mod1")
            assert answer["item_status"] == "pending"
            assert answer["seq"] == before + 1

            # The client's own id makes a retry safe: stored once, answered as a duplicate.
            key = str(uuid.uuid4())
            first = await http.post(url, json={**body, "id": key, "decision": "keep"}, headers=AUTH)
            again = await http.post(url, json={**body, "id": key, "decision": "keep"}, headers=AUTH)
            assert (first.status_code, again.status_code) == (201, 201)
            assert (first.json()["status"], again.json()["status"]) == ("stored", "duplicate")
            assert first.json()["seq"] == again.json()["seq"]

        event = await last_event(js, "moderation.decided")
        assert (event.actor, event.decision) == ("mod1", "keep")
        assert str(event.id) == first.json()["event_id"] == again.json()["event_id"] != key
        assert (event.target, event.target_author) == ("p1", "ann")  # the author from the queue
        await projection.caught_up(first.json()["seq"])
        with engine.connect() as conn:
            item = q.queue_item(conn, C, "post", "p1")
            decided_by = conn.execute(
                sa.select(q.STABLE.queue.c.decided_by).where(q.STABLE.queue.c.target == "p1")
            ).scalar()
        assert item is not None and item.status == "rejected"
        assert decided_by == "mod1"

        # Request-reply: the same rules, the same answers, the token in a header.
        async def ask(payload: dict[str, Any], token: str | None = TOKEN) -> dict[str, Any]:
            headers = {"Authorization": token} if token else None
            data = msgspec.json.encode(payload)
            reply = await nc.request(DECIDE_SUBJECT, data, timeout=10, headers=headers)
            result: dict[str, Any] = msgspec.json.decode(reply.data)
            return result

        request = {"community": C, "target_kind": "post", "target": "p2", "decision": "hide"}
        before = await head(js)
        assert (await ask(request, None))["error"] == "unauthorized"
        assert (await ask(request, "wrong-token"))["error"] == "unauthorized"
        assert (await ask({**request, "target": "nope"}))["error"] == "not_found"
        assert (await ask({**request, "target_kind": "thread"}))["error"] == "invalid"
        assert (await ask({k: v for k, v in request.items() if k != "community"}))[
            "error"
        ] == "invalid"
        assert await head(js) == before
        ok = await ask(request, "Bearer another-token")
        assert (ok["ok"], ok["status"], ok["moderator"], ok["seq"]) == (
            True,
            "stored",
            "mod2",
            before + 1,
        )
        event = await last_event(js, "moderation.decided")
        assert (event.actor, event.target, event.decision) == ("mod2", "p2", "hide")
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


# -- the reactor --------------------------------------------------------------------------------


async def test_the_running_service_hides_a_crossing_exactly_once(
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine: sa.Engine,
    projection: Projection,
    tmp_path: Path,
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        database_url=url_of(engine),
        id_key=KEY.decode(),
    )
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_moderation(settings, stop, "127.0.0.1", 0, on_started=started.set_result)
    )
    try:
        running = await asyncio.wait_for(started, 30)
        reactor = running.reactor
        assert reactor is not None
        publisher = Publisher(nc)
        two = await publish(publisher, [report(1), report(2)])  # 12 points: not yet
        await projection.caught_up(two[-1])
        third = (await publish(publisher, [report(3)]))[0]  # 18 points: crosses

        await wait_until(lambda: hides(js), 30, "the reactor to hide p1")
        event = await last_event(js, "content.hidden")
        assert isinstance(event, ContentHidden)
        assert (event.actor, event.rule, event.target, event.target_author) == (
            "system",
            RULE,
            "p1",
            "ann",
        )
        with engine.connect() as conn:
            marked = conn.execute(
                sa.select(q.STABLE.queue.c.auto_hide_due_at_seq, q.STABLE.queue.c.round)
            ).one()
        assert marked == (third, 1)
        candidate = HideCandidate(C, "post", "p1", "ann", 1, third, event.occurred_at, 18000)
        assert event.id == hide_event_id(candidate, KEY)

        # More reports on the hidden post, and many sweeps later: still one hide.
        more = await publish(publisher, [report(4), report(5)])
        await projection.caught_up(more[-1])
        sweeps = reactor.stats.sweeps
        await wait_until(
            lambda: (
                reactor.stats.sweeps >= sweeps + 5
                and reactor.last is not None
                and (reactor.last.applied or 0) >= more[-1]
            ),
            30,
            "the reactor to look again",
        )
        assert await hides(js) == 1
        assert (reactor.stats.attempts, reactor.stats.stored) == (1, 1)
        with engine.connect() as conn:
            assert q.hide_candidates(conn, limit=10) == []
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


class Dies:
    """A publisher wrapper that makes the reactor's process 'die' halfway through a publish.

    ``after_store=False``: it dies before sending anything; ``True``: after the stream stored the
    hides but before the reactor learns it. Either way the call never returns; the test cancels
    the reactor, which is what a SIGKILL does to a process with no state of its own.
    """

    def __init__(self, inner: Publisher, *, after_store: bool) -> None:
        self.inner = inner
        self.after_store = after_store
        self.reached = asyncio.Event()
        self.results: list[PublishResult] = []

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        batch = list(events)
        if self.after_store:
            self.results = await self.inner.publish_many(batch)
        self.reached.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def die_halfway(reactor: Reactor, dies: Dies) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(reactor.run(stop))
    await asyncio.wait_for(dies.reached.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_reactor_killed_before_its_publish_hides_once_after_the_restart(
    short_js: tuple[Client, JetStreamContext], engine: sa.Engine, short_projection: Projection
) -> None:
    nc, js = short_js
    publisher = Publisher(nc)
    await cross(publisher, short_projection)

    dies = Dies(publisher, after_store=False)
    await die_halfway(reactor_for(engine, dies, js), dies)
    assert await hides(js) == 0

    restarted = reactor_for(engine, publisher, js)
    assert (await restarted.sweep()).state is SweepState.PUBLISHED
    assert await hides(js) == 1
    await short_projection.caught_up(await head(js))
    await window_expired(publisher)
    assert (await restarted.sweep()).state is SweepState.IDLE
    assert (restarted.stats.attempts, await hides(js)) == (1, 1)


async def test_a_reactor_killed_after_its_publish_never_hides_twice(
    short_js: tuple[Client, JetStreamContext], engine: sa.Engine, short_projection: Projection
) -> None:
    nc, js = short_js
    publisher = Publisher(nc)
    crossing = await cross(publisher, short_projection)
    await short_projection.stop()  # the hide will sit unfolded in the stream

    dies = Dies(publisher, after_store=True)
    await die_halfway(reactor_for(engine, dies, js), dies)
    assert [r.status for r in dies.results] == [PublishStatus.STORED]
    assert await hides(js) == 1

    # The danger is real: the queue still shows the crossing, and a second publish of the same
    # event would now be stored (the duplicate window has passed).
    candidates = await SqlHideCandidates(engine).pending(None, 10)
    assert [(c.target, c.crossed_seq) for c in candidates] == [("p1", crossing)]
    await window_expired(publisher)

    restarted = reactor_for(engine, publisher, js)
    for _ in range(3):
        sweep = await restarted.sweep()
        assert sweep.state is SweepState.WAITING, sweep
    assert restarted.stats.attempts == 0

    short_projection.start()
    await short_projection.caught_up(await head(js))
    assert (await restarted.sweep()).state is SweepState.IDLE
    assert (restarted.stats.attempts, await hides(js)) == (0, 1)
    with engine.connect() as conn:
        item = q.queue_item(conn, C, "post", "p1")
    assert item is not None and item.hidden


async def test_a_rebuild_or_a_lagging_generation_made_active_does_not_hide_again(
    short_js: tuple[Client, JetStreamContext], engine: sa.Engine, short_projection: Projection
) -> None:
    nc, js = short_js
    publisher = Publisher(nc)
    crossing = await cross(publisher, short_projection)
    reactor = reactor_for(engine, publisher, js)
    assert (await reactor.sweep()).stored == 1
    await short_projection.caught_up(await head(js))
    assert (await reactor.sweep()).state is SweepState.IDLE
    await window_expired(publisher)
    store = short_projection.store

    # Generation 2 replays the stream up to the crossing: its tables show the crossing unhidden.
    assert start_generation(store, 1) == 2
    await asyncio.wait_for(
        Worker(js, store, generation=2, settings=FAST).run(until_seq=crossing), 30
    )
    rebuilt = SqlHideCandidates(engine, tables=q.ModerationTables.generation(2))
    assert [c.crossed_seq for c in await rebuilt.pending(None, 10)] == [crossing]
    assert (await reactor.sweep()).state is SweepState.IDLE  # it reads the active generation

    # An operator forces the lagging generation active: the reactor waits, fresh or not.
    await short_projection.stop()
    store.activate(2, require_caught_up=False)
    fresh = reactor_for(engine, publisher, js)
    for r in (reactor, fresh):
        sweep = await r.sweep()
        assert (sweep.state, sweep.applied) == (SweepState.WAITING, crossing), sweep
    short_projection.start(generation=2)
    await short_projection.caught_up(await head(js))
    assert (await reactor.sweep()).state is SweepState.IDLE
    assert (await fresh.sweep()).state is SweepState.IDLE

    # A regular rebuild, built beside and swapped in once caught up.
    assert start_generation(store, 1) == 3
    assert (await asyncio.wait_for(build(js, store, 3, settings=FAST), 60)).swapped
    assert store.active() == 3
    assert (await fresh.sweep()).state is SweepState.IDLE
    assert (reactor.stats.attempts, fresh.stats.attempts, await hides(js)) == (1, 0, 1)


async def test_old_crossings_are_left_alone(
    short_js: tuple[Client, JetStreamContext], engine: sa.Engine, short_projection: Projection
) -> None:
    nc, js = short_js
    publisher = Publisher(nc)
    await cross(publisher, short_projection)
    later = datetime.now(UTC) + timedelta(days=2)
    old = reactor_for(engine, publisher, js, clock=lambda: later)
    assert (await old.sweep()).state is SweepState.IDLE
    assert await hides(js) == 0
    assert (await reactor_for(engine, publisher, js).sweep()).stored == 1


# -- trust: ids no producer can squat, moderators in their communities --------------------------


def squatter(event_id: uuid.UUID) -> Event:
    """A producer's event in another community, published under an id it chose."""
    return MemberJoined(
        id=event_id,
        community="evil",
        actor="m1",
        occurred_at=datetime.now(UTC),
        member="m1",
    )


async def test_a_producer_cannot_suppress_an_auto_hide_by_publishing_its_id_first(
    js: JetStreamContext, nc: Client, engine: sa.Engine, projection: Projection
) -> None:
    publisher = Publisher(nc)
    crossing = await cross(publisher, projection)
    # The hide id as anyone could compute it from the public fields of the crossing.
    public = derived_event_id("moderation", "auto_hide", C, "post", "p1", "1", str(crossing))
    await publish(publisher, [squatter(public)])
    await projection.caught_up(await head(js))

    reactor = reactor_for(engine, publisher, js)
    sweep = await reactor.sweep()
    assert (sweep.stored, sweep.duplicates, sweep.conflicts) == (1, 0, 0), sweep
    assert await hides(js) == 1
    await projection.caught_up(await head(js))
    with engine.connect() as conn:
        item = q.queue_item(conn, C, "post", "p1")
    assert item is not None and item.hidden


async def test_a_hide_whose_id_names_another_message_is_a_conflict_not_done(
    js: JetStreamContext, nc: Client, engine: sa.Engine, projection: Projection
) -> None:
    """Even with the key leaked, the reactor never takes a squatted id for its stored hide."""
    publisher = Publisher(nc)
    crossing = await cross(publisher, projection)
    [candidate] = await SqlHideCandidates(engine).pending(None, 10)
    squatted = (await publish(publisher, [squatter(hide_event_id(candidate, KEY))]))[0]
    await projection.caught_up(squatted)

    reactor = reactor_for(engine, publisher, js)
    sweep = await reactor.sweep()
    assert (sweep.stored, sweep.duplicates, sweep.conflicts, sweep.failed) == (0, 0, 1, 0), sweep
    assert await hides(js) == 0
    assert [c.crossed_seq for c in await SqlHideCandidates(engine).pending(None, 10)] == [
        crossing
    ]  # still to hide: tried again at the next sweep
    assert reactor.stats.conflicts == 1


async def test_a_decision_cannot_take_another_events_id_nor_leave_the_moderators_communities(
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine: sa.Engine,
    projection: Projection,
    tmp_path: Path,
) -> None:
    publisher = Publisher(nc)
    [other] = [report(1, "p1", reason="spam")]
    reported = await publish(publisher, [other, report(2, "p2")])
    await projection.caught_up(reported[-1])
    settings = Settings(
        data_dir=tmp_path / "data",
        nats_url=nats_server.url,
        database_url=url_of(engine),
        moderator_tokens=f"mod1@{C}={TOKEN},mod2@c2|c3=another-token",
        id_key=KEY.decode(),
    )
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    service = asyncio.create_task(
        run_moderation(settings, stop, "127.0.0.1", 0, on_started=started.set_result)
    )
    try:
        running = await asyncio.wait_for(started, 30)
        url = f"/v1/communities/{C}/decisions"
        body = {"target_kind": "post", "target": "p1", "decision": "remove"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.port}") as http:
            # An id that is another event's: a new decision is stored, not "duplicate" of it.
            squat = await http.post(url, json={**body, "id": str(other.id)}, headers=AUTH)
            assert squat.status_code == 201, squat.text
            assert squat.json()["status"] == "stored"
            assert squat.json()["seq"] == reported[-1] + 1
            assert squat.json()["event_id"] != str(other.id)
            # The same key again: the same decision, stored once.
            again = await http.post(url, json={**body, "id": str(other.id)}, headers=AUTH)
            assert (again.status_code, again.json()["status"]) == (201, "duplicate")
            assert again.json()["seq"] == squat.json()["seq"]
            # The same key for another decision: refused, nothing published.
            before = await head(js)
            reused = await http.post(
                url, json={**body, "decision": "keep", "id": str(other.id)}, headers=AUTH
            )
            assert reused.status_code == 409, reused.text
            assert (reused.json()["ok"], reused.json()["error"]) == (False, "conflict")
            # A moderator of c2 and c3 deciding in c1: 403 over HTTP and request-reply.
            outside = await http.post(
                url, json=body, headers={"Authorization": "Bearer another-token"}
            )
            assert outside.status_code == 403, outside.text
            assert outside.json() == {
                "ok": False,
                "error": "forbidden",
                "reason": f"moderator 'mod2' may not decide in community {C!r}",
            }
        reply = await nc.request(
            DECIDE_SUBJECT,
            msgspec.json.encode({"community": C, **body}),
            timeout=10,
            headers={"Authorization": "another-token"},
        )
        assert msgspec.json.decode(reply.data)["error"] == "forbidden"
        assert await head(js) == before
        event = await last_event(js, "moderation.decided")
        assert (str(event.id), event.actor) == (squat.json()["event_id"], "mod1")
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)
