"""Serving the dashboard: uvicorn run programmatically inside the caller's event loop."""

from __future__ import annotations

import asyncio

import uvicorn

from agora.config import Settings
from agora.errors import AgoraError
from agora.web.api import create_app
from services.serving import QuietServer, http_config


class DashboardError(AgoraError):
    """The dashboard could not be served (the port is taken, the application failed to start)."""


async def serve_dashboard(
    settings: Settings, stop: asyncio.Event, host: str = "127.0.0.1", port: int = 8000
) -> None:
    """Serve the dashboard and its read API on ``host:port`` until ``stop`` is set.

    Reads the database of ``AGORA_READ_DATABASE_URL`` (else ``AGORA_DATABASE_URL``) read-only.
    Raises :class:`DashboardError` if the server cannot start (e.g. the port is in use) or ends
    by itself.
    """
    config = http_config(
        create_app(settings), settings.http_limits(), host=host, port=port, lifespan="on"
    )
    server = QuietServer(config)
    serving = asyncio.create_task(_serve(server))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        server.should_exit = True
        if not serving.done():
            await serving
    serving.result()  # the server's own error, if it failed
    if not stop.is_set():
        raise DashboardError(f"the dashboard on {host}:{port} stopped by itself")


async def _serve(server: uvicorn.Server) -> None:
    try:
        await server.serve()
    except SystemExit as error:  # uvicorn exits when it cannot bind or start the application
        raise DashboardError(
            f"cannot serve the dashboard on {server.config.host}:{server.config.port}"
        ) from error
