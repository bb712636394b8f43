"""services.serving: the socket is bound before uvicorn starts, and uvicorn leaves signals alone."""

from __future__ import annotations

import signal
import socket

import pytest
import uvicorn

from services.serving import QuietServer, bind


def test_port_0_binds_a_free_port_that_a_second_bind_cannot_take() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0
        assert not sock.getblocking()
        with pytest.raises(OSError):
            bind("127.0.0.1", port).close()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # it listens
    finally:
        sock.close()


def test_the_server_installs_no_signal_handler() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    server = QuietServer(uvicorn.Config(app=lambda *_: None))
    with server.capture_signals():
        assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
