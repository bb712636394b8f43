"""The moderation service's edge: its read side over the moderation projection, and its runner.

``services.moderation`` may not import ``projections``; this module implements its read-side
protocols (:class:`services.moderation.readside.QueueLookup`, ``HideCandidates``) over the
moderation projection's stable views (``projections.moderation.queries``) and the engine's
checkpoints (``projections.status``), builds the FastStream broker from the settings and runs
the service: ``agora serve moderation`` calls :func:`run_moderation`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from agora.broker import nats_broker
from agora.config import Settings
from agora.errors import ConfigError
from agora.stack import Stack
from projections.database import create_engine, reader
from projections.moderation import ModerationQueue
from projections.moderation import queries as q
from projections.status import active_checkpoints
from services.errors import InvalidSetting
from services.moderation.app import Running, ServiceOptions, serve
from services.moderation.auth import ModeratorTokens
from services.moderation.readside import HideCandidate, QueueItem

PROJECTION = ModerationQueue.name
"""The projection whose active generation the service reads."""


class SqlQueueLookup:
    """:class:`~services.moderation.readside.QueueLookup` over the stable ``moderation_queue``."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = reader(engine)

    def _item(self, community: str, target_kind: str, target: str) -> QueueItem | None:
        with self.engine.connect() as conn:
            found = q.queue_item(conn, community, target_kind, target)
        if found is None:
            return None
        return QueueItem(
            found.target_kind, found.target, found.target_author, found.status, found.round
        )

    async def item(self, community: str, target_kind: str, target: str) -> QueueItem | None:
        """The queue item of ``target``, read in a thread; None if it is not in the queue."""
        return await asyncio.to_thread(self._item, community, target_kind, target)


class SqlHideCandidates:
    """:class:`~services.moderation.readside.HideCandidates` over the active generation.

    ``tables`` defaults to the stable views (what the service must read); tests pass another
    generation's tables only to show what the service does *not* read.
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        tables: q.ModerationTables = q.STABLE,
        projection: str = PROJECTION,
    ) -> None:
        self.engine = reader(engine)
        self.tables = tables
        self.projection = projection

    def _applied(self) -> int | None:
        points = active_checkpoints(self.engine, self.projection)
        return min(points) if points else None

    async def applied_seq(self) -> int | None:
        """The lowest checkpoint of the active generation's partitions; None if none is active."""
        return await asyncio.to_thread(self._applied)

    def _pending(self, crossed_since: datetime | None, limit: int) -> list[HideCandidate]:
        with self.engine.connect() as conn:
            found = q.hide_candidates(
                conn, crossed_since=crossed_since, limit=limit, tables=self.tables
            )
        return [
            HideCandidate(
                c.community,
                c.target_kind,
                c.target,
                c.target_author,
                c.round,
                c.crossed_seq,
                c.crossed_at,
                c.score,
            )
            for c in found
        ]

    async def pending(self, crossed_since: datetime | None, limit: int) -> list[HideCandidate]:
        """Marked items with no hide folded since their crossing, oldest crossing first."""
        return await asyncio.to_thread(self._pending, crossed_since, limit)


def moderator_tokens(settings: Settings) -> ModeratorTokens:
    """The moderators configured in ``AGORA_MODERATOR_TOKENS``; ConfigError if malformed."""
    try:
        return ModeratorTokens.parse(settings.moderator_tokens)
    except InvalidSetting as error:
        raise ConfigError(f"AGORA_MODERATOR_TOKENS: {error}") from None


ID_KEY_FILE = "id_key"
"""The file under ``data_dir`` holding the embedded stack's generated id key."""


def id_key(settings: Settings) -> bytes:
    """The deployment's secret id key: ``AGORA_ID_KEY``, or the embedded stack's own.

    With embedded NATS (a local, single-machine stack) a key is generated once and kept in
    ``data_dir/id_key`` (mode 0600), so every process of that stack, and every restart, uses the
    same one. With an external NATS server the key must be configured: ConfigError otherwise.
    """
    if settings.id_key:
        return settings.id_key.encode()
    if not settings.embedded_nats:
        raise ConfigError(
            "AGORA_ID_KEY is not set: with an external NATS server the moderation service needs "
            "the deployment's id key (at least 32 random characters, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return _embedded_id_key(settings.data_dir / ID_KEY_FILE)


def _embedded_id_key(path: Path) -> bytes:
    """Read the key at ``path``, creating it (atomically, once) when it does not exist."""
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_urlsafe(32) + "\n")
    try:
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(temp, path)
    finally:
        temp.unlink()
    return path.read_bytes().strip()


def service_options(settings: Settings, *, reactor: bool = True) -> ServiceOptions:
    """The service's tunables from the settings."""
    return ServiceOptions(
        publish_timeout=settings.publish_timeout,
        publish_deadline=settings.publish_deadline,
        publish_max_in_flight=settings.publish_max_in_flight,
        reactor=reactor,
        http=settings.http_limits(),
    )


async def run_moderation(
    settings: Settings,
    stop: asyncio.Event,
    host: str,
    port: int,
    *,
    reactor: bool = True,
    on_started: Callable[[Running], None] | None = None,
) -> None:
    """Run the moderation service (HTTP on ``host:port``, request-reply, reactor) until ``stop``.

    NATS is the configured one (the embedded server is started, or attached to, as by every
    command); the stream must exist (the service never creates it). Reads the moderation
    projection's tables in the configured database: run ``agora worker moderation`` beside it.
    """
    tokens = moderator_tokens(settings)
    key = id_key(settings)
    engine = create_engine(settings.effective_database_url)
    try:
        async with Stack(settings, name="agora-moderation") as stack:
            broker = nats_broker(settings, stack.nats_url, "agora-moderation")
            await serve(
                broker,
                SqlQueueLookup(engine),
                SqlHideCandidates(engine),
                tokens,
                stop,
                id_key=key,
                host=host,
                port=port,
                options=service_options(settings, reactor=reactor),
                on_started=on_started,
            )
    finally:
        engine.dispose()
