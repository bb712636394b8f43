"""The FastStream NATS broker of Agora's services: one factory, so every service connects alike.

A service's broker (its request-reply subscribers) has its own connection beside the stack's,
with the same servers, credentials and inbox prefix; it reconnects forever, like the stack's own
connection.
"""

from __future__ import annotations

import logging

from faststream.nats import NatsBroker
from faststream.nats.security import (
    NatsCredentials,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
)

from agora.config import Settings
from agora.stack import CONNECT_TIMEOUT, inbox_prefix, server_urls


def nats_security(settings: Settings) -> NatsSecurity | None:
    """The FastStream form of the NATS credentials the stack connects with."""
    if settings.nats_creds is not None:
        return NatsCredentials.from_file(settings.nats_creds)
    if settings.nats_user is not None:
        return NatsUserPassword(settings.nats_user, settings.nats_password or "")
    if settings.nats_token is not None:
        return NatsToken(settings.nats_token)
    return None


def nats_broker(settings: Settings, url: str, name: str) -> NatsBroker:
    """A broker on the server(s) of ``url`` (comma-separated), named ``name`` on the server."""
    return NatsBroker(
        servers=server_urls(url),
        name=name,
        security=nats_security(settings),
        inbox_prefix=inbox_prefix(settings),
        connect_timeout=int(CONNECT_TIMEOUT),
        reconnect_time_wait=0.5,  # type: ignore[arg-type]  # a float works
        max_reconnect_attempts=-1,
        # Through the standard library's root logger (agora.logs: stderr), not FastStream's own
        # INFO line per message on stdout.
        logger=logging.getLogger(f"agora.serve.{name}"),
    )
