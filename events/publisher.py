"""The reliable publisher: every event acknowledged by the stream, retried safely, never hung.

Each event goes out as one core NATS message on ``agora.<community>.<type>`` with the header
``Nats-Msg-Id`` (the event id) and a reply subject on the publisher's own inbox; the stream answers
there with a PubAck. The stream's duplicate window makes re-sending the same id safe, so a message
whose ack is late (a lost message, a disconnect, a server restart) is simply sent again, with the
same id, until its deadline.

Design, for throughput: one wildcard inbox subscription per publisher; a dict from reply subject
to pending message that the inbox callback resolves; at most ``max_in_flight`` messages awaiting
an ack; one sweeper task (not one timer per message) that re-sends late messages and fails those
whose deadline passed. ``js.publish_async`` is not used: its futures never resolve when the server
answers with an error (nats.py issue 985).

Outcomes: STORED (with the stream sequence), DUPLICATE (this very event was already stored; the
sequence is that of the stored copy), CONFLICT (the id already names *another* message; nothing was
stored) or FAILED (with the reason). FAILED means *not confirmed*: a message whose ack was lost may
still have been stored, and publishing the same event again is safe as long as it happens within
the stream's duplicate window (120 s by default, above the default ``deadline``).

A duplicate PubAck is not taken on trust. The stream deduplicates by ``Nats-Msg-Id`` alone, so an
event whose id someone else used first would be answered "duplicate" although it was never
stored. The publisher therefore reads the stored message at the acknowledged sequence (a direct
get, ``$JS.API.DIRECT.GET.<stream>``: the stream has ``allow_direct``, and the publishing roles may
send that request) and reports DUPLICATE only when it is this event: the same subject, and the same
bytes or bytes that decode to an equal event (another client's JSON of it); else CONFLICT, with
both the id and the stored sequence. A stored copy that cannot be read is retried like a lost
ack (sent again, compared again) until the deadline, then FAILED (not confirmed).

This is the one module of :mod:`events` that imports nats-py; it translates nats-py errors into
:class:`events.errors.PublishError` subclasses.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import itertools
import math
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg

from events.catalogue import Event
from events.codec import CODEC, Codec, check_clock_skew
from events.errors import EventError, InvalidEvent, PublishConflict, PublishError, PublishTimeout
from events.limits import DEFAULT_MAX_FUTURE_SKEW, MAX_FUTURE_SKEW_LIMIT
from events.subjects import STREAM, subject_of

__all__ = [
    "InvalidPublisherSetting",
    "PublishRejected",
    "PublishResult",
    "PublishStatus",
    "Publisher",
]

_log = structlog.get_logger("events.publisher")

#: First and largest pause before re-sending after a no-responders or "unavailable" answer.
_BACKOFF_MIN: Final = 0.02
_BACKOFF_MAX: Final = 0.5
#: Longest sweeper period; shorter when ``ack_timeout`` or ``deadline`` are short.
_TICK_MAX: Final = 0.05
_TICK_MIN: Final = 0.005
#: At most one "retrying" warning per this many seconds.
_WARN_EVERY: Final = 1.0
#: Extra time the safety nets grant beyond the sweeper's own deadline handling.
_SLACK: Final = 2.0

_STATUS_HEADER: Final = "Status"
_NO_RESPONDERS: Final = "503"
_UNAVAILABLE: Final = 503
_FORBIDDEN_IN_SUBJECT: Final = frozenset(" \t\r\n")


class PublishStatus(enum.StrEnum):
    """Outcome of publishing one event."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    FAILED = "failed"


class PublishResult(msgspec.Struct, frozen=True):
    """What happened to one event.

    ``seq`` is the stream sequence: of the message just stored (STORED), of the copy of this
    event stored earlier (DUPLICATE) or of the other message stored under the same id (CONFLICT).
    ``error`` says why when FAILED or CONFLICT.
    """

    event_id: uuid.UUID
    status: PublishStatus
    subject: str
    seq: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the event is in the stream: stored now, or stored before (duplicate)."""
        return self.status is PublishStatus.STORED or self.status is PublishStatus.DUPLICATE


class PublishRejected(PublishError):
    """The server refused the message (too large, wrong stream, ...); it was not retried.

    ``code`` and ``err_code`` are the JetStream API error codes when the server sent them.
    """

    def __init__(self, reason: str, code: int = 0, err_code: int = 0) -> None:
        super().__init__(reason)
        self.code = code
        self.err_code = err_code


class InvalidPublisherSetting(EventError, ValueError):
    """A :class:`Publisher` argument is out of range."""


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


class _Batch:
    """The results of one publish call, and the future set when the last outcome is known."""

    __slots__ = ("broken", "done", "open", "remaining", "results")

    def __init__(self, size: int) -> None:
        self.results: list[PublishResult | None] = [None] * size
        self.remaining = 0
        self.open = True
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken: str | None = None

    def close(self) -> None:
        """No more messages will be added; resolve now if none is pending."""
        self.open = False
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class _Pending:
    """One message awaiting its ack: what to (re-)send, when, and where its result goes."""

    __slots__ = (
        "attempts",
        "backoff",
        "batch",
        "deadline",
        "done",
        "due",
        "error",
        "event_id",
        "failure",
        "headers",
        "index",
        "payload",
        "reply",
        "subject",
        "verifying",
    )

    def __init__(
        self,
        batch: _Batch,
        index: int,
        event_id: uuid.UUID,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        reply: str,
        deadline: float,
    ) -> None:
        self.batch = batch
        self.index = index
        self.event_id = event_id
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.reply = reply
        self.deadline = deadline
        self.attempts = 1
        self.backoff = False
        self.verifying = False
        self.due = 0.0
        self.done = False
        self.error: str | None = None
        self.failure: PublishError | None = None


class Publisher:
    """Publishes events to the ``AGORA`` stream and reports, for each, whether it was stored.

    ``ack_timeout`` is how long to wait for one ack before sending the message again (same id);
    ``deadline`` bounds the whole effort for one event, retries included, and must stay below
    the stream's duplicate window; ``max_in_flight`` bounds the messages awaiting their ack;
    ``max_future_skew`` is how far past this machine's clock an ``occurred_at`` may lie (an
    event dated later is refused, not sent; at most a day).

    One publisher per connection is enough, shared by every task of the process.
    """

    def __init__(
        self,
        nc: Client,
        *,
        codec: Codec = CODEC,
        stream: str = STREAM,
        ack_timeout: float = 5.0,
        deadline: float = 30.0,
        max_in_flight: int = 4096,
        max_future_skew: timedelta = DEFAULT_MAX_FUTURE_SKEW,
    ) -> None:
        if not ack_timeout > 0:
            raise InvalidPublisherSetting(f"ack_timeout must be positive, got {ack_timeout!r}")
        if not deadline > 0:
            raise InvalidPublisherSetting(f"deadline must be positive, got {deadline!r}")
        if max_in_flight < 1:
            raise InvalidPublisherSetting(f"max_in_flight must be >= 1, got {max_in_flight!r}")
        if not timedelta(0) <= max_future_skew <= MAX_FUTURE_SKEW_LIMIT:
            raise InvalidPublisherSetting(
                f"max_future_skew must be within 0..{MAX_FUTURE_SKEW_LIMIT}, got {max_future_skew}"
            )
        self.max_future_skew: Final = max_future_skew
        self.nc: Final = nc
        self.codec: Final = codec
        self.stream: Final = stream
        self.ack_timeout: Final = float(ack_timeout)
        self.deadline: Final = float(deadline)
        self.max_in_flight: Final = max_in_flight
        # Senders blocked on a full window resume once a quarter of it is free, not one by one.
        self._low_water = max_in_flight - max(1, max_in_flight // 4)
        self._tick = max(_TICK_MIN, min(_TICK_MAX, ack_timeout / 4, deadline / 20))
        self._inbox: str | None = None
        self._inbox_lock = asyncio.Lock()
        self._tokens = itertools.count()
        self._waiting: dict[str, _Pending] = {}
        self._next_due = math.inf
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._decoder = msgspec.json.Decoder(_PubAck)
        self._resent = 0
        self._last_warning = -math.inf
        self._checks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        """Messages sent (or about to be re-sent) whose outcome is not known yet."""
        return len(self._waiting)

    async def publish(self, event: Event) -> PublishResult:
        """Validate, publish and await the ack of one event; return STORED or DUPLICATE.

        Raises InvalidEvent (nothing sent) when the event breaks the contract, PublishRejected
        when the server refuses it, PublishConflict when its id already names another message,
        PublishTimeout when it is not acknowledged within ``deadline`` (counted from this call)
        and PublishError for other failures, such as a closed connection.
        """
        payload = self.codec.encode(event)
        check_clock_skew(event, datetime.now(UTC), self.max_future_skew)
        rec = await self._publish_one(event.id, subject_of(event), payload, str(event.id))
        result = rec.batch.results[0]
        assert result is not None
        if rec.failure is not None:
            raise rec.failure
        return result

    async def publish_raw(self, subject: str, payload: bytes, msg_id: str) -> PublishResult:
        """Publish a payload the caller has already validated, with the same ack and retries.

        ``msg_id`` is the event id (a UUID string), sent as ``Nats-Msg-Id``. Raises InvalidEvent
        for a malformed subject or id; a delivery failure is returned as FAILED and a reused id
        as CONFLICT, not raised.
        """
        if not subject or not _FORBIDDEN_IN_SUBJECT.isdisjoint(subject):
            raise InvalidEvent("subject", f"not a valid NATS subject: {subject!r}")
        try:
            event_id = uuid.UUID(msg_id)
        except (ValueError, TypeError, AttributeError):
            raise InvalidEvent("id", f"msg_id must be a UUID, got {msg_id!r}") from None
        rec = await self._publish_one(event_id, subject, bytes(payload), msg_id)
        result = rec.batch.results[0]
        assert result is not None
        return result

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        """Publish events concurrently and return one result per event, in input order.

        An invalid event is FAILED with the InvalidEvent text and is not sent; it does not stop
        the others. Nothing is raised for a per-event failure; an event whose id already names
        another message is CONFLICT (with that message's ``seq``). Each event's ``deadline`` runs
        from its first send; once one event has run out of time (the stream has been unreachable
        for a whole deadline), the events not sent yet are FAILED without being sent.
        """
        items = events if isinstance(events, list | tuple) else list(events)
        batch = _Batch(len(items))
        started = time.monotonic()
        try:
            prefix = await self._reply_prefix()
        except PublishError as error:
            for index, event in enumerate(items):
                batch.results[index] = _failed(event, error.reason)
            batch.close()
            return self._finished(batch, started)
        try:
            await self._send_all(batch, items, prefix)
            batch.close()
            if not batch.done.done():
                await self._await_batch(batch, time.monotonic() + self.deadline + _SLACK)
        except BaseException:
            self._abandon(batch, None)
            raise
        return self._finished(batch, started)

    async def _send_all(self, batch: _Batch, items: Iterable[Event], prefix: str) -> None:
        """Encode and send every event of a publish_many call: the hot loop, kept flat."""
        encode = self.codec.encode
        waiting = self._waiting
        publish = self.nc.publish
        tokens = self._tokens
        results = batch.results
        stream = self.stream
        ack_timeout = self.ack_timeout
        deadline = self.deadline
        max_in_flight = self.max_in_flight
        monotonic = time.monotonic
        clock = datetime.now(UTC)
        latest = clock + self.max_future_skew
        for index, event in enumerate(items):
            try:
                payload = encode(event)
                if event.occurred_at > latest:
                    check_clock_skew(event, clock, self.max_future_skew)
            except InvalidEvent as error:
                results[index] = _failed(event, str(error))
                continue
            if len(waiting) >= max_in_flight:
                await self._wait_slot(monotonic() + deadline + _SLACK)
            if batch.broken is not None:
                results[index] = _failed(event, f"not sent: {batch.broken}")
                continue
            subject = subject_of(event)
            headers = {"Nats-Msg-Id": str(event.id), "Nats-Expected-Stream": stream}
            reply = f"{prefix}{next(tokens)}"
            now = monotonic()
            rec = _Pending(batch, index, event.id, subject, payload, headers, reply, now + deadline)
            waiting[reply] = rec
            batch.remaining += 1
            try:
                await publish(subject, payload, reply=reply, headers=headers)
            except nats.errors.Error as error:
                self._send_failed(rec, error, now)
                continue
            self._schedule(rec, now + ack_timeout)

    async def _publish_one(
        self, event_id: uuid.UUID, subject: str, payload: bytes, msg_id: str
    ) -> _Pending:
        """Send one message and wait for its outcome, which the returned record holds."""
        deadline = time.monotonic() + self.deadline
        batch = _Batch(1)
        headers = {"Nats-Msg-Id": msg_id, "Nats-Expected-Stream": self.stream}
        rec = _Pending(batch, 0, event_id, subject, payload, headers, "", deadline)
        try:
            prefix = await self._reply_prefix()
        except PublishError as error:
            rec.failure = error
            batch.results[0] = PublishResult(
                event_id, PublishStatus.FAILED, subject, error=str(error)
            )
            return rec
        try:
            if len(self._waiting) >= self.max_in_flight:
                await self._wait_slot(deadline)
                if len(self._waiting) >= self.max_in_flight:
                    rec.failure = PublishTimeout(f"no free in-flight slot within {self.deadline}s")
                    batch.results[0] = PublishResult(
                        event_id, PublishStatus.FAILED, subject, error=rec.failure.reason
                    )
                    return rec
            rec.reply = f"{prefix}{next(self._tokens)}"
            self._waiting[rec.reply] = rec
            batch.remaining = 1
            now = time.monotonic()
            try:
                await self.nc.publish(subject, payload, reply=rec.reply, headers=headers)
            except nats.errors.Error as error:
                self._send_failed(rec, error, now)
            else:
                self._schedule(rec, now + self.ack_timeout)
            batch.close()
            if not batch.done.done():
                await self._await_batch(batch, deadline + _SLACK)
        except BaseException:
            self._abandon(batch, None)
            raise
        return rec

    async def stored(self, seq: int) -> tuple[str, bytes]:
        """Return the subject and payload the stream holds at ``seq`` (a direct get).

        Raises PublishError when the message cannot be read (no such sequence, direct gets not
        allowed to this connection's user, no answer within ``ack_timeout``).
        """
        request = msgspec.json.encode({"seq": seq})
        try:
            msg = await self.nc.request(
                f"$JS.API.DIRECT.GET.{self.stream}", request, timeout=self.ack_timeout
            )
        except nats.errors.NoRespondersError:
            raise PublishError(
                f"no answer to a direct get on stream {self.stream!r} (is allow_direct set?)"
            ) from None
        except (nats.errors.Error, TimeoutError) as error:
            raise PublishError(
                f"cannot read stream sequence {seq}: {_describe(error)} (is the server "
                f"restarting, or may this user not publish $JS.API.DIRECT.GET.{self.stream}?)"
            ) from error
        headers = msg.headers or {}
        status = headers.get(_STATUS_HEADER)
        if status:
            description = headers.get("Description", "")
            raise PublishError(f"cannot read stream sequence {seq}: {status} {description}".strip())
        return headers.get("Nats-Subject", ""), bytes(msg.data)

    def _check_duplicate(self, rec: _Pending, seq: int) -> None:
        """Start checking that the copy stored at ``seq`` is ``rec``'s message, off the ack path."""
        rec.verifying = True
        task = asyncio.get_running_loop().create_task(self._verify(rec, seq))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _verify(self, rec: _Pending, seq: int) -> None:
        """Resolve a duplicate ack: DUPLICATE if the stored copy is this message, else CONFLICT."""
        try:
            subject, data = await self.stored(seq)
        except PublishError as error:
            if not rec.done:
                # Not confirmed yet (a restart, a slow server): send again, compare again, until
                # the deadline; then FAILED with this reason.
                rec.verifying = False
                reason = f"the id is stored at sequence {seq} but cannot be compared: {error}"
                self._backoff(rec, time.monotonic(), reason)
            return
        if rec.done:  # abandoned or failed meanwhile
            return
        if subject == rec.subject and (data == rec.payload or self._same_event(data, rec.payload)):
            self._finish(
                rec, PublishResult(rec.event_id, PublishStatus.DUPLICATE, rec.subject, seq)
            )
            return
        reason = (
            f"id {rec.event_id} already names another message, stored at sequence {seq} "
            f"on {subject!r}; this event was not stored"
        )
        _log.warning("publish conflict", event_id=str(rec.event_id), seq=seq, subject=rec.subject)
        rec.failure = PublishConflict(rec.event_id, seq, reason)
        self._finish(
            rec, PublishResult(rec.event_id, PublishStatus.CONFLICT, rec.subject, seq, reason)
        )

    def _same_event(self, stored: bytes, payload: bytes) -> bool:
        """True when two encodings (another producer's JSON, say) decode to the same event."""
        try:
            return self.codec.decode(stored) == self.codec.decode(payload)
        except EventError:
            return False

    async def _reply_prefix(self) -> str:
        """Return ``<inbox>.``, subscribing to ``<inbox>.*`` on first use."""
        if self.nc.is_closed:
            raise PublishError("the NATS connection is closed")
        if self._inbox is not None:
            return self._inbox
        async with self._inbox_lock:
            if self._inbox is None:
                inbox = self.nc.new_inbox()
                try:
                    await self.nc.subscribe(f"{inbox}.*", cb=self._on_ack)
                except nats.errors.Error as error:
                    raise PublishError(
                        f"cannot subscribe to the ack inbox: {_describe(error)}"
                    ) from error
                self._inbox = f"{inbox}."
            return self._inbox

    async def _await_batch(self, batch: _Batch, bound: float) -> None:
        """Wait for a batch's outcomes; the sweeper guarantees them, the bound is a safety net."""
        try:
            async with asyncio.timeout_at(_loop_time(bound)):
                await batch.done
        except TimeoutError:
            self._abandon(batch, "no outcome within the deadline (publisher stalled)")

    async def _wait_slot(self, bound: float) -> None:
        """Wait until the window is back under its low-water mark, or until ``bound``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(_loop_time(bound)):
                while len(self._waiting) >= self.max_in_flight:
                    waiter = loop.create_future()
                    self._slot_waiters.append(waiter)
                    await waiter
        except TimeoutError:
            return

    def _schedule(self, rec: _Pending, due: float) -> None:
        """Have the sweeper look at ``rec`` at ``due`` (never later than its deadline)."""
        if due > rec.deadline:
            due = rec.deadline
        rec.due = due
        if due < self._next_due:
            self._next_due = due
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def _backoff(self, rec: _Pending, now: float, reason: str) -> None:
        """Re-send ``rec`` after a short pause that doubles with each attempt."""
        rec.error = reason
        rec.backoff = True
        delay = min(_BACKOFF_MAX, _BACKOFF_MIN * 2 ** min(rec.attempts - 1, 8))
        self._schedule(rec, now + delay)

    def _send_failed(self, rec: _Pending, error: nats.errors.Error, now: float) -> None:
        """Handle a message nats-py refused to send: retry while reconnecting, else fail."""
        if isinstance(
            error, nats.errors.OutboundBufferLimitError | nats.errors.ConnectionReconnectingError
        ):
            self._backoff(rec, now, "disconnected from NATS (outbound buffer full)")
        elif isinstance(error, nats.errors.MaxPayloadError):
            size = len(rec.payload)
            self._fail(
                rec, PublishRejected(f"payload of {size} bytes exceeds the server's max_payload")
            )
        else:
            self._fail(rec, PublishError(f"cannot send: {_describe(error)}"))

    async def _on_ack(self, msg: Msg) -> None:
        """Resolve the pending message an ack (or a status reply) answers."""
        rec = self._waiting.get(msg.subject)
        if rec is None or rec.verifying:
            return
        data = msg.data
        if not data:
            status = msg.headers.get(_STATUS_HEADER) if msg.headers else None
            if status == _NO_RESPONDERS:
                reason = f"no stream answered on {rec.subject!r} (no responders)"
            else:
                reason = f"unexpected reply status {status!r}"
            self._backoff(rec, time.monotonic(), reason)
            return
        try:
            ack = self._decoder.decode(data)
        except msgspec.DecodeError:
            self._fail(rec, PublishError(f"unreadable acknowledgement {bytes(data[:200])!r}"))
            return
        error = ack.error
        if error is None:
            if ack.stream == self.stream:
                if ack.duplicate:
                    self._check_duplicate(rec, ack.seq)
                else:
                    self._finish(
                        rec, PublishResult(rec.event_id, PublishStatus.STORED, rec.subject, ack.seq)
                    )
            else:
                reason = f"stored in stream {ack.stream!r} (seq {ack.seq}), not {self.stream!r}"
                self._fail(rec, PublishRejected(reason))
            return
        reason = f"{error.description} (code {error.code}, err_code {error.err_code})"
        if error.code == _UNAVAILABLE:
            self._backoff(rec, time.monotonic(), f"stream unavailable: {reason}")
            return
        self._fail(
            rec, PublishRejected(f"rejected by the server: {reason}", error.code, error.err_code)
        )

    def _finish(self, rec: _Pending, result: PublishResult) -> None:
        """Record an outcome, free the in-flight slot and wake whoever waits for either."""
        if rec.done:
            return
        rec.done = True
        del self._waiting[rec.reply]
        batch = rec.batch
        batch.results[rec.index] = result
        batch.remaining -= 1
        if batch.remaining == 0 and not batch.open and not batch.done.done():
            batch.done.set_result(None)
        if self._slot_waiters and len(self._waiting) <= self._low_water:
            self._wake_slot_waiters()

    def _fail(self, rec: _Pending, failure: PublishError) -> None:
        """Record a failure; a message that ran out of time marks its batch as broken."""
        if rec.done:
            return
        rec.failure = failure
        if isinstance(failure, PublishTimeout):
            rec.batch.broken = failure.reason
        self._finish(
            rec,
            PublishResult(rec.event_id, PublishStatus.FAILED, rec.subject, error=failure.reason),
        )

    def _wake_slot_waiters(self) -> None:
        waiters, self._slot_waiters = self._slot_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _abandon(self, batch: _Batch, reason: str | None) -> None:
        """Stop tracking a batch's pending messages: fail them with ``reason``, or drop them."""
        for rec in [r for r in self._waiting.values() if r.batch is batch]:
            if reason is None:
                rec.done = True
                del self._waiting[rec.reply]
            else:
                self._fail(rec, PublishTimeout(reason))
        if self._slot_waiters and len(self._waiting) <= self._low_water:
            self._wake_slot_waiters()
        batch.open = False
        if not batch.done.done():
            batch.done.set_result(None)

    def _finished(self, batch: _Batch, started: float) -> list[PublishResult]:
        """Return a batch's results, all known by now, and log one line about the batch."""
        results = [r for r in batch.results if r is not None]
        if len(results) != len(batch.results):  # pragma: no cover - every path fills results
            raise PublishError("internal error: an event has no outcome")
        counts = collections.Counter(r.status for r in results)
        _log.debug(
            "published batch",
            stream=self.stream,
            events=len(results),
            stored=counts[PublishStatus.STORED],
            duplicate=counts[PublishStatus.DUPLICATE],
            conflict=counts[PublishStatus.CONFLICT],
            failed=counts[PublishStatus.FAILED],
            seconds=round(time.monotonic() - started, 3),
        )
        return results

    async def _sweep(self) -> None:
        """Re-send late messages and fail expired ones, every tick, until nothing is pending."""
        try:
            while self._waiting:
                await asyncio.sleep(self._tick)
                if self.nc.is_closed:
                    for rec in list(self._waiting.values()):
                        self._fail(rec, PublishError("the NATS connection is closed"))
                    break
                now = time.monotonic()
                if now < self._next_due:
                    continue
                try:
                    await self._sweep_due(now)
                except Exception:  # a bug here must not leave messages without an outcome
                    _log.exception("publisher sweep failed", stream=self.stream)
        finally:
            self._sweeper = None
            if not self._waiting:
                self._next_due = math.inf

    async def _sweep_due(self, now: float) -> None:
        """Handle every message due by ``now``: re-send it, or fail it past its deadline."""
        due: list[_Pending] = []
        next_due = math.inf
        for rec in self._waiting.values():
            if rec.verifying:  # acknowledged; _verify resolves it
                continue
            if rec.due <= now:
                due.append(rec)
            elif rec.due < next_due:
                next_due = rec.due
        self._next_due = next_due
        resent = 0
        for rec in due:
            if rec.done:
                continue
            if now >= rec.deadline:
                self._fail(
                    rec,
                    PublishTimeout(
                        f"no acknowledgement within {self.deadline}s ({rec.attempts} "
                        f"attempt(s)); last problem: {rec.error or 'none'}"
                    ),
                )
                continue
            if not self.nc.is_connected:
                # Re-sent copies would only pile up in nats-py's reconnect buffer.
                rec.error = "disconnected from NATS"
                self._schedule(rec, now + min(self.ack_timeout, _BACKOFF_MAX))
                continue
            if rec.backoff:
                rec.backoff = False
            else:
                rec.error = f"no acknowledgement within {self.ack_timeout}s"
            rec.attempts += 1
            resent += 1
            try:
                await self.nc.publish(
                    rec.subject, rec.payload, reply=rec.reply, headers=rec.headers
                )
            except nats.errors.Error as error:
                self._send_failed(rec, error, now)
                continue
            self._schedule(rec, now + self.ack_timeout)
        self._resent += resent
        if self._resent and now - self._last_warning >= _WARN_EVERY:
            _log.warning(
                "re-sending unacknowledged events",
                stream=self.stream,
                events=self._resent,
                in_flight=len(self._waiting),
                last_problem=due[-1].error if due else None,
            )
            self._resent = 0
            self._last_warning = now


def _failed(event: Event, reason: str) -> PublishResult:
    return PublishResult(event.id, PublishStatus.FAILED, subject_of(event), error=reason)


def _loop_time(monotonic_deadline: float) -> float:
    """Convert a time.monotonic() deadline to the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _describe(error: BaseException) -> str:
    text = str(error)
    name = type(error).__name__
    return f"{name}: {text}" if text and text != name else name
