"""services.serving: the socket is bound before uvicorn starts, and uvicorn leaves signals alone."""

from __future__ import annotations

import signal
import socket

import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI

from services.serving import QuietServer, bind, json_errors


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


async def test_an_unexpected_exception_is_a_json_500_and_one_log_record() -> None:
    app = json_errors(FastAPI())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    with structlog.testing.capture_logs() as records:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "internal error", "status": 500}
    (record,) = records
    assert (record["event"], record["log_level"], record["path"]) == (
        "http request failed",
        "error",
        "/boom",
    )
    assert "RuntimeError('boom')" in record["error"]
