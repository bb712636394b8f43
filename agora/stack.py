"""The running stack of one command: NATS (embedded or external), a connection and JetStream.

``async with Stack(settings) as stack:`` starts the embedded nats-server when no
``AGORA_NATS_URL`` is set (its store under ``data_dir/nats``, kept between runs), connects, and
on exit closes the connection and stops the server. This module is the NATS adapter of the edge:
nats-py errors are translated here into :class:`agora.errors.AgoraError`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.js import JetStreamContext

from agora.config import Settings
from agora.embedded import EmbeddedNats, StoreInUse
from agora.errors import AgoraError
from agora.stream import EnsureResult, StreamSettings, ensure_stream
from events.publisher import Publisher
from events.subjects import STREAM

log = structlog.get_logger("agora.stack")

#: Seconds one connection attempt may take.
CONNECT_TIMEOUT = 2.0
#: Seconds the first connection may take, attempts and waits between them included.
CONNECT_DEADLINE = 5.0
#: Seconds a JetStream API request may take.
API_TIMEOUT = 5.0
#: The inbox prefix of NATS clients that set none (nats-py's, the nats CLI's).
DEFAULT_INBOX_PREFIX = "_INBOX"

_NS = 1_000_000_000
_ZERO_TIME_YEAR = 1  # the server reports "0001-01-01T00:00:00Z" for "no message yet"


class StreamConfigView(msgspec.Struct, frozen=True):
    """The stream configuration as the server reports it (durations in seconds)."""

    name: str
    subjects: list[str] = []
    description: str = ""
    retention: str = ""
    storage: str = ""
    discard: str = ""
    num_replicas: int = 1
    duplicate_window: float = 0.0
    max_age: float = 0.0
    max_bytes: int = -1
    max_msgs: int = -1
    max_msg_size: int = -1
    deny_delete: bool = False
    deny_purge: bool = False
    allow_rollup_hdrs: bool = False
    allow_direct: bool = False
    sealed: bool = False


class StreamStateView(msgspec.Struct, frozen=True):
    """The stream's contents: message count, size, sequence range and times."""

    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_time: datetime | None = None
    last_time: datetime | None = None
    num_deleted: int = 0
    consumers: int = 0


class StreamStatus(msgspec.Struct, frozen=True):
    """Configuration and state of the stream, read in one request."""

    config: StreamConfigView
    state: StreamStateView
    created: datetime | None = None


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _RawState(msgspec.Struct):
    messages: int = 0
    bytes: int = 0
    first_seq: int = 0
    last_seq: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    num_deleted: int = 0
    consumer_count: int = 0


class _RawInfo(msgspec.Struct):
    error: _ApiError | None = None
    config: StreamConfigView | None = None  # durations still in nanoseconds here
    state: _RawState | None = None
    created: datetime | None = None


def _time(value: datetime | None) -> datetime | None:
    return None if value is None or value.year == _ZERO_TIME_YEAR else value


def stream_settings(settings: Settings) -> StreamSettings:
    """Return the stream configuration the settings ask for."""
    return StreamSettings(
        replicas=settings.stream_replicas,
        duplicate_window=settings.stream_duplicate_window,
        max_age=settings.stream_max_age,
        max_bytes=settings.stream_max_bytes,
    )


def inbox_prefix(settings: Settings) -> str:
    """The prefix of the connection's reply inboxes (``AGORA_NATS_INBOX_PREFIX``, or ``_INBOX``).

    Request replies, JetStream acknowledgements and push consumers' deliveries all go to inboxes
    under it; a NATS user allowed only ``<prefix>.>`` keeps them from every other user.
    """
    return settings.nats_inbox_prefix or DEFAULT_INBOX_PREFIX


def server_urls(nats_url: str) -> list[str]:
    """Split a comma-separated ``AGORA_NATS_URL`` into server URLs."""
    return [part.strip() for part in nats_url.split(",") if part.strip()]


class Stack:
    """NATS for one command: an embedded server if configured so, a connection, JetStream."""

    def __init__(
        self,
        settings: Settings,
        *,
        connect_deadline: float = CONNECT_DEADLINE,
        name: str = "agora",
    ) -> None:
        self.settings = settings
        self.connect_deadline = connect_deadline
        self.name = name
        self.server: EmbeddedNats | None = None
        self.attached_url: str | None = None
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._connected_once = False
        self._last_error: BaseException | None = None

    @property
    def nats_url(self) -> str:
        """The URL(s) the stack connects to (the embedded server's once it runs)."""
        if self.server is not None:
            return self.server.url
        return self.attached_url or self.settings.nats_url or ""

    @property
    def display_url(self) -> str:
        """:attr:`nats_url` with any password masked, for messages and logs."""
        if self.server is not None:
            return self.server.url
        if self.attached_url:
            return self.attached_url
        return str(self.settings.masked()["nats_url"] or "")

    @property
    def nc(self) -> Client:
        """The NATS connection."""
        if self._nc is None:
            raise AgoraError("the stack is not started")
        return self._nc

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context of the connection."""
        if self._js is None:
            raise AgoraError("the stack is not started")
        return self._js

    async def start(self) -> Stack:
        """Start the embedded server if configured, then connect."""
        try:
            if self.settings.embedded_nats:
                server = EmbeddedNats(
                    self.settings.data_dir / "nats", binary=self.settings.nats_server_bin
                )
                try:
                    await asyncio.to_thread(server.start)
                except StoreInUse as busy:
                    # Another agora process runs the embedded server: use it, do not start a
                    # second one on the same store.
                    if busy.url is None:
                        raise
                    self.attached_url = busy.url
                    log.debug("attached to the embedded nats-server", url=busy.url)
                else:
                    self.server = server
                    log.debug("embedded nats-server started", url=server.url)
            await self._connect()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _connect(self) -> None:
        url = self.nats_url
        servers = server_urls(url)
        if not servers:
            raise AgoraError("AGORA_NATS_URL names no server")
        settings = self.settings
        client = Client()
        self._nc = client
        try:
            await asyncio.wait_for(
                client.connect(
                    servers=servers,
                    name=self.name,
                    user=settings.nats_user,
                    password=settings.nats_password,
                    token=settings.nats_token,
                    user_credentials=str(settings.nats_creds) if settings.nats_creds else None,
                    inbox_prefix=inbox_prefix(settings),
                    connect_timeout=CONNECT_TIMEOUT,  # type: ignore[arg-type]  # float works
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    max_reconnect_attempts=-1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                timeout=self.connect_deadline,
            )
        except (TimeoutError, OSError, nats.errors.Error) as error:
            cause = self._last_error or error
            reason = str(cause) or type(cause).__name__
            raise AgoraError(f"cannot connect to NATS at {self.display_url}: {reason}") from error
        self._connected_once = True
        self._js = client.jetstream(timeout=API_TIMEOUT)
        server = client.connected_url
        log.debug("connected to nats", server=f"{server.hostname}:{server.port}" if server else "")

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        if self._connected_once:
            log.warning("nats error", error=str(error) or type(error).__name__)

    async def _on_disconnected(self) -> None:
        if self._connected_once:
            log.warning("disconnected from nats; reconnecting")

    async def _on_reconnected(self) -> None:
        if self._connected_once:
            log.info("reconnected to nats")

    async def stop(self) -> None:
        """Close the connection and stop the embedded server; safe to call twice."""
        client, self._nc, self._js = self._nc, None, None
        self._connected_once = False  # our own close is not worth a warning
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        server, self.server = self.server, None
        if server is not None:
            await asyncio.to_thread(server.stop)
            log.debug("embedded nats-server stopped")

    async def __aenter__(self) -> Stack:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def ensure_stream(self) -> EnsureResult:
        """Create the stream as configured if missing; raise StreamConfigMismatch if it differs."""
        try:
            return await ensure_stream(self.js, stream_settings(self.settings))
        except (TimeoutError, nats.errors.Error) as error:
            raise AgoraError(f"cannot set up stream {STREAM}: {error}") from error

    async def stream_status(self) -> StreamStatus:
        """Return the stream's configuration and state (first/last message times included)."""
        try:
            reply = await self.nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=API_TIMEOUT)
        except nats.errors.NoRespondersError as error:
            raise AgoraError("JetStream is not enabled on this NATS server") from error
        except (TimeoutError, nats.errors.Error) as error:
            raise AgoraError(f"cannot read stream {STREAM}: {error}") from error
        try:
            raw = msgspec.json.decode(reply.data, type=_RawInfo)
        except msgspec.DecodeError as error:
            raise AgoraError(f"unexpected stream info from the server: {error}") from error
        if raw.error is not None:
            if raw.error.err_code == 10059:
                raise AgoraError(f"stream {STREAM} does not exist; run `agora stream init`")
            raise AgoraError(f"cannot read stream {STREAM}: {raw.error.description}")
        if raw.config is None or raw.state is None:
            raise AgoraError("unexpected stream info from the server: no config or state")
        config = msgspec.structs.replace(
            raw.config,
            duplicate_window=raw.config.duplicate_window / _NS,
            max_age=raw.config.max_age / _NS,
        )
        state = raw.state
        return StreamStatus(
            config=config,
            state=StreamStateView(
                messages=state.messages,
                bytes=state.bytes,
                first_seq=state.first_seq,
                last_seq=state.last_seq,
                first_time=_time(state.first_ts),
                last_time=_time(state.last_ts),
                num_deleted=state.num_deleted,
                consumers=state.consumer_count,
            ),
            created=_time(raw.created),
        )

    def publisher(self, **overrides: Any) -> Publisher:
        """Return a Publisher on this connection, tuned by the ``AGORA_PUBLISH_*`` settings."""
        options: dict[str, Any] = {
            "ack_timeout": self.settings.publish_timeout,
            "deadline": self.settings.publish_deadline,
            "max_in_flight": self.settings.publish_max_in_flight,
            "max_future_skew": timedelta(seconds=self.settings.publish_max_future_skew),
        }
        options.update(overrides)
        return Publisher(self.nc, **options)
