"""The HTTP services served for real on free loopback ports, over a small folded database.

Each context manager starts a service the way its command does (``serve_dashboard``,
``run_service("ingest")``, ``run_moderation``) in the test's event loop and yields its base URL;
``AGORA_*`` settings are passed as keyword arguments.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from agora.config import load_settings
from agora.embedded import free_port
from agora.moderation_wiring import run_moderation
from agora.registry import get_projections
from agora.serve import run_service
from agora.web.server import serve_dashboard
from events import (
    CODEC,
    ContentReported,
    Event,
    MemberJoined,
    PostCreated,
    ReactionAdded,
    ReplyCreated,
    derived_event_id,
)
from events.subjects import subject_of
from projections.database import create_engine
from projections.store import FoldPolicy, ProjectionStore, RawMessage
from services.moderation.app import Running
from support.engine import wait_until

PRODUCER_TOKEN = "edge-producer-token-0123456789"
"""An ingest token granted every community and type."""
GRANTS = [
    {
        "producer": "edge",
        "sha256": hashlib.sha256(PRODUCER_TOKEN.encode()).hexdigest(),
        "communities": ["*"],
        "types": ["*"],
    }
]
MODERATOR_TOKEN = "edge-moderator-token-0123456789"
"""The token of moderator ``mod1``."""
COMMUNITY = "town"
"""The community :func:`small_history` fills."""
PATIENCE = 20.0
"""How long to wait for a service to start or stop."""


def small_history() -> list[Event]:
    """Members, a post, a reply, a reaction and a report in ``town``: every read reaches rows."""
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def common(n: int, actor: str) -> dict[str, Any]:
        key = derived_event_id("edge", str(n))
        at = t0 + timedelta(hours=n)
        return {"id": key, "community": COMMUNITY, "actor": actor, "occurred_at": at}

    return [
        MemberJoined(**common(1, "ann"), member="ann"),
        MemberJoined(**common(2, "bob"), member="bob"),
        PostCreated(**common(3, "ann"), post="p1", title="Hello"),
        ReplyCreated(**common(4, "bob"), reply="r1", post="p1", post_author="ann"),
        ReactionAdded(
            **common(5, "ann"), target="r1", target_kind="reply", target_author="bob", kind="upvote"
        ),
        ContentReported(
            **common(6, "bob"),
            report="x1",
            target="p1",
            target_kind="post",
            target_author="ann",
            reason="spam",
        ),
    ]


def fold(url: str, events: list[Event]) -> None:
    """Fold ``events`` with every registered projection and activate generation 1."""
    engine = create_engine(url)
    messages = [RawMessage(s, subject_of(e), CODEC.encode(e), s) for s, e in enumerate(events, 1)]
    try:
        for projection in get_projections():
            store = ProjectionStore(engine, projection)
            store.ensure(1)
            store.apply(1, 0, 0, messages, FoldPolicy.PAUSE)
            store.activate(1)
    finally:
        engine.dispose()


def folded_data_dir(tmp_path: Path) -> Path:
    """A data directory whose SQLite database holds :func:`small_history`, folded."""
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    fold(f"sqlite:///{data / 'agora.db'}", small_history())
    return data


@asynccontextmanager
async def dashboard(tmp_path: Path, **env: str) -> AsyncIterator[str]:
    """The dashboard over :func:`small_history`; yields its base URL."""
    settings = load_settings({"AGORA_DATA_DIR": str(folded_data_dir(tmp_path)), **env})
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(serve_dashboard(settings, stop, port=port))
    url = f"http://127.0.0.1:{port}"

    async def up() -> bool:
        if task.done():
            task.result()
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                return (await client.get(f"{url}/api/communities")).is_success
        except httpx.TransportError:
            return False

    try:
        await wait_until(up, PATIENCE, "the dashboard to answer")
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE)


@asynccontextmanager
async def ingest(tmp_path: Path, nats_url: str, **env: str) -> AsyncIterator[str]:
    """Ingest as ``agora serve ingest`` runs it (stream ``AGORA`` must exist); yields its URL."""
    settings = load_settings(
        {
            "AGORA_NATS_URL": nats_url,
            "AGORA_DATA_DIR": str(tmp_path / "data"),
            "AGORA_INGEST_TOKENS": json.dumps(GRANTS),
            **env,
        }
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_service("ingest", settings, stop, host="127.0.0.1", port=0, on_ready=ready.set_result)
    )
    try:
        done, _ = await asyncio.wait({task, ready}, timeout=PATIENCE, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()
        url = ready.result()
        assert url is not None
        yield url
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE)


@asynccontextmanager
async def moderation(tmp_path: Path, nats_url: str, **env: str) -> AsyncIterator[str]:
    """The moderation service over :func:`small_history` (``p1`` reported); yields its URL."""
    settings = load_settings(
        {
            "AGORA_NATS_URL": nats_url,
            "AGORA_DATA_DIR": str(folded_data_dir(tmp_path)),
            "AGORA_MODERATOR_TOKENS": f"mod1@{COMMUNITY}={MODERATOR_TOKEN}",
            "AGORA_ID_KEY": "served-test-id-key-0123456789abcdefghij",
            **env,
        }
    )
    stop = asyncio.Event()
    started: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_moderation(settings, stop, "127.0.0.1", 0, on_started=started.set_result)
    )
    try:
        done, _ = await asyncio.wait(
            {task, started}, timeout=PATIENCE, return_when="FIRST_COMPLETED"
        )
        if task in done:
            task.result()
        yield f"http://127.0.0.1:{started.result().port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, PATIENCE)
