"""Running the moderation service: the broker, the HTTP server and the reactor, until stopped.

:func:`serve` is transport plumbing only; the edge (``agora/moderation_wiring.py``) builds the
broker from the settings and the read side from the database, and calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from faststream.nats import NatsBroker

from events.publisher import Publisher
from events.subjects import STREAM
from services.moderation.auth import ModeratorTokens
from services.moderation.decisions import DecisionService
from services.moderation.http import create_app
from services.moderation.messaging import register
from services.moderation.reactor import DEFAULT_MAX_AGE, Reactor
from services.moderation.readside import HideCandidates, QueueLookup
from services.serving import HttpLimits, QuietServer, bind, http_config

_log = structlog.get_logger("services.moderation")


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Tunables of one moderation service process."""

    publish_timeout: float = 5.0
    publish_deadline: float = 30.0
    publish_max_in_flight: int = 4096
    reactor: bool = True
    """Run the auto-hide reactor in this process (run exactly one per deployment, see docs)."""
    reactor_interval: float = 1.0
    reactor_max_age: timedelta | None = DEFAULT_MAX_AGE
    http: HttpLimits = field(default_factory=HttpLimits)
    """Timeouts and the connection cap of the HTTP server."""


@dataclass(slots=True)
class Running:
    """What a running service exposes (to tests and to the caller's logs)."""

    port: int
    publisher: Publisher
    service: DecisionService
    reactor: Reactor | None


async def serve(
    broker: NatsBroker,
    lookup: QueueLookup,
    candidates: HideCandidates,
    tokens: ModeratorTokens,
    stop: asyncio.Event,
    *,
    id_key: bytes,
    host: str = "127.0.0.1",
    port: int = 8081,
    options: ServiceOptions | None = None,
    on_started: Callable[[Running], None] | None = None,
) -> None:
    """Serve decisions (HTTP and request-reply) and run the reactor until ``stop`` is set.

    ``id_key`` is the deployment's secret id key (the ids of hides and of idempotent decisions).
    """
    opts = options or ServiceOptions()
    sock = bind(host, port)
    bound = int(sock.getsockname()[1])
    nc = await broker.connect()
    publisher = Publisher(
        nc,
        ack_timeout=opts.publish_timeout,
        deadline=opts.publish_deadline,
        max_in_flight=opts.publish_max_in_flight,
    )
    js = nc.jetstream()

    async def head() -> int:
        return int((await js.stream_info(STREAM)).state.last_seq)

    service = DecisionService(lookup, publisher, id_key=id_key)
    reactor = (
        Reactor(
            candidates,
            publisher,
            head,
            id_key=id_key,
            interval=opts.reactor_interval,
            max_age=opts.reactor_max_age,
        )
        if opts.reactor
        else None
    )
    register(broker, service, tokens, reactor)
    config = http_config(create_app(service, tokens), opts.http, lifespan="off")
    server = QuietServer(config)
    tasks: list[asyncio.Task[None]] = []
    halt = asyncio.Event()  # ends the reactor; the caller's ``stop`` is only read
    try:
        await broker.start()
        tasks.append(asyncio.create_task(server.serve(sockets=[sock]), name="moderation-http"))
        if reactor is not None:
            tasks.append(asyncio.create_task(reactor.run(halt), name="moderation-reactor"))
        while not server.started:
            if tasks[0].done():
                await tasks[0]  # raises why the server could not start
                break
            await asyncio.sleep(0.01)
        _log.info(
            "moderation service started",
            http=f"http://{host}:{bound}",
            moderators=len(tokens),
            reactor=reactor is not None,
        )
        if on_started is not None:
            on_started(Running(bound, publisher, service, reactor))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        server.should_exit = True
        halt.set()
        for task in tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
        await broker.stop()
        sock.close()
        _log.info("moderation service stopped")
