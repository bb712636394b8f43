"""The AGORA stream on a real nats-server: created append-only, never changed behind our back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import nats.js.errors
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from support.sample import sample_events

from agora.config import Settings
from agora.embedded import EmbeddedNats, free_port
from agora.errors import AgoraError, StreamConfigMismatch
from agora.stack import Stack
from agora.stream import HEADER_ALLOWANCE, StreamSettings, ensure_stream
from events.codec import encode
from events.limits import MAX_EVENT_BYTES
from events.subjects import STREAM, subject_of

START = datetime(2024, 1, 1, tzinfo=UTC)


async def _publish_raw(js: nats.js.JetStreamContext, count: int) -> None:
    for event in sample_events(1, 1, 5, count, START):
        await js.publish(subject_of(event), encode(event), headers={"Nats-Msg-Id": str(event.id)})


async def test_ensure_stream_creates_an_append_only_stream(nc: Client) -> None:
    js = nc.jetstream()
    result = await ensure_stream(js, StreamSettings())
    assert result.created
    config = (await js.stream_info(STREAM)).config
    assert config.name == STREAM
    assert config.subjects == ["agora.>"]
    assert config.retention == RetentionPolicy.LIMITS
    assert config.storage == StorageType.FILE
    assert config.discard == DiscardPolicy.OLD
    assert config.deny_delete is True
    assert config.deny_purge is True
    assert not config.allow_rollup_hdrs
    assert not config.sealed
    assert config.max_age == 0
    assert config.max_bytes == -1
    assert config.max_msgs == -1
    assert config.max_msg_size == MAX_EVENT_BYTES + HEADER_ALLOWANCE
    assert config.duplicate_window == 120
    assert config.num_replicas == 1


async def test_second_ensure_is_a_no_op(nc: Client) -> None:
    js = nc.jetstream()
    first = await ensure_stream(js, StreamSettings())
    second = await ensure_stream(js, StreamSettings())
    assert first.created and not second.created
    assert second.info.created == first.info.created
    assert second.info.config == first.info.config


async def test_other_config_is_reported_exactly_and_nothing_changes(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    await _publish_raw(js, 3)
    before = await js.stream_info(STREAM)

    with pytest.raises(StreamConfigMismatch) as caught:
        await ensure_stream(js, StreamSettings(duplicate_window=60))
    assert caught.value.differences == {"duplicate_window": (120.0, 60.0)}

    with pytest.raises(StreamConfigMismatch) as caught:
        await ensure_stream(js, StreamSettings(duplicate_window=60, max_age=3600, max_bytes=10**9))
    assert caught.value.differences == {
        "duplicate_window": (120.0, 60.0),
        "max_age": (0.0, 3600.0),
        "max_bytes": (-1, 10**9),
    }
    assert "duplicate_window" in str(caught.value)

    after = await js.stream_info(STREAM)
    assert after.config == before.config
    assert after.state.messages == before.state.messages == 3


async def test_a_stream_made_by_someone_else_is_reported_not_changed(nc: Client) -> None:
    js = nc.jetstream()
    theirs = StreamConfig(
        name=STREAM, subjects=["agora.>"], storage=StorageType.MEMORY, max_msgs=1000
    )
    await js.add_stream(theirs)

    with pytest.raises(StreamConfigMismatch) as caught:
        await ensure_stream(js, StreamSettings())

    assert caught.value.differences == {
        "storage": ("memory", "file"),
        "max_msgs": (1000, -1),
        "max_msg_size": (-1, MAX_EVENT_BYTES + HEADER_ALLOWANCE),
        "deny_delete": (False, True),
        "deny_purge": (False, True),
    }
    config = (await js.stream_info(STREAM)).config
    assert config.storage == StorageType.MEMORY
    assert config.max_msgs == 1000
    assert not config.deny_delete and not config.deny_purge


async def test_purge_and_delete_are_refused_by_the_server(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings())
    await _publish_raw(js, 3)

    with pytest.raises(nats.js.errors.APIError, match="purge not permitted"):
        await js.purge_stream(STREAM)
    with pytest.raises(nats.js.errors.APIError, match="delete not permitted"):
        await js.delete_msg(STREAM, 1)

    state = (await js.stream_info(STREAM)).state
    assert (state.messages, state.first_seq, state.last_seq) == (3, 1, 3)


async def test_a_message_over_max_msg_size_is_refused_by_the_server(nc: Client) -> None:
    js = nc.jetstream()
    info = (await ensure_stream(js, StreamSettings())).info
    limit = info.config.max_msg_size
    assert limit is not None

    with pytest.raises(nats.js.errors.APIError, match="size exceeds maximum"):
        await js.publish("agora.c1.post.created", b"x" * (limit + 1))

    await js.publish("agora.c1.post.created", b"x" * (limit - 200))  # under the limit: stored
    assert (await js.stream_info(STREAM)).state.messages == 1


# -- the Stack: embedded server with a kept store, external server, translated errors ---------


async def test_embedded_stack_keeps_its_store_between_runs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    events = list(sample_events(3, 2, 10, 20, START))

    async with Stack(settings) as stack:
        assert stack.server is not None and stack.server.running
        assert stack.nats_url.startswith("nats://127.0.0.1:")
        assert (await stack.ensure_stream()).created
        results = await stack.publisher().publish_many(events)
        assert [r.status.value for r in results] == ["stored"] * 20
        server = stack.server
    assert not server.running

    async with Stack(settings) as stack:
        assert not (await stack.ensure_stream()).created
        status = await stack.stream_status()
        assert (status.state.messages, status.state.last_seq) == (20, 20)
        assert status.state.first_time is not None and status.state.last_time is not None
        assert status.state.first_time <= status.state.last_time
        again = await stack.publisher().publish_many(events)
        assert {r.status.value for r in again} == {"duplicate"}
    assert (tmp_path / "nats" / "jetstream").is_dir()


async def test_stack_on_an_external_server(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    data_dir = tmp_path / "agora"
    settings = Settings(data_dir=data_dir, nats_url=f" {nats_server.url} ,")
    async with Stack(settings) as stack:
        assert stack.server is None
        with pytest.raises(AgoraError, match="does not exist"):
            await stack.stream_status()
        await stack.ensure_stream()
        status = await stack.stream_status()
        assert status.config.deny_delete and status.config.deny_purge
        assert status.config.duplicate_window == 120
        assert status.state.messages == 0 and status.state.first_time is None
    assert not data_dir.exists()  # nothing embedded was started


async def test_stack_reports_a_mismatch_and_translates_server_errors(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    base = Settings(data_dir=tmp_path, nats_url=nats_server.url)
    async with Stack(base) as stack:
        await stack.ensure_stream()
    window = msgspec.structs.replace(base, stream_duplicate_window=60.0)
    async with Stack(window) as stack:
        with pytest.raises(StreamConfigMismatch):
            await stack.ensure_stream()
        assert (await stack.stream_status()).config.duplicate_window == 120


async def test_stack_translates_a_refused_stream_creation(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, nats_url=nats_server.url, stream_replicas=3)
    async with Stack(settings) as stack:
        with pytest.raises(AgoraError, match="replicas"):
            await stack.ensure_stream()
        with pytest.raises(AgoraError, match="does not exist"):
            await stack.stream_status()


async def test_stack_cannot_connect_says_where_and_why(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    stack = Stack(Settings(data_dir=tmp_path, nats_url=url), connect_deadline=1.0)
    with pytest.raises(AgoraError, match=rf"cannot connect to NATS at {url}: .*refused|failed"):
        await stack.start()
    with pytest.raises(AgoraError, match="not started"):
        _ = stack.nc


async def test_stack_masks_the_password_of_an_unreachable_server(tmp_path: Path) -> None:
    url = f"nats://agora:s3cret@127.0.0.1:{free_port()}"
    stack = Stack(Settings(data_dir=tmp_path, nats_url=url), connect_deadline=0.5)
    with pytest.raises(AgoraError) as caught:
        await stack.start()
    assert "s3cret" not in str(caught.value)
    assert "agora:***@127.0.0.1" in str(caught.value)
