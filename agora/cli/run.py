"""`agora demo`, `agora up`, `agora worker`, `agora serve`: long-running commands."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agora.cli.common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    _check_names,
    _fail,
    _run_stoppable,
    _settings,
    _stop_on_signals,
    app,
    out,
)
from agora.config import Settings, sources
from agora.logs import configure_logging
from agora.registry import known_names

if TYPE_CHECKING:
    from agora.demo import RunOptions, RunReport


# -- demo, up ----------------------------------------------------------------------------------

HostOption = Annotated[
    str, typer.Option("--host", help="Address the dashboard and the services listen on.")
]
PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Dashboard port.")]
ModerationPortOption = Annotated[
    int,
    typer.Option("--moderation-port", min=0, max=65535, help="Moderation service port (0: any)."),
]
IngestPortOption = Annotated[
    int,
    typer.Option(
        "--ingest-port",
        min=0,
        max=65535,
        help="Ingest service port (0: any); it runs when AGORA_INGEST_TOKENS is set.",
    ),
]


def _run_stack_command(settings: Settings, options: RunOptions, quiet_logs: bool) -> None:
    """Run ``agora demo``/``agora up`` until stopped; exit 1 if a component failed."""
    from agora.demo import run_stack, summary_lines  # the web stack: imported only here

    if quiet_logs and sources()["log_level"] == "default":
        configure_logging(settings.log_format, "warning")  # the progress display says enough

    async def run() -> RunReport:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            return await run_stack(
                settings, options, stop, out, live_display=out.is_terminal and quiet_logs
            )

    report = _run_stoppable(run())
    for line in summary_lines(report):
        out.print(line, soft_wrap=True)
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    if not report.ok:
        raise typer.Exit(EXIT_FAILURE)


@app.command()
def demo(
    ctx: typer.Context,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            min=0,
            help="Seconds of live traffic once the projections caught up (default: Ctrl-C).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="DIR",
            help="Stack Exchange dump imported as history (default: AGORA_DEMO_DATA, else "
            "../shared/data/stackexchange-beer beside the repository if present).",
        ),
    ] = None,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="Simulator: events/s (daily average).")
    ] = 20.0,
    seed: Annotated[int, typer.Option("--seed", help="Simulator: seed of its traffic.")] = 1,
    communities: Annotated[
        int, typer.Option("--communities", min=1, help="Simulator: communities to animate.")
    ] = 5,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    moderation_port: ModerationPortOption = 8001,
    ingest_port: IngestPortOption = 8002,
) -> None:
    """Everything at once: stack, stream, import, workers, services, simulator, dashboard.

    Imports the Stack Exchange dump as history, waits until every projection caught up, then
    runs the simulator's live traffic and serves the dashboard (http://127.0.0.1:8000) until
    Ctrl-C or --duration seconds. Without AGORA_MODERATOR_TOKENS it makes a moderator token for
    the run and prints it.
    """
    from agora.demo import NoDump, RunOptions, demo_data, with_demo_moderator

    settings = _settings(ctx)
    try:
        directory = demo_data(settings, data)
    except NoDump as error:
        _fail(f"error: {error}", EXIT_USAGE)
    if directory is None:
        out.print(
            "no Stack Exchange dump found (--data DIR or AGORA_DEMO_DATA): no history is "
            "imported, the simulator's traffic is all there is",
            soft_wrap=True,
        )
    settings, token = with_demo_moderator(settings)
    if token is not None:
        out.print(f"moderator token of this run: {token} (member demo-moderator)", soft_wrap=True)
    options = RunOptions(
        host=host,
        port=port,
        moderation_port=moderation_port,
        ingest_port=ingest_port,
        data=directory,
        simulate=True,
        rate=rate,
        seed=seed,
        communities=communities,
        duration=duration,
        name="agora-demo",
    )
    _run_stack_command(settings, options, quiet_logs=True)


@app.command()
def up(
    ctx: typer.Context,
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    moderation_port: ModerationPortOption = 8001,
    ingest_port: IngestPortOption = 8002,
) -> None:
    """Run the stack until Ctrl-C or SIGTERM: workers, services and the dashboard.

    The same as `agora demo` without the import and the simulator, for real use.

    Uses the configured NATS and database (embedded nats-server and SQLite when unset); creates
    the stream if missing. Ingest runs when AGORA_INGEST_TOKENS is set. Exit 1 if a component
    fails (a port in use, the stream configured differently: exit 3).
    """
    from agora.demo import RunOptions

    options = RunOptions(
        host=host, port=port, moderation_port=moderation_port, ingest_port=ingest_port
    )
    _run_stack_command(_settings(ctx), options, quiet_logs=False)


def _partition_list(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        parts = sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of numbers: {value!r}") from None
    if not parts or parts[0] < 0:
        raise typer.BadParameter(f"partitions are numbers from 0: {value!r}")
    return parts


@app.command()
def worker(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="PROJECTION", help="Projections to run (default: all registered)."),
    ] = None,
    partitions: Annotated[
        int,
        typer.Option(
            "--partitions",
            min=1,
            help="Partitions of generations this worker creates (the first one, rebuilds).",
        ),
    ] = 1,
    only_partitions: Annotated[
        str | None,
        typer.Option(
            "--only-partitions",
            metavar="P,P...",
            help="Run only these live partitions (e.g. 0,3); other processes run the rest.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port."
        ),
    ] = None,
    metrics_addr: Annotated[
        str, typer.Option("--metrics-addr", help="Address the metrics endpoint listens on.")
    ] = "127.0.0.1",
) -> None:
    """Run projection workers until Ctrl-C or SIGTERM (exit 0): live, and any building ones.

    Each partition has one writer at a time (a lock in the database), so several worker
    processes can run side by side; an idle one takes over a partition whose owner died.
    Generations left building (an interrupted rebuild, a new projection version) are built and
    swapped in. One progress line per projection every few seconds goes to the log.
    """
    from agora.stack import Stack
    from agora.workers import run_workers

    settings = _settings(ctx)
    chosen = list(names or [])
    _check_names(chosen)
    only = _partition_list(only_partitions)

    async def run() -> None:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            async with Stack(settings, name="agora-worker") as stack:
                label = ", ".join(chosen or known_names())
                out.print(f"worker: {label} (Ctrl-C to stop)", soft_wrap=True)
                await run_workers(
                    stack,
                    chosen or None,
                    partitions,
                    only,
                    metrics_port,
                    stop,
                    metrics_addr=metrics_addr,
                )

    _run_stoppable(run())
    out.print("worker stopped")


@app.command()
def serve(
    ctx: typer.Context,
    name: Annotated[
        str, typer.Argument(metavar="SERVICE", help="The service to run, e.g. ingest.")
    ],
    host: Annotated[str, typer.Option("--host", help="Address the HTTP server listens on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="HTTP port (0: any free port).")
    ] = 8001,
    rate: Annotated[
        float, typer.Option("--rate", min=0.1, help="simulator: events/s (daily average).")
    ] = 50.0,
    seed: Annotated[int, typer.Option("--seed", help="simulator: seed of its traffic.")] = 1,
    communities: Annotated[
        int, typer.Option("--communities", min=1, help="simulator: communities to animate.")
    ] = 5,
) -> None:
    """Run a service until Ctrl-C or SIGTERM (exit 0): ingest, moderation or simulator.

    Requests in progress are finished before it exits; a second signal stops it at once
    (exit 1). See docs/ingest.md and docs/services.md.
    """
    # fastapi, uvicorn: imported only when serving
    from agora.serve import ServeOptions, run_service, service_names

    settings = _settings(ctx)
    if name not in service_names():
        _fail(f"error: no service {name!r} (known: {', '.join(service_names())})", EXIT_USAGE)
    options = ServeOptions(host=host, port=port, rate=rate, seed=seed, communities=communities)

    def ready(url: str | None) -> None:
        where = f" on {url}" if url else ""
        out.print(f"{name}: serving{where} (Ctrl-C to stop)", soft_wrap=True)

    async def run() -> None:
        stop = asyncio.Event()
        with _stop_on_signals(stop):
            await run_service(
                name, settings, stop, host=host, port=port, on_ready=ready, serve_options=options
            )

    _run_stoppable(run())
    out.print(f"{name} stopped")
