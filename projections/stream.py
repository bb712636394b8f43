"""Positions in the stream: its head, retried through a broker stall, and the sequence at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo

from events.subjects import STREAM
from projections.errors import ProjectionError

log = structlog.get_logger("agora.projections")

#: Seconds :func:`stream_head` keeps retrying a stream that does not answer (a broker stall).
STREAM_PATIENCE = 60.0
#: Seconds a JetStream request of :func:`seq_at_time` may take.
REQUEST_TIMEOUT = 5.0

_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)
"""Errors of a stream request that a stalled, restarting or electing broker gives: retried."""


async def stream_info(
    js: JetStreamContext, stream: str = STREAM, *, patience: float = STREAM_PATIENCE
) -> StreamInfo:
    """The stream's info; a broker that does not answer is asked again for ``patience`` seconds.

    Retries back off from 0.1 s to 2 s. A stream that does not exist, or any other refusal, is
    not retried.
    """
    deadline = time.monotonic() + patience
    pause = 0.1
    while True:
        try:
            return await js.stream_info(stream)
        except _TRANSIENT as error:
            if time.monotonic() + pause > deadline:
                raise ProjectionError(
                    f"cannot read stream {stream}: {one_line(error)} (retried for {patience:.0f} s)"
                ) from error
            log.warning(
                "stream did not answer; retrying",
                stream=stream,
                error=one_line(error),
                retry_in=pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)
        except (nats.errors.Error, nats.js.errors.Error) as error:
            raise ProjectionError(f"cannot read stream {stream}: {one_line(error)}") from error


async def stream_head(
    js: JetStreamContext, stream: str = STREAM, *, patience: float = STREAM_PATIENCE
) -> int:
    """The stream's last sequence (0 when empty), retried as :func:`stream_info` says."""
    return int((await stream_info(js, stream, patience=patience)).state.last_seq)


async def seq_at_time(js: JetStreamContext, when: datetime, stream: str = STREAM) -> int:
    """The first stream sequence whose message was stored at or after ``when`` (UTC if naive).

    An ephemeral consumer starting at ``when`` is created (nothing is delivered: it is a pull
    consumer nobody pulls from) and deleted; the server positions it on that message, which its
    info reports as one past the last delivered sequence. With no message at or after ``when``
    this is the stream's last sequence + 1.
    """
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    config = ConsumerConfig(
        name=f"agora-seq-at-{uuid.uuid4().hex[:12]}",
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=when.astimezone(UTC),
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    try:
        info = await js.add_consumer(stream, config, timeout=REQUEST_TIMEOUT)
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await js.delete_consumer(stream, info.name)
    except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as error:
        raise ProjectionError(
            f"cannot find the first event at or after {when.isoformat()}: {one_line(error)}"
        ) from error
    if info.delivered is None:
        raise ProjectionError("the server did not report the consumer's starting sequence")
    return int(info.delivered.stream_seq) + 1


def one_line(error: BaseException) -> str:
    """The first line of an error's message (its class name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
