"""Reading the stream by bounded pull requests, so a busy worker is never a slow consumer.

A push consumer sends as fast as it can, up to 32 MiB in flight per consumer (nats-server's flow
control window), whether the client reads or not. A worker whose event loop is busy applying a
catch-up batch does not read its socket meanwhile, so with several partitions on one connection
the server's buffer for the client passed its ``max_pending`` (64 MiB) and the server cut the
connection as a slow consumer. Here an ephemeral pull consumer (no acks) is asked for the next
messages one request at a time: at most ``batch`` messages and ``max_bytes`` bytes, the next
request once the last is answered. What the server has sent and the worker not yet read is then
bounded by one request, however long the worker does not read. Near the head a request lingers
(``expires``) and delivers each new message as soon as it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

_STATUS = "Status"
_HEARTBEAT = "100"
_GONE = ("503",)
"""No responders: the consumer is gone (a server restart); the worker starts over."""
_GONE_DESCRIPTIONS = ("consumer deleted", "consumer is push based")


def server_size(msg: Msg) -> int:
    """The bytes the server counts for a message against a request's ``max_bytes``."""
    size = len(msg.subject) + len(msg.reply) + len(msg.data)
    if msg.headers:
        size += 12 + sum(len(k) + len(v) + 4 for k, v in msg.headers.items())
    return size


class PullFeed:
    """The messages of a stream from ``start_seq`` on, handed to ``deliver`` in stream order.

    Each request has its own reply subject, so the end of a request (its status: expired, the
    next message would exceed its bytes) is told apart from a late status of an earlier one;
    a request that ends silently (its batch or its bytes used up exactly) is recognised by
    counting. If the server goes quiet -- no message, no heartbeat of the lingering request --
    :meth:`nudge` asks again.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        start_seq: int,
        deliver: Callable[[Msg], Awaitable[None]],
        *,
        on_gone: Callable[[], None],
        filter_subject: str,
        batch: int,
        max_bytes: int,
        expires: float,
        heartbeat: float,
        pending_msgs_limit: int,
    ) -> None:
        self.js = js
        self.stream = stream
        self.start_seq = start_seq
        self.deliver = deliver
        self.on_gone = on_gone
        self.filter_subject = filter_subject
        self.batch = batch
        self.max_bytes = max_bytes
        self.expires = expires
        self.heartbeat = heartbeat
        self.pending_msgs_limit = pending_msgs_limit
        self.consumer: str | None = None
        self._sub: Subscription | None = None
        self._inbox = ""
        self._next_subject = ""
        self._request = 0
        self._count = 0
        self._bytes = 0
        self._asked_bytes = max_bytes
        self._heard = time.monotonic()
        self._closed = False

    async def open(self) -> None:
        """Create the consumer, listen on an inbox and ask for the first messages."""
        nc = self.js._nc
        info = await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.start_seq,
                filter_subject=self.filter_subject,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=max(30.0, self.expires * 2),
                mem_storage=True,
                num_replicas=1,
            ),
        )
        self.consumer = info.name
        self._next_subject = f"{self.js._prefix}.CONSUMER.MSG.NEXT.{self.stream}.{info.name}"
        self._inbox = nc.new_inbox()
        self._sub = await nc.subscribe(
            f"{self._inbox}.*",
            cb=self._on_message,
            pending_msgs_limit=self.pending_msgs_limit,
            pending_bytes_limit=256 * 1024 * 1024,
        )
        await self._ask()

    async def _ask(self) -> None:
        """Ask for the next messages: a new request, the only one counted from now on."""
        if self._closed:
            return
        self._request += 1
        self._count = self._bytes = 0
        self._heard = time.monotonic()
        request = {
            "batch": self.batch,
            "max_bytes": self._asked_bytes,
            "expires": int(self.expires * 1e9),
            "idle_heartbeat": int(self.heartbeat * 1e9),
        }
        await self.js._nc.publish(
            self._next_subject, json.dumps(request).encode(), f"{self._inbox}.{self._request}"
        )

    async def nudge(self) -> None:
        """Ask again if the server has gone quiet (the request ended unnoticed, or was lost)."""
        if not self._closed and time.monotonic() - self._heard > 2.5 * self.heartbeat:
            await self._ask()

    async def _on_message(self, msg: Msg) -> None:
        self._heard = time.monotonic()
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is not None:
            await self._on_status(msg, status)
            return
        self._count += 1
        self._bytes += server_size(msg)
        await self.deliver(msg)
        if self._count >= self.batch or self._bytes >= self._asked_bytes:
            self._asked_bytes = self.max_bytes
            await self._ask()  # this request is used up: the server ends it without a word

    async def _on_status(self, msg: Msg, status: str) -> None:
        if status == _HEARTBEAT:
            return
        description = (msg.headers or {}).get("Description", "").lower()
        if status in _GONE or description in _GONE_DESCRIPTIONS:
            if not self._closed:  # nothing more comes (a server restart lost the consumer)
                self._closed = True
                self.on_gone()
            return
        if msg.subject != f"{self._inbox}.{self._request}":
            return  # the end of an earlier request, already followed by a new one
        if "maxbytes" in description.replace(" ", "") and self._count == 0:
            # A single message larger than asked for: ask for more bytes this time.
            self._asked_bytes *= 2
        await self._ask()  # the request ended (expired, the next message did not fit, ...)

    async def close(self) -> None:
        """Stop asking, stop listening and delete the consumer (the server would, when idle)."""
        self._closed = True
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self.consumer is not None:
            with contextlib.suppress(
                nats.errors.Error, nats.js.errors.Error, TimeoutError, asyncio.TimeoutError
            ):
                await self.js.delete_consumer(self.stream, self.consumer)
