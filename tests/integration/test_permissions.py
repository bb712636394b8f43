"""Least privilege, proven on the real NATS cluster of deploy/nats and on PostgreSQL.

One 3-node cluster (:mod:`support.cluster`: the pinned nats-server, deploy/nats as written, only
ports, routes and store rendered) serves the whole module. Every role connects as its user of
deploy/nats/accounts.conf, with its own inbox prefix ``_INBOX_<user>``.

- The matrix: every role x every action (publish to its own and another community, request and
  answer the services' request subjects, subscribe to the shared ``_INBOX.>`` and to other
  users' inboxes, create consumers and streams, update, purge and delete the stream, delete a
  message), all checked at once, compared with :data:`EXPECTED` and printed as the table of
  docs/deploy.md#nats-roles. A refusal is the server's permissions violation; an allowed
  JetStream API request gets the API's answer.
- The attacks of issue 14, denied now: another user subscribing to ``agora-ingest.v1`` to read
  producers' bearer tokens and answer in ingest's place, while the real ingest service runs; a
  tenant subscribing to ``_INBOX.>`` (or the worker's inboxes) to read the events a real
  projection worker's ordered push consumer delivers; the system user purging the account.
- Agora's processes work with their users and prefixes: the worker's and the moderation
  service's push consumers deliver to ``_INBOX_<user>.*`` inboxes; the simulator publishes.
- The dashboard's read-only PostgreSQL role: the SQL of docs/operations.md, run as the roles it
  names, works (as the owner of the tables alone, ``CREATE ROLE`` is refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import nats
import nats.errors
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from support.cluster import Cluster, inbox_prefix, init_stream
from support.engine import make_events, wait_until

from agora.serve import run_service
from agora.simulator_wiring import run_simulator
from agora.stack import Stack
from events.publisher import Publisher, PublishStatus
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore

ROOT = Path(__file__).resolve().parents[2]
INGEST = "agora-ingest.v1"
DECIDE = "_agora.moderation.v1.decide"
STREAM_API = "$JS.API.STREAM"
ROLES = ("admin", "ingest", "simulator", "moderation", "worker", "forum-web", "breakglass")
"""The users of the AGORA account, in the matrix's column order."""

YES, NO, REFUSES = "yes", "no", "stream refuses"
"""A cell: allowed; refused by the server (permissions violation); allowed, but the stream's own
configuration (``deny_purge``, ``deny_delete``) refuses it."""

FAST = WorkerSettings(
    stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1, db_retry=0.2
)


# -- sessions -------------------------------------------------------------------------------------


@dataclass
class Session:
    """One role's connection, with the errors (permissions violations) the server sent it."""

    role: str
    nc: Client
    errors: list[str] = field(default_factory=list)

    def violation(self, kind: str, subject: str) -> bool:
        """True once the server refused ``kind`` ("publish", "subscription") on ``subject``."""
        wanted = f'permissions violation for {kind} to "{subject}"'.lower()
        return any(wanted in error.lower() for error in self.errors)


@contextlib.asynccontextmanager
async def session(cluster: Cluster, role: str) -> AsyncIterator[Session]:
    """Connect as ``role``'s user with its inbox prefix."""
    errors: list[str] = []

    async def on_error(error: Exception) -> None:
        errors.append(str(error))

    nc = await nats.connect(
        # One node for every session: a subscription is known there at once, so a probe
        # published right after it (by another session) finds it.
        servers=cluster.urls[:1],
        user=role,
        password=cluster.passwords[role],
        inbox_prefix=inbox_prefix(role),
        connect_timeout=2,
        error_cb=on_error,
    )
    try:
        yield Session(role, nc, errors)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def sessions(cluster: Cluster, roles: tuple[str, ...]) -> AsyncIterator[dict[str, Session]]:
    """A session per role, all open at once."""
    async with contextlib.AsyncExitStack() as stack:
        yield {role: await stack.enter_async_context(session(cluster, role)) for role in roles}


async def verdict(s: Session, kind: str, subject: str, allowed: asyncio.Future[Msg]) -> Msg | None:
    """Whichever comes first: the server's violation (None), or the evidence that it let through.

    Both are waited for: the server's ``-ERR`` may reach the client after a later ``PONG``, so a
    flush without an error proves nothing, and an allowed action must show its effect.
    """
    # Generous: on a loaded machine an allowed action's evidence can take seconds to arrive.
    deadline = asyncio.get_running_loop().time() + 60
    try:
        while not allowed.done():
            if s.violation(kind, subject):
                return None
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{s.role}: no verdict on {kind} to {subject}: {s.errors}")
            await asyncio.sleep(0.005)
        return allowed.result()
    finally:
        allowed.cancel()


async def refused(s: Session, kind: str, subject: str) -> None:
    """Wait for the server's permissions violation; fail if none comes."""
    await wait_until(
        lambda: s.violation(kind, subject), 5, f"{s.role} refused {kind} to {subject}", 0.005
    )


@dataclass
class Witness:
    """The break-glass session, which may do anything: it listens to request subjects and sends
    probes to subscriptions, so that an allowed action is seen to work."""

    s: Session
    awaited: dict[bytes, asyncio.Future[Msg]] = field(default_factory=dict)
    probes_stored: int = 0
    """Probes sent to ``agora.*`` subjects: the stream stores them."""

    def expect(self) -> tuple[bytes, asyncio.Future[Msg]]:
        """A fresh nonce, and the future its message resolves."""
        nonce = uuid.uuid4().hex.encode()
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self.awaited[nonce] = future
        return nonce, future

    async def heard(self, msg: Msg) -> None:
        """Callback of the witness's and the checked roles' subscriptions."""
        future = self.awaited.pop(msg.data, None)
        if future is not None and not future.done():
            future.set_result(msg)

    async def listen(self, *subjects: str) -> None:
        for subject in subjects:
            await self.s.nc.subscribe(subject, cb=self.heard)
        await self.s.nc.flush()


async def publish_event(s: Session, w: Witness, subject: str) -> str:
    """Publish an event message; allowed = the stream's acknowledgement comes back."""
    return await api(s, w, subject, {}, headers={"Nats-Msg-Id": str(uuid.uuid4())})


async def request(s: Session, w: Witness, subject: str) -> str:
    """Send a request to a service's subject; allowed = the witness, listening there, gets it."""
    nonce, heard = w.expect()
    await s.nc.publish(subject, nonce)
    await s.nc.flush()
    return NO if await verdict(s, "publish", subject, heard) is None else YES


async def subscribe(s: Session, w: Witness, subject: str) -> str:
    """Subscribe to ``subject``; allowed = a probe the witness sends there arrives."""
    nonce = uuid.uuid4().hex.encode()
    heard: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        if msg.data == nonce and not heard.done():
            heard.set_result(msg)

    sub = await s.nc.subscribe(subject, cb=on_message)
    await s.nc.flush()
    probe = subject.replace(">", f"probe.{nonce.decode()}")
    if probe.startswith("agora."):
        w.probes_stored += 1
    await w.s.nc.publish(probe, nonce)
    try:
        return NO if await verdict(s, "subscription", subject, heard) is None else YES
    finally:
        await sub.unsubscribe()


async def api(
    s: Session, w: Witness, subject: str, body: Any = None, headers: dict[str, str] | None = None
) -> str:
    """A request with a reply inbox (a JetStream API call, a publish to the stream): allowed = an
    answer comes; the stream's answer may still refuse it (``deny_purge``, ``deny_delete``)."""
    inbox = s.nc.new_inbox()
    sub = await s.nc.subscribe(inbox, max_msgs=1)
    payload = b"" if body is None else json.dumps(body).encode()
    await s.nc.publish(subject, payload, reply=inbox, headers=headers)
    await s.nc.flush()
    answer = await verdict(s, "publish", subject, asyncio.ensure_future(sub.next_msg(timeout=15)))
    if answer is None:
        await sub.unsubscribe()
        return NO
    error = json.loads(answer.data).get("error")
    if error is None:
        return YES
    if error.get("err_code") in (10075, 10076) or "not permitted" in error.get("description", ""):
        return REFUSES  # deny_purge / deny_delete: the stream itself says no
    return f"error {error.get('err_code')}: {error.get('description')}"


async def direct_get(s: Session, w: Witness) -> str:
    """Read one stored message by sequence (a direct get); allowed = the stream answers."""
    inbox = s.nc.new_inbox()
    sub = await s.nc.subscribe(inbox, max_msgs=1)
    subject = "$JS.API.DIRECT.GET.AGORA"
    await s.nc.publish(subject, b'{"seq": 1}', reply=inbox)
    await s.nc.flush()
    answer = await verdict(s, "publish", subject, asyncio.ensure_future(sub.next_msg(timeout=15)))
    if answer is None:
        await sub.unsubscribe()
        return NO
    return YES  # the message, or the stream's 404: either way the stream answered


# -- the matrix -----------------------------------------------------------------------------------


def other_inbox(role: str) -> str:
    """Another user's inboxes: the worker's (where its consumers deliver), or ingest's."""
    return f"{inbox_prefix('ingest' if role == 'worker' else 'worker')}.>"


Check = Callable[[Session, Witness, dict[str, Any]], Awaitable[str]]
"""One action, checked for one role's session (with the witness, and the stream's config)."""

ACTIONS: dict[str, Check] = {
    "publish an event of its community (`agora.c42.>`)": lambda s, w, _: publish_event(
        s, w, "agora.c42.post.created"
    ),
    "publish an event of another community (`agora.c99.>`)": lambda s, w, _: publish_event(
        s, w, "agora.c99.post.created"
    ),
    "publish a moderation decision (`agora.*.moderation.decided`)": lambda s, w, _: publish_event(
        s, w, "agora.c99.moderation.decided"
    ),
    f"request `{INGEST}`": lambda s, w, _: request(s, w, INGEST),
    f"request `{DECIDE}`": lambda s, w, _: request(s, w, DECIDE),
    f"subscribe to `{INGEST}` (read and answer requests)": lambda s, w, _: subscribe(s, w, INGEST),
    f"subscribe to `{DECIDE}` (read and answer requests)": lambda s, w, _: subscribe(s, w, DECIDE),
    "subscribe to the shared `_INBOX.>`": lambda s, w, _: subscribe(s, w, "_INBOX.>"),
    "subscribe to another user's inboxes (`_INBOX_<other>.>`)": lambda s, w, _: subscribe(
        s, w, other_inbox(s.role)
    ),
    "subscribe to its own inboxes (`_INBOX_<user>.>`)": lambda s, w, _: subscribe(
        s, w, f"{inbox_prefix(s.role)}.>"
    ),
    "subscribe to `agora.>` (events, live)": lambda s, w, _: subscribe(s, w, "agora.>"),
    "read the stream's info": lambda s, w, _: api(s, w, f"{STREAM_API}.INFO.AGORA"),
    "read a stored message by sequence (direct get)": lambda s, w, _: direct_get(s, w),
    "create a consumer on AGORA": lambda s, w, _: api(
        s,
        w,
        "$JS.API.CONSUMER.CREATE.AGORA",
        {"stream_name": "AGORA", "config": {"ack_policy": "none", "deliver_policy": "new"}},
    ),
    "create a stream": lambda s, w, _: api(
        s,
        w,
        f"{STREAM_API}.CREATE.SCRATCH_{s.role}",
        {"name": f"SCRATCH_{s.role}", "subjects": [f"scratch.{s.role}.>"], "storage": "memory"},
    ),
    "update the stream": lambda s, w, config: api(s, w, f"{STREAM_API}.UPDATE.AGORA", config),
    "purge the stream": lambda s, w, _: api(s, w, f"{STREAM_API}.PURGE.AGORA", {}),
    "delete a message": lambda s, w, _: api(s, w, f"{STREAM_API}.MSG.DELETE.AGORA", {"seq": 1}),
    "delete the stream": lambda s, w, _: api(s, w, f"{STREAM_API}.DELETE.AGORA"),
}
"""Each action of the matrix, by the row name of the table."""

LAST = "delete the stream"
"""Checked after all the others: the break-glass user really deletes the stream."""

_Y, _N, _R = YES, NO, REFUSES
EXPECTED: dict[str, tuple[str, ...]] = {
    # columns:                                      admin ingest sim  moder worker forum breakglass
    "publish an event of its community (`agora.c42.>`)": (_Y, _Y, _Y, _N, _N, _Y, _Y),
    "publish an event of another community (`agora.c99.>`)": (_Y, _Y, _Y, _N, _N, _N, _Y),
    "publish a moderation decision (`agora.*.moderation.decided`)": (_Y, _Y, _Y, _Y, _N, _N, _Y),
    f"request `{INGEST}`": (_N, _N, _N, _N, _N, _Y, _Y),
    f"request `{DECIDE}`": (_N, _N, _N, _N, _N, _N, _Y),
    f"subscribe to `{INGEST}` (read and answer requests)": (_N, _Y, _N, _N, _N, _N, _Y),
    f"subscribe to `{DECIDE}` (read and answer requests)": (_N, _N, _N, _Y, _N, _N, _Y),
    "subscribe to the shared `_INBOX.>`": (_N, _N, _N, _N, _N, _N, _Y),
    "subscribe to another user's inboxes (`_INBOX_<other>.>`)": (_N, _N, _N, _N, _N, _N, _Y),
    "subscribe to its own inboxes (`_INBOX_<user>.>`)": (_Y, _Y, _Y, _Y, _Y, _Y, _Y),
    "subscribe to `agora.>` (events, live)": (_Y, _N, _N, _N, _N, _N, _Y),
    "read the stream's info": (_Y, _Y, _Y, _Y, _Y, _N, _Y),
    "read a stored message by sequence (direct get)": (_Y, _Y, _Y, _Y, _Y, _N, _Y),
    "create a consumer on AGORA": (_Y, _N, _N, _Y, _Y, _N, _Y),
    "create a stream": (_Y, _N, _N, _N, _N, _N, _Y),
    "update the stream": (_N, _N, _N, _N, _N, _N, _Y),
    "purge the stream": (_N, _N, _N, _N, _N, _N, _R),
    "delete a message": (_N, _N, _N, _N, _N, _N, _R),
    "delete the stream": (_N, _N, _N, _N, _N, _N, _Y),
}
"""The matrix as deploy/nats means it: one row per action, one column per role of :data:`ROLES`."""

EVENT_ROWS = tuple(a for a in ACTIONS if a.startswith("publish an event") or "decision" in a)


def table(matrix: dict[str, tuple[str, ...]]) -> str:
    """The matrix as the Markdown table of docs/deploy.md."""
    lines = [
        "| action | " + " | ".join(f"`{r}`" for r in ROLES) + " |",
        "|---|" + "---|" * len(ROLES),
    ]
    lines += [f"| {action} | " + " | ".join(cells) + " |" for action, cells in matrix.items()]
    return "\n".join(lines)


def test_the_matrix_in_the_docs_is_the_one_tested() -> None:
    assert set(EXPECTED) == set(ACTIONS) and list(EXPECTED)[-1] == LAST
    assert table(EXPECTED) in (ROOT / "docs" / "deploy.md").read_text()


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-node cluster of deploy/nats for the whole module."""
    cluster = Cluster(tmp_path_factory.mktemp("permissions") / "cluster")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def stream(cluster: Cluster) -> None:
    """AGORA exists (created by ``agora stream init`` as admin; a no-op when it does)."""
    await init_stream(cluster)


async def stream_messages(admin: Session) -> int:
    reply = await admin.nc.request(f"{STREAM_API}.INFO.AGORA", b"", timeout=5)
    return int(json.loads(reply.data)["state"]["messages"])


async def test_each_role_may_do_exactly_its_part(cluster: Cluster, stream: None) -> None:
    async with sessions(cluster, ROLES) as by_role:
        admin = by_role["admin"]
        info = json.loads((await admin.nc.request(f"{STREAM_API}.INFO.AGORA", b"", timeout=5)).data)
        before = await stream_messages(admin)
        witness = Witness(by_role["breakglass"])
        await witness.listen(INGEST, DECIDE)

        async def row(action: str) -> tuple[str, ...]:
            check = ACTIONS[action]
            cells = (check(by_role[r], witness, info["config"]) for r in ROLES)
            return tuple(await asyncio.gather(*cells))

        rows = [a for a in ACTIONS if a != LAST]
        matrix = dict(zip(rows, await asyncio.gather(*(row(a) for a in rows)), strict=True))

        # What was let through reached the stream, and nothing refused did.
        stored = before + sum(matrix[a].count(YES) for a in EVENT_ROWS) + witness.probes_stored

        async def settled() -> bool:
            got = await stream_messages(admin)
            assert got <= stored, f"{got - stored} refused messages reached the stream"
            return got == stored

        await wait_until(settled, 10, "the allowed events and probes stored")
        matrix[LAST] = await row(LAST)  # the break-glass user deletes the stream, last
    print("\n" + table(matrix))
    assert matrix == EXPECTED, "\n" + table(matrix)
    await init_stream(cluster)  # as after a break-glass deletion: `agora stream init`


async def test_the_system_user_cannot_purge_the_agora_account(
    cluster: Cluster, stream: None
) -> None:
    async with session(cluster, "sys") as sys, session(cluster, "admin") as admin:
        witness = Witness(admin)
        assert await api(sys, witness, "$JS.API.ACCOUNT.PURGE.AGORA") == NO  # before: purged
        assert await api(admin, witness, f"{STREAM_API}.INFO.AGORA") == YES  # still there


async def test_a_service_user_checks_a_duplicate_against_the_stored_copy(
    cluster: Cluster, stream: None
) -> None:
    """The publisher of ingest (and of the simulator and moderation) reads the copy behind a
    "duplicate" acknowledgement: the same event is a duplicate, another under its id a conflict."""
    events = make_events(2, communities=1, seed=41)
    async with session(cluster, "ingest") as s:
        publisher = Publisher(s.nc, ack_timeout=2.0, deadline=10.0)
        assert (await publisher.publish(events[0])).status is PublishStatus.STORED
        assert (await publisher.publish(events[0])).status is PublishStatus.DUPLICATE
        squat = msgspec.structs.replace(events[1], id=events[0].id)
        assert (await publisher.publish_many([squat]))[0].status is PublishStatus.CONFLICT
        assert not s.errors


# -- the attacks of issue 14, denied now ----------------------------------------------------------


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def test_forged_replies_to_ingest_and_moderation_requests_are_denied_now(
    cluster: Cluster, stream: None, tmp_path: Path
) -> None:
    """No user but the service reads a request (its bearer token) or answers it first."""
    token = f"forum-{uuid.uuid4().hex}"
    grants = [
        {"producer": "forum-web", "sha256": sha256(token), "communities": ["c42"], "types": ["*"]}
    ]
    settings = cluster.settings("ingest", ingest_tokens=json.dumps(grants), data_dir=tmp_path)
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        run_service("ingest", settings, stop, port=0, on_ready=lambda _url: ready.set())
    )
    captured: list[str] = []

    async def forge(msg: Msg) -> None:
        captured.append((msg.headers or {}).get("Authorization", ""))
        await msg.respond(b'{"status": 200, "results": [{"status": "stored", "forged": true}]}')

    attackers = ("simulator", "admin", "worker", "moderation")
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with sessions(cluster, (*attackers, "forum-web")) as by_role:
            for role in attackers:
                s = by_role[role]
                subjects = (INGEST, DECIDE) if role != "moderation" else (INGEST,)
                for subject in subjects:
                    await s.nc.subscribe(subject, cb=forge)
                    await refused(s, "subscription", subject)

            event = {
                "id": str(uuid.uuid4()),
                "type": "post.created",
                "v": 1,
                "community": "c42",
                "actor": "m7",
                "occurred_at": "2026-03-01T12:00:00Z",
                "post": "p1",
                "title": "Which hops for a pale ale?",
            }
            reply = await by_role["forum-web"].nc.request(
                INGEST,
                json.dumps(event).encode(),
                timeout=10,
                headers={"Authorization": f"Bearer {token}"},
            )
            answer = json.loads(reply.data)
            assert answer["status"] == 200
            (result,) = answer["results"]
            assert result["status"] == "stored" and "forged" not in result  # the real service
            assert captured == []  # nobody else saw the token
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


async def test_a_tenant_cannot_read_what_the_worker_is_delivered(
    cluster: Cluster, stream: None, tmp_path: Path
) -> None:
    """A real projection worker, connected by Agora's own code as ``worker``, projects events;
    the ``_INBOX.>`` eavesdrop of issue 14 (and any other user on the worker's inboxes) is refused
    and receives nothing. The worker reads by pull requests, so its deliveries go to the reply
    subjects of its requests: the break-glass user, who may listen anywhere, sees them arrive
    under the worker's own inbox prefix and nowhere else."""
    overheard: list[str] = []
    witnessed: list[str] = []

    async def overhear(msg: Msg) -> None:
        overheard.append(msg.subject)

    async def witness(msg: Msg) -> None:
        witnessed.append(msg.reply)  # a pull request names where its messages are delivered

    engine = create_engine(f"sqlite:///{tmp_path / 'agora.db'}")
    store = ProjectionStore(engine, EventCounts())
    store.ensure(1)
    stop = asyncio.Event()
    eavesdroppers = ("forum-web", "ingest", "simulator", "moderation", "admin")
    try:
        async with (
            sessions(cluster, eavesdroppers) as by_role,
            session(cluster, "breakglass") as breakglass,
            Stack(cluster.settings("worker"), name="agora-worker") as worker_stack,
            Stack(cluster.settings("ingest"), name="agora-ingest") as ingest_stack,
        ):
            for s in by_role.values():
                for subject in ("_INBOX.>", f"{inbox_prefix('worker')}.>"):
                    await s.nc.subscribe(subject, cb=overhear)
                    await refused(s, "subscription", subject)

            # Pull requests are published to the consumer's NEXT subject with the reply inbox.
            await breakglass.nc.subscribe("$JS.API.CONSUMER.MSG.NEXT.AGORA.>", cb=witness)
            await breakglass.nc.flush()
            worker = Worker(worker_stack.js, store, generation=1, settings=FAST)
            projecting = asyncio.create_task(worker.run(stop))
            events = make_events(40, communities=4, seed=14, tag=uuid.uuid4().hex[:8])
            results = await ingest_stack.publisher().publish_many(events)
            assert all(r.ok for r in results)
            last = max(r.seq or 0 for r in results)
            await wait_until(lambda: (store.checkpoint(1) or 0) >= last, 30, "the worker")

            consumers = await by_role["admin"].nc.jetstream(timeout=5).consumers_info("AGORA")
            delivers = [c.config.deliver_subject for c in consumers if c.config.deliver_subject]
            assert delivers == [], "the worker's consumer is a pull consumer: no deliver subject"
            await breakglass.nc.flush()
            assert witnessed, "the worker's pull requests were not seen"
            assert all(r.startswith(f"{inbox_prefix('worker')}.") for r in witnessed), witnessed
            for s in by_role.values():
                await s.nc.flush()
            assert overheard == []
            stop.set()
            await asyncio.wait_for(projecting, 30)
    finally:
        stop.set()
        engine.dispose()


async def test_the_moderation_service_runs_with_its_permissions_and_inboxes(
    cluster: Cluster, stream: None, tmp_path: Path
) -> None:
    """The real service (FastStream broker, push consumer, reactor) connects as ``moderation``:
    its consumer delivers to its own inboxes."""
    settings = cluster.settings(
        "moderation",
        database_url=f"sqlite:///{tmp_path / 'agora.db'}",
        moderator_tokens="mod1@*=token-of-mod1",
        id_key="permissions-test-id-key-0123456789abcdef",
        data_dir=tmp_path,
    )
    stop, ready = asyncio.Event(), asyncio.Event()
    service = asyncio.create_task(
        run_service("moderation", settings, stop, port=0, on_ready=lambda _url: ready.set())
    )
    try:
        await asyncio.wait_for(ready.wait(), 30)
        async with session(cluster, "admin") as admin:
            js = admin.nc.jetstream(timeout=5)
            consumers = await js.consumers_info("AGORA")
            reports = [
                c for c in consumers if c.config.filter_subject == "agora.*.content.reported"
            ]
            assert reports, [c.config for c in consumers]
            assert all(
                (c.config.deliver_subject or "").startswith("_INBOX_moderation.") for c in reports
            )
    finally:
        stop.set()
        await asyncio.wait_for(service, 30)


async def test_the_simulator_runs_with_its_permissions(cluster: Cluster, stream: None) -> None:
    """``agora serve simulator``'s loop, as ``simulator``: stream info, publishes, acks."""
    stats = await run_simulator(
        cluster.settings("simulator"), asyncio.Event(), 200.0, 7, 2, duration=0.5
    )
    assert stats.stored > 0 and stats.failed == 0, stats


# -- the dashboard's read-only PostgreSQL role ----------------------------------------------------


def read_role_sql() -> list[tuple[str, str]]:
    """The SQL blocks of docs/operations.md's read-only section: (who runs it, the SQL).

    A block says who runs it on its first line (``-- run as: superuser`` or ``-- run as:
    agora``); one that does not is run as the section's prose says, by ``agora``, the owner.
    """
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## The dashboard's read-only database access", 1)[1].split("\n## ")[0]
    blocks = []
    for block in re.findall(r"```sql\n(.*?)```", section, re.S):
        who = re.match(r"-- run as: (\w+)", block)
        blocks.append((who[1] if who else "agora", block))
    assert blocks, "no SQL in the read-only section"
    return blocks


@pytest.mark.postgres
def test_the_read_role_sql_of_the_docs_works_as_written(postgres_server_url: str) -> None:
    """The owner ``agora`` is an ordinary role (as CloudNativePG makes it): no CREATEROLE."""
    tag = uuid.uuid4().hex[:10]
    owner, reader = f"agora_{tag}", f"agora_read_{tag}"
    server = sa.make_url(postgres_server_url)

    def engine(user: str | None) -> sa.Engine:
        url = (
            server.set(database=owner)
            if user is None
            else server.set(username=user, database=owner)
        )
        return sa.create_engine(url, isolation_level="AUTOCOMMIT")

    def run(e: sa.Engine, sql: str) -> None:
        with e.connect() as conn:
            conn.exec_driver_sql(sql)
        e.dispose()

    root = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    run(root, f"CREATE ROLE {owner} LOGIN NOSUPERUSER NOCREATEROLE")
    run(root, f"CREATE DATABASE {owner} OWNER {owner}")
    try:
        run(
            engine(owner),
            "CREATE TABLE before_grants (x int); INSERT INTO before_grants VALUES (1)",
        )
        for who, sql in read_role_sql():
            sql = re.sub(r"\bagora\b", owner, sql.replace("agora_read", reader))
            run(engine(None if who == "superuser" else owner), sql)
        run(engine(owner), "CREATE TABLE after_grants (x int); INSERT INTO after_grants VALUES (2)")

        as_reader = engine(reader)
        with as_reader.connect() as conn:
            assert conn.exec_driver_sql("SELECT x FROM before_grants").scalar() == 1
            assert conn.exec_driver_sql("SELECT x FROM after_grants").scalar() == 2
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.exec_driver_sql("INSERT INTO after_grants VALUES (3)")
        as_reader.dispose()
    finally:
        run(root, f"DROP DATABASE IF EXISTS {owner} WITH (FORCE)")
        run(root, f"DROP ROLE IF EXISTS {reader}")
        run(root, f"DROP ROLE IF EXISTS {owner}")
