"""HTTP plumbing every service shares: uvicorn inside the caller's loop, on a socket bound first.

The caller owns the process's signals and its ``stop`` event; uvicorn only serves. Binding the
socket before starting uvicorn lets a caller ask for port 0 and learn the port it got.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: the caller ends it by setting ``should_exit``."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave the process's signal handling alone."""
        yield


def bind(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (port 0: any free port).

    Raises OSError when the address cannot be bound (the port is taken, the host is unknown).
    """
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
