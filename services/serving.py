"""HTTP plumbing every service shares: uvicorn inside the caller's loop, on a socket bound first.

The caller owns the process's signals and its ``stop`` event; uvicorn only serves. Binding the
socket before starting uvicorn lets a caller ask for port 0 and learn the port it got.

A client cannot tie a service up: :func:`http_config` serves with :class:`GuardedH11Protocol`,
uvicorn's h11 protocol plus what uvicorn lacks -- a deadline for the request head (from the
connection's opening or the previous response's end: this bounds idle connections and
slowloris heads alike), a deadline for the whole body, and a cap on open connections (beyond it
a request is answered 503 and the connection closed). uvicorn's own keep-alive timeout bounds
idle kept-alive connections. Every error is a JSON body: :func:`json_errors` puts a guard
around an application that answers an unexpected exception with a JSON 500 and logs it as one
line, and logs a client that went away mid-request as one line without a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import h11
import msgspec
import structlog
import uvicorn
from fastapi import FastAPI
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

_log = structlog.get_logger("services.serving")


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


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """How long a client may take, and how many connections one process holds open."""

    header_timeout: float = 10.0
    """Seconds for a request's head, from the connection's opening or the last response's end."""
    body_timeout: float = 30.0
    """Seconds for a request's whole body, from the end of its head."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle kept-alive connection stays open after a response."""
    max_connections: int = 1000
    """Open connections; a request on one beyond this is answered 503 and the connection closed."""


class HttpConfig(uvicorn.Config):
    """uvicorn's configuration plus the :class:`HttpLimits` its protocol enforces."""

    def __init__(self, app: Any, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.limits = limits


def http_config(app: Any, limits: HttpLimits, **kwargs: Any) -> HttpConfig:
    """uvicorn's configuration for ``app`` served with ``limits``, without uvicorn's logging setup.

    ``kwargs`` go to :class:`uvicorn.Config` (``lifespan``, ``timeout_graceful_shutdown``...).
    """
    kwargs.setdefault("log_config", None)
    kwargs.setdefault("access_log", False)
    return HttpConfig(
        app,
        limits,
        http=GuardedH11Protocol,
        # uvicorn keeps it an int; the protocol sets the exact value (see GuardedH11Protocol).
        timeout_keep_alive=max(1, int(limits.keep_alive_timeout)),
        **kwargs,
    )


def _json_bytes(status: int, detail: str) -> bytes:
    return msgspec.json.encode({"detail": detail, "status": status})


def _raw_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, for when h11 cannot send one."""
    body = _json_bytes(status, detail)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _over_capacity(scope: Scope, receive: Receive, send: Send) -> None:
    """The application of a connection beyond the cap: 503, then the connection closes."""
    body = _json_bytes(503, "too many connections; retry later")
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with head and body deadlines and a connection cap.

    uvicorn bounds only the idle time after a response (``timeout_keep_alive``): a client that
    connects and sends nothing, sends its head a byte at a time, or never finishes its body holds
    the connection (and the request's task) for ever. Here one deadline runs at a time: for the
    head from the connection's opening or the end of the previous response, then for the body
    from the end of the head. When it passes, a 408 is written if nothing was answered yet and
    the connection is closed; the application (if running) sees the client as disconnected.
    """

    def __init__(self, config: HttpConfig, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.limits: HttpLimits = config.limits
        self.timeout_keep_alive = self.limits.keep_alive_timeout  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Count the connection; beyond the cap, answer its request 503 and close it."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self.app = _over_capacity
            _log.warning(
                "http connection over the cap", max_connections=self.limits.max_connections
            )
        self._expect("head")

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline along with the connection."""
        self._expect(None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11, then move the deadline to what the client owes next."""
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        """After a response, the next head is due (pipelined requests may already be in)."""
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow(after_response=True)

    def send_400_response(self, msg: str) -> None:
        """Refuse a malformed request with a JSON body (uvicorn's is plain text)."""
        self._expect(None)
        self.transport.write(_raw_response(400, msg))
        self.transport.close()

    def _follow(self, *, after_response: bool = False) -> None:
        state = self.conn.their_state
        if state is h11.IDLE:
            if after_response or self._phase != "head":
                self._expect("head")
        elif state is h11.SEND_BODY:
            if self._phase != "body":
                self._expect("body")
        else:
            self._expect(None)

    def _expect(self, phase: str | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if phase is not None:
            delay = self.limits.header_timeout if phase == "head" else self.limits.body_timeout
            self._deadline = self.loop.call_later(delay, self._expired)

    def _expired(self) -> None:
        phase, self._deadline = self._phase, None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        running = cycle is not None and not cycle.response_complete
        partial_head = phase == "head" and bool(self.conn.trailing_data[0])
        if running or partial_head:  # a silent idle connection is closed without a word
            _log.info("http client too slow", phase=phase, client=_peer(self.client))
        if cycle is not None and running:
            if not cycle.response_started:
                self.transport.write(_raw_response(408, f"request {phase} not received in time"))
            cycle.disconnected = True  # the application's reads end, its writes are dropped
            cycle.message_event.set()
        elif partial_head:
            self.transport.write(_raw_response(408, "request head not received in time"))
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str | None:
    return None if client is None else f"{client[0]}:{client[1]}"


_INTERNAL: Final = _json_bytes(500, "internal error")


class ErrorGuard:
    """ASGI middleware: an unexpected exception is one log line and a JSON 500, never a trace.

    A client that went away before its request was read (starlette's ``ClientDisconnect``) is
    logged as one line without a traceback; nothing can be answered to it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the application, answering and logging what escapes it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        where = {"method": scope.get("method"), "path": scope.get("path")}
        try:
            await self.app(scope, receive, tracked)
        except ClientDisconnect:
            _log.info("http client went away mid-request", **where)
        except Exception as error:
            _log.error("http request failed", error=repr(error), exc_info=True, **where)
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"application/json")],
                    }
                )
                await send({"type": "http.response.body", "body": _INTERNAL})


def json_errors(app: FastAPI) -> FastAPI:
    """Put :class:`ErrorGuard` around ``app``'s routes (inside starlette's plain-text 500)."""
    app.add_middleware(ErrorGuard)
    return app
