"""The reliable publisher against a real embedded nats-server with the AGORA stream."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from structlog.testing import capture_logs

from agora.embedded import EmbeddedNats
from agora.stream import HEADER_ALLOWANCE
from events import (
    CODEC,
    EVENT_TYPES,
    STREAM,
    AnswerAccepted,
    ContentHidden,
    ContentReported,
    ContentRestored,
    Event,
    InvalidEvent,
    MemberJoined,
    MemberLeft,
    ModerationDecided,
    PostCreated,
    PostDeleted,
    PostEdited,
    PublishError,
    PublishTimeout,
    ReactionAdded,
    ReactionRemoved,
    ReplyCreated,
    ReplyDeleted,
    subject_of,
)
from events.errors import PublishConflict
from events.limits import MAX_EVENT_BYTES
from events.publisher import (
    InvalidPublisherSetting,
    Publisher,
    PublishRejected,
    PublishResult,
    PublishStatus,
)

T0 = datetime(2026, 11, 26, 9, 30, tzinfo=UTC)


def sample(cls: type[Event], community: str = "c42", n: int = 0) -> Event:
    """One valid event of ``cls``, with a fresh id and distinct field values per ``n``."""
    common: dict[str, Any] = {
        "id": uuid.uuid4(),
        "community": community,
        "actor": f"m{n}",
        "occurred_at": T0 + timedelta(seconds=n),
    }
    by_type: dict[type[Event], dict[str, Any]] = {
        MemberJoined: {"member": f"m{n}", "display_name": "Ada"},
        MemberLeft: {"member": f"m{n}", "reason": "removed"},
        PostCreated: {"post": f"p{n}", "title": "Why NATS?", "body": "**bold**", "tags": ["nats"]},
        PostEdited: {"post": f"p{n}", "author": "m1", "title": "Why JetStream?"},
        PostDeleted: {"post": f"p{n}", "author": "m1", "reason": "spam"},
        ReplyCreated: {"reply": f"r{n}", "post": "p1", "post_author": "m1", "parent": "r0"},
        ReplyDeleted: {"reply": f"r{n}", "post": "p1", "author": "m2"},
        ReactionAdded: {
            "target": "r1",
            "target_kind": "reply",
            "target_author": "m2",
            "kind": "upvote",
            "post": "p1",
        },
        ReactionRemoved: {
            "target": "p1",
            "target_kind": "post",
            "target_author": "m1",
            "kind": "like",
        },
        AnswerAccepted: {"post": "p1", "post_author": "m1", "reply": "r1", "reply_author": "m2"},
        ContentReported: {
            "report": f"rep{n}",
            "target": "r1",
            "target_kind": "reply",
            "target_author": "m2",
            "reason": "spam",
            "note": "ads",
        },
        ModerationDecided: {
            "target": "m2",
            "target_kind": "member",
            "target_author": "m2",
            "decision": "suspend",
            "until": T0 + timedelta(days=7),
        },
        ContentHidden: {
            "target": "r1",
            "target_kind": "reply",
            "target_author": "m2",
            "rule": "auto_hide.score",
        },
        ContentRestored: {"target": "r1", "target_kind": "reply", "target_author": "m2"},
    }
    return cls(**common, **by_type[cls])


def one_of_each(community: str = "c42") -> list[Event]:
    return [sample(cls, community, n) for n, cls in enumerate(EVENT_TYPES)]


def with_field(event: Event, **changes: Any) -> Event:
    """A copy of ``event`` with fields set *without* validation (as a buggy producer could)."""
    copy = msgspec.structs.replace(event)
    for name, value in changes.items():
        msgspec.structs.force_setattr(copy, name, value)
    return copy


async def stream_count(js: JetStreamContext) -> int:
    return int((await js.stream_info(STREAM)).state.messages)


async def assert_stored(js: JetStreamContext, result: PublishResult, event: Event) -> None:
    assert result.seq is not None
    msg = await js.get_msg(STREAM, result.seq)
    assert msg.subject == subject_of(event) == result.subject
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == str(event.id)
    assert msg.data is not None
    assert CODEC.decode(msg.data) == event


def test_samples_cover_the_catalogue() -> None:
    events = one_of_each()
    assert [type(e) for e in events] == list(EVENT_TYPES)
    for event in events:
        CODEC.encode(event)


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.TYPE)
async def test_each_type_round_trips(nc: Client, js: JetStreamContext, cls: type[Event]) -> None:
    event = sample(cls)
    result = await Publisher(nc).publish(event)
    assert result == PublishResult(event.id, PublishStatus.STORED, subject_of(event), seq=1)
    assert result.ok
    await assert_stored(js, result, event)
    assert await stream_count(js) == 1


async def test_publish_many_round_trips_every_type_in_order(
    nc: Client, js: JetStreamContext
) -> None:
    events = one_of_each("c7") + one_of_each("c8")
    results = await Publisher(nc).publish_many(events)
    assert [r.event_id for r in results] == [e.id for e in events]
    assert [r.status for r in results] == [PublishStatus.STORED] * len(events)
    assert [r.seq for r in results] == list(range(1, len(events) + 1))
    for result, event in zip(results, events, strict=True):
        await assert_stored(js, result, event)


async def test_publish_raw_uses_the_same_machinery(nc: Client, js: JetStreamContext) -> None:
    event = sample(ReplyCreated)
    publisher = Publisher(nc)
    first = await publisher.publish_raw(subject_of(event), CODEC.encode(event), str(event.id))
    assert first.status is PublishStatus.STORED
    await assert_stored(js, first, event)
    again = await publisher.publish_raw(subject_of(event), CODEC.encode(event), str(event.id))
    assert again == PublishResult(event.id, PublishStatus.DUPLICATE, subject_of(event), first.seq)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"community": "c.42"}, "community"),
        ({"actor": "m 1"}, "actor"),
        ({"occurred_at": datetime(2026, 11, 26, 9, 30, tzinfo=timezone(timedelta(hours=2)))},
         "occurred_at"),
        ({"title": ""}, "title"),
        ({"tags": ["Not A Tag"]}, "tags[0]"),
    ],
    ids=["dot-in-community", "space-in-actor", "non-utc-time", "empty-title", "bad-tag"],
)  # fmt: skip
async def test_invalid_event_is_refused_and_nothing_is_sent(
    nc: Client, js: JetStreamContext, changes: dict[str, Any], field: str
) -> None:
    bad = with_field(sample(PostCreated), **changes)
    with pytest.raises(InvalidEvent) as caught:
        await Publisher(nc).publish(bad)
    assert caught.value.field == field
    assert await stream_count(js) == 0


async def test_oversized_event_is_refused_before_sending(nc: Client, js: JetStreamContext) -> None:
    big = with_field(sample(PostCreated), body="x" * 31_000, title="t" * 300)
    big = with_field(big, tags=[f"t{i}" for i in range(10)])
    huge = with_field(sample(ReplyCreated), body="€" * 32_000)
    assert len(msgspec.json.encode(huge)) > MAX_EVENT_BYTES
    with pytest.raises(InvalidEvent, match="limit"):
        await Publisher(nc).publish(huge)
    assert await stream_count(js) == 0
    assert (await Publisher(nc).publish(big)).status is PublishStatus.STORED


async def test_publish_many_fails_only_the_invalid_event(nc: Client, js: JetStreamContext) -> None:
    good = [sample(PostCreated, n=1), sample(MemberJoined, n=2)]
    bad = with_field(sample(ReplyCreated), community="c.42")
    results = await Publisher(nc).publish_many([good[0], bad, good[1]])
    assert [r.status for r in results] == [
        PublishStatus.STORED,
        PublishStatus.FAILED,
        PublishStatus.STORED,
    ]
    assert not results[1].ok
    assert results[1].event_id == bad.id
    assert results[1].seq is None
    assert results[1].error is not None and results[1].error.startswith("community: ")
    assert await stream_count(js) == 2
    for result, event in zip([results[0], results[2]], good, strict=True):
        await assert_stored(js, result, event)


async def test_same_id_twice_is_stored_once(nc: Client, js: JetStreamContext) -> None:
    event = sample(PostCreated)
    publisher = Publisher(nc)
    first = await publisher.publish(event)
    second = await publisher.publish(event)
    assert first.status is PublishStatus.STORED
    assert second == PublishResult(event.id, PublishStatus.DUPLICATE, first.subject, first.seq)
    assert second.ok
    assert await stream_count(js) == 1
    later = await publisher.publish_many([event])
    assert later == [second]
    assert await stream_count(js) == 1


async def test_another_event_under_a_stored_id_is_a_conflict_not_a_duplicate(
    nc: Client, js: JetStreamContext
) -> None:
    """The stream dedupes by id alone; the publisher compares the stored copy before trusting it."""
    victim = sample(PostCreated, community="c42", n=1)
    squatter = with_field(sample(MemberJoined, community="c666", n=2), id=victim.id)
    publisher = Publisher(nc)
    first = await publisher.publish(squatter)
    assert first.status is PublishStatus.STORED

    [result] = await publisher.publish_many([victim])
    assert result.status is PublishStatus.CONFLICT
    assert (result.event_id, result.seq, result.ok) == (victim.id, first.seq, False)
    assert result.error is not None and f"sequence {first.seq}" in result.error
    with pytest.raises(PublishConflict) as caught:
        await publisher.publish(victim)
    assert (caught.value.event_id, caught.value.seq) == (victim.id, first.seq)
    raw = await publisher.publish_raw(subject_of(victim), CODEC.encode(victim), str(victim.id))
    assert raw.status is PublishStatus.CONFLICT
    # Same id, same subject, another content: a conflict too.
    edited = with_field(squatter, actor="m9")
    assert (await publisher.publish_many([edited]))[0].status is PublishStatus.CONFLICT
    assert await stream_count(js) == 1
    # The true copy is still a duplicate, also encoded otherwise (another client's JSON).
    assert (await publisher.publish(squatter)).status is PublishStatus.DUPLICATE
    spaced = json.dumps(json.loads(CODEC.encode(squatter)), indent=2).encode()
    again = await publisher.publish_raw(subject_of(squatter), spaced, str(squatter.id))
    assert (again.status, again.seq) == (PublishStatus.DUPLICATE, first.seq)
    assert publisher.in_flight == 0


async def test_same_id_twice_in_one_batch_is_stored_once(nc: Client, js: JetStreamContext) -> None:
    event, other = sample(PostCreated, n=1), sample(PostCreated, n=2)
    results = await Publisher(nc).publish_many([event, other, event])
    assert [r.status for r in results] == [
        PublishStatus.STORED,
        PublishStatus.STORED,
        PublishStatus.DUPLICATE,
    ]
    assert results[2].seq == results[0].seq
    assert await stream_count(js) == 2


async def test_oversized_raw_payload_fails_promptly_with_the_servers_reason(
    nc: Client, js: JetStreamContext
) -> None:
    info = await js.stream_info(STREAM)
    assert info.config.max_msg_size == MAX_EVENT_BYTES + HEADER_ALLOWANCE
    payload = b"x" * (MAX_EVENT_BYTES + HEADER_ALLOWANCE + 1)
    publisher = Publisher(nc, ack_timeout=5.0, deadline=30.0)
    started = time.monotonic()
    result = await publisher.publish_raw("agora.c42.post.created", payload, str(uuid.uuid4()))
    assert time.monotonic() - started < 2.0
    assert result.status is PublishStatus.FAILED
    assert result.error is not None and "message size exceeds maximum" in result.error
    assert publisher.in_flight == 0
    assert await stream_count(js) == 0


async def test_unrouted_subject_fails_within_the_deadline(nc: Client, js: JetStreamContext) -> None:
    publisher = Publisher(nc, ack_timeout=0.2, deadline=1.0)
    started = time.monotonic()
    result = await publisher.publish_raw("other.x", b"{}", str(uuid.uuid4()))
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0
    assert result.status is PublishStatus.FAILED
    assert result.error is not None and "no responders" in result.error
    assert publisher.in_flight == 0


async def test_publish_without_a_stream_times_out_within_the_deadline(nc: Client) -> None:
    publisher = Publisher(nc, ack_timeout=0.2, deadline=1.0)
    started = time.monotonic()
    with pytest.raises(PublishTimeout, match="no responders"):
        await publisher.publish(sample(PostCreated))
    assert time.monotonic() - started < 3.0
    results = await publisher.publish_many([sample(PostCreated, n=i) for i in range(20)])
    assert time.monotonic() - started < 6.0
    assert {r.status for r in results} == {PublishStatus.FAILED}
    assert publisher.in_flight == 0


async def test_wrong_expected_stream_is_rejected_not_retried(
    nc: Client, js: JetStreamContext
) -> None:
    publisher = Publisher(nc, stream="NOT_AGORA", ack_timeout=5.0, deadline=30.0)
    started = time.monotonic()
    with pytest.raises(PublishRejected, match="expected stream does not match") as caught:
        await publisher.publish(sample(PostCreated))
    assert time.monotonic() - started < 2.0
    assert caught.value.err_code == 10060
    assert await stream_count(js) == 0


async def test_closed_connection_is_a_publish_error(
    nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    client = await nats.connect(nats_server.url)
    publisher = Publisher(client)
    assert (await publisher.publish(sample(PostCreated, n=1))).ok
    await client.close()
    with pytest.raises(PublishError, match="closed"):
        await publisher.publish(sample(PostCreated, n=2))
    results = await publisher.publish_many([sample(PostCreated, n=3), sample(PostCreated, n=4)])
    assert [r.status for r in results] == [PublishStatus.FAILED] * 2
    assert await stream_count(js) == 1


async def test_small_in_flight_window_and_concurrent_callers(
    nc: Client, js: JetStreamContext
) -> None:
    publisher = Publisher(nc, max_in_flight=3)
    batches = [[sample(ReactionAdded, f"c{b}", n) for n in range(200)] for b in range(3)]
    singles = [sample(MemberJoined, n=n) for n in range(30)]
    outcomes = await asyncio.gather(
        *(publisher.publish_many(batch) for batch in batches),
        *(publisher.publish(event) for event in singles),
    )
    many, ones = outcomes[:3], outcomes[3:]
    for batch, results in zip(batches, many, strict=True):
        assert isinstance(results, list)
        assert [r.event_id for r in results] == [e.id for e in batch]
        assert all(r.status is PublishStatus.STORED for r in results)
    assert all(isinstance(r, PublishResult) and r.ok for r in ones)
    assert publisher.in_flight == 0
    assert await stream_count(js) == 630


async def test_publish_many_accepts_any_iterable_and_empty(
    nc: Client, js: JetStreamContext
) -> None:
    publisher = Publisher(nc)
    assert await publisher.publish_many([]) == []
    results = await publisher.publish_many(sample(PostCreated, n=n) for n in range(5))
    assert [r.seq for r in results] == [1, 2, 3, 4, 5]


async def test_logs_once_per_batch_not_per_event(nc: Client, js: JetStreamContext) -> None:
    publisher = Publisher(nc)
    events = [sample(ReactionAdded, n=n) for n in range(100)]
    with capture_logs() as logs:
        await publisher.publish_many(events)
    assert len(logs) == 1
    assert logs[0]["event"] == "published batch"
    assert logs[0]["events"] == 100 and logs[0]["stored"] == 100


async def test_raw_publish_rejects_bad_arguments(nc: Client, js: JetStreamContext) -> None:
    publisher = Publisher(nc)
    with pytest.raises(InvalidEvent) as caught:
        await publisher.publish_raw("agora.c1.post.created", b"{}", "not-a-uuid")
    assert caught.value.field == "id"
    for subject in ("", "agora.c1 post", "agora.c1\r\nPUB x 0"):
        with pytest.raises(InvalidEvent) as caught:
            await publisher.publish_raw(subject, b"{}", str(uuid.uuid4()))
        assert caught.value.field == "subject"
    assert await stream_count(js) == 0


@pytest.mark.parametrize(
    "kwargs", [{"ack_timeout": 0}, {"deadline": -1.0}, {"max_in_flight": 0}], ids=str
)
def test_settings_are_checked(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidPublisherSetting):
        Publisher(None, **kwargs)  # type: ignore[arg-type]


def test_result_ok() -> None:
    event_id = uuid.uuid4()
    assert PublishResult(event_id, PublishStatus.STORED, "s", 1).ok
    assert PublishResult(event_id, PublishStatus.DUPLICATE, "s", 1).ok
    assert not PublishResult(event_id, PublishStatus.FAILED, "s", error="why").ok


async def test_an_event_dated_past_the_clock_skew_is_not_sent(
    nc: Client, js: JetStreamContext
) -> None:
    """Issue 14: ``occurred_at`` may lie at most ``max_future_skew`` past the publisher's clock.

    On main an event dated an hour ahead (or in 9999, within the contract then) was stored.
    """
    publisher = Publisher(nc, max_future_skew=timedelta(minutes=5))
    ahead = msgspec.structs.replace(
        sample(MemberJoined, n=1), occurred_at=datetime.now(UTC) + timedelta(hours=1)
    )
    near = msgspec.structs.replace(
        sample(MemberJoined, n=2), occurred_at=datetime.now(UTC) + timedelta(minutes=1)
    )
    with pytest.raises(InvalidEvent, match="clock skew"):
        await publisher.publish(ahead)
    results = await publisher.publish_many([ahead, near])
    assert [r.status for r in results] == [PublishStatus.FAILED, PublishStatus.STORED]
    assert "clock skew" in (results[0].error or "")
    assert (await js.stream_info(STREAM)).state.messages == 1
    with pytest.raises(InvalidPublisherSetting):
        Publisher(nc, max_future_skew=timedelta(days=2))
