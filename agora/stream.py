"""Creation and inspection of the append-only ``AGORA`` stream.

``ensure_stream`` is idempotent: it creates the stream when it is missing, does nothing when it
exists as asked, and reports the differences -- changing nothing -- when it exists otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)

from agora.errors import AgoraError, StreamConfigMismatch
from events.limits import MAX_EVENT_BYTES
from events.subjects import ALL_SUBJECTS, STREAM

#: Room for headers (Nats-Msg-Id and friends) on top of the largest event.
HEADER_ALLOWANCE = 4096


@dataclass(frozen=True)
class StreamSettings:
    """What the stream should be; defaults are the embedded single-node stack's."""

    replicas: int = 1
    duplicate_window: float = 120.0
    max_age: float = 0.0
    max_bytes: int = -1

    def config(self) -> StreamConfig:
        """Return the JetStream configuration of an append-only AGORA stream."""
        return StreamConfig(
            name=STREAM,
            description="Agora community events (append-only; the source of truth)",
            subjects=[ALL_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            max_msgs=-1,
            max_msg_size=MAX_EVENT_BYTES + HEADER_ALLOWANCE,
            num_replicas=self.replicas,
            duplicate_window=self.duplicate_window,
            deny_delete=True,
            deny_purge=True,
            allow_rollup_hdrs=False,
            allow_direct=True,
        )


#: The fields ensure_stream compares, with how to read each from a StreamConfig.
_COMPARED: tuple[str, ...] = (
    "subjects",
    "retention",
    "storage",
    "discard",
    "max_age",
    "max_bytes",
    "max_msgs",
    "max_msg_size",
    "num_replicas",
    "duplicate_window",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "sealed",
)


def _normal(name: str, value: Any) -> Any:
    if name in ("max_age", "duplicate_window"):
        return round(float(value or 0), 3)
    if name in ("sealed", "deny_delete", "deny_purge", "allow_rollup_hdrs"):
        return bool(value)
    if hasattr(value, "value"):
        return value.value
    return value


def differences(have: StreamConfig, want: StreamConfig) -> dict[str, tuple[Any, Any]]:
    """Return ``{field: (have, want)}`` for every compared field that differs."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in _COMPARED:
        a = _normal(name, getattr(have, name))
        b = _normal(name, getattr(want, name))
        if a != b:
            out[name] = (a, b)
    return out


@dataclass(frozen=True)
class EnsureResult:
    """What :func:`ensure_stream` found or did."""

    created: bool
    info: StreamInfo


async def _existing(js: JetStreamContext) -> StreamInfo | None:
    try:
        return await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        return None


async def ensure_stream(js: JetStreamContext, settings: StreamSettings) -> EnsureResult:
    """Create AGORA if missing; raise StreamConfigMismatch if it exists with another config."""
    want = settings.config()
    try:
        info = await _existing(js)
        if info is None:
            try:
                return EnsureResult(created=True, info=await js.add_stream(want))
            except nats.js.errors.BadRequestError as error:
                # Another process created it between our look and our create: compare with theirs.
                if getattr(error, "err_code", None) != 10058:
                    raise AgoraError(f"cannot create stream {STREAM}: {error}") from error
                info = await js.stream_info(STREAM)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
        raise AgoraError(f"cannot create or read stream {STREAM}: {error}") from error
    diff = differences(info.config, want)
    if diff:
        raise StreamConfigMismatch(diff)
    return EnsureResult(created=False, info=info)
