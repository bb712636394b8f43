"""Shared fixtures: a real embedded nats-server per test, and PostgreSQL when one is available.

PostgreSQL comes from ``AGORA_TEST_POSTGRES_URL`` or, if a Docker engine answers, from
testcontainers; otherwise PostgreSQL tests are skipped with the reason (unless
``AGORA_TEST_REQUIRE_POSTGRES=1``, as in CI, where a missing database fails the run).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from agora.embedded import EmbeddedNats
from agora.stream import StreamSettings, ensure_stream


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A fresh nats-server with JetStream, its store under the test's tmp dir."""
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    """A nats-py connection to the test's server that keeps reconnecting while it is restarted."""
    client = await nats.connect(
        nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05, connect_timeout=2
    )
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc: Client) -> JetStreamContext:
    """JetStream on the test's server, with the AGORA stream created by ``ensure_stream``."""
    context = nc.jetstream()
    await ensure_stream(context, StreamSettings())
    return context


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """SQLAlchemy URL of a PostgreSQL server for the session, or skip with the reason."""
    url = os.environ.get("AGORA_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver="psycopg") as container:
            yield container.get_connection_url()
        return
    reason = "PostgreSQL tests need AGORA_TEST_POSTGRES_URL or a Docker engine (testcontainers)"
    if os.environ.get("AGORA_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(reason + "; AGORA_TEST_REQUIRE_POSTGRES=1 makes that an error")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    name = f"agora_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            sa.make_url(postgres_server_url)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
