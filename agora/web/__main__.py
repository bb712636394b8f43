"""Serve the dashboard alone: ``python -m agora.web [--host H] [--port P]`` (deploy/ images).

Runs :func:`agora.web.server.serve_dashboard` with the ``AGORA_*`` settings until SIGINT or
SIGTERM (exit 0). It needs no NATS: only the database (``AGORA_READ_DATABASE_URL``, else
``AGORA_DATABASE_URL``), read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from agora.config import load_settings
from agora.errors import AgoraError, ConfigError
from agora.logs import configure_logging
from agora.web.server import serve_dashboard


async def _main(host: str, port: int) -> None:
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve_dashboard(settings, stop, host, port)


def parser() -> argparse.ArgumentParser:
    """The command line: ``--host`` and ``--port``."""
    out = argparse.ArgumentParser(prog="python -m agora.web", description=__doc__)
    out.add_argument("--host", default="127.0.0.1", help="address to listen on")
    out.add_argument("--port", type=int, default=8000, help="port to listen on")
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and serve until a signal; return the exit code."""
    args = parser().parse_args(argv)
    try:
        asyncio.run(_main(args.host, args.port))
    except AgoraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ConfigError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
