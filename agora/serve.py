"""Runnable services by name, and the loop that runs one: ``agora serve NAME``.

A service is built from the settings and the running :class:`agora.stack.Stack` into a
:class:`Service`: an ASGI app (served by uvicorn) and/or a FastStream broker (its subscribers),
run together in one asyncio loop. :data:`SERVICES` maps names to builders; add a service by adding
a builder there.

Shutdown (``stop`` set, by SIGINT/SIGTERM in the command line) is graceful and in dependency
order: the HTTP server stops accepting and finishes the requests in progress, then the broker
drains its subscriptions (requests in progress are answered), then the stack closes the NATS
connection the publisher uses (and stops an embedded nats-server it started).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

import nats.errors
import structlog
from faststream.nats import NatsBroker

from agora.broker import nats_broker
from agora.config import Settings, env_name
from agora.errors import AgoraError, ConfigError
from agora.stack import Stack
from services.ingest import IngestHandler, InvalidTokenConfig, add_replier, create_app, load_grants
from services.serving import HttpLimits, QuietServer, bind, http_config

log = structlog.get_logger("agora.serve")

#: Seconds the HTTP server lets requests in progress finish after a stop.
GRACEFUL_SECONDS: Final = 10.0


@dataclass(frozen=True)
class Service:
    """The parts of one running service: an ASGI app to serve, a broker to start; either or both."""

    app: Any = None
    broker: NatsBroker | None = None


ServiceBuilder = Callable[[Settings, Stack], Service]
"""Builds a service from the settings and the started stack (NATS connected)."""


def build_ingest(settings: Settings, stack: Stack) -> Service:
    """Ingest: HTTP ``POST /v1/events`` and NATS request-reply ``agora-ingest.v1``.

    The publisher uses the stack's connection; the broker (the request-reply subscriber) has its
    own, whose lifecycle FastStream manages (drained on shutdown).
    """
    variable = env_name("ingest_tokens")
    if settings.ingest_tokens is None:
        raise ConfigError(f"{variable} is not set: ingest would refuse every producer")
    try:
        grants = load_grants(settings.ingest_tokens)
    except InvalidTokenConfig as error:
        raise ConfigError(f"{variable}: {error}") from None
    handler = IngestHandler(
        grants,
        stack.publisher(),
        max_body_bytes=settings.ingest_max_body_bytes,
        max_batch=settings.ingest_max_batch,
        max_future_skew=timedelta(seconds=settings.publish_max_future_skew),
    )
    broker = nats_broker(settings, stack.nats_url, "agora-ingest")
    add_replier(broker, handler)
    app = create_app(handler, ready=lambda: stack.nc.is_connected)
    log.info("ingest configured", producers=len(grants))
    return Service(app=app, broker=broker)


SERVICES: dict[str, ServiceBuilder] = {
    "ingest": build_ingest,
}
"""Services made of an app and a broker, by the name ``agora serve`` takes."""


@dataclass(frozen=True)
class ServeOptions:
    """What ``agora serve`` passes to a service that runs its own loop."""

    host: str = "127.0.0.1"
    port: int = 8001
    rate: float = 50.0
    """Simulator: events per second (daily average)."""
    seed: int = 1
    """Simulator: the seed of its traffic."""
    communities: int = 5
    """Simulator: how many communities it animates."""


ServiceRunner = Callable[
    [Settings, asyncio.Event, ServeOptions, Callable[[str | None], None]], Awaitable[None]
]
"""Runs a service with background work of its own (a reactor, a traffic source) until stop."""


async def _moderation(
    settings: Settings,
    stop: asyncio.Event,
    options: ServeOptions,
    ready: Callable[[str | None], None],
) -> None:
    from agora.moderation_wiring import run_moderation

    host = f"[{options.host}]" if ":" in options.host else options.host
    await run_moderation(
        settings,
        stop,
        options.host,
        options.port,
        on_started=lambda running: ready(f"http://{host}:{running.port}"),
    )


async def _simulator(
    settings: Settings,
    stop: asyncio.Event,
    options: ServeOptions,
    ready: Callable[[str | None], None],
) -> None:
    from agora.simulator_wiring import run_simulator

    ready(None)
    await run_simulator(settings, stop, options.rate, options.seed, options.communities)


RUNNERS: dict[str, ServiceRunner] = {
    "moderation": _moderation,
    "simulator": _simulator,
}
"""Services that run their own loop (moderation with its reactor, the simulator), by name."""


def service_names() -> list[str]:
    """Every name ``agora serve`` accepts, sorted."""
    return sorted([*SERVICES, *RUNNERS])


def _listen(host: str, port: int) -> socket.socket:
    """Bind a listening socket (port 0: any free port)."""
    try:
        return bind(host, port)
    except OSError as error:
        raise AgoraError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def run_service(
    name: str,
    settings: Settings,
    stop: asyncio.Event,
    *,
    host: str = "127.0.0.1",
    port: int = 8001,
    on_ready: Callable[[str | None], None] | None = None,
    serve_options: ServeOptions | None = None,
) -> None:
    """Run service ``name`` until ``stop`` is set, then shut it down gracefully.

    ``on_ready`` is called once it serves, with its HTTP URL (None for a service without one).
    Raises ConfigError for an unknown name or a bad setting, AgoraError when NATS or the port
    is unavailable.
    """
    runner = RUNNERS.get(name)
    if runner is not None:
        options = ServeOptions(host=host, port=port) if serve_options is None else serve_options
        await runner(settings, stop, options, on_ready or (lambda _url: None))
        log.info("service stopped", service=name)
        return
    builder = SERVICES.get(name)
    if builder is None:
        raise ConfigError(f"no service {name!r} (known: {', '.join(service_names())})")
    async with Stack(settings, name=f"agora-{name}") as stack:
        service = builder(settings, stack)
        sock = _listen(host, port) if service.app is not None else None
        try:
            if service.broker is not None:
                try:
                    await service.broker.start()
                except (OSError, TimeoutError, nats.errors.Error) as error:
                    raise AgoraError(f"cannot start the {name} subscribers: {error}") from error
            try:
                await _serve(name, service, sock, stop, on_ready, settings.http_limits())
            finally:
                if service.broker is not None:
                    await _stop_broker(name, service.broker)
        finally:
            if sock is not None:
                sock.close()
    log.info("service stopped", service=name)


async def _stop_broker(name: str, broker: NatsBroker) -> None:
    """Stop the subscribers and drain; if NATS is away (no drain possible), just close."""
    try:
        await broker.stop()
    except (OSError, TimeoutError, nats.errors.Error) as error:
        log.warning("cannot drain the subscriptions; closing", service=name, error=repr(error))
        with contextlib.suppress(Exception):
            await broker.connection.close()


async def _serve(
    name: str,
    service: Service,
    sock: socket.socket | None,
    stop: asyncio.Event,
    on_ready: Callable[[str | None], None] | None,
    limits: HttpLimits,
) -> None:
    """Serve the app (if any) until ``stop``; return once uvicorn has shut down."""
    if service.app is None or sock is None:
        if on_ready is not None:
            on_ready(None)
        await stop.wait()
        return
    config = http_config(
        service.app,
        limits,
        access_log=True,
        timeout_graceful_shutdown=int(GRACEFUL_SECONDS),
        lifespan="off",
    )
    server = QuietServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    stopped = asyncio.create_task(stop.wait())
    try:
        while not server.started and not serving.done():
            await asyncio.wait({serving}, timeout=0.01)
        if server.started:
            url = _url(sock)
            log.info("service listening", service=name, url=url)
            if on_ready is not None:
                on_ready(url)
        await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        server.should_exit = True
        await serving
    if not stop.is_set():
        raise AgoraError(f"the {name} HTTP server stopped unexpectedly")
