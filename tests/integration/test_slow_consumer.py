"""A catch-up never becomes a slow consumer, however slow the fold.

The server is given a small per-connection pending limit (``max_pending``), far below the
stream's size. The worker's fold blocks, the first time, until the server has sent all it will
send without being asked again (or has cut the connection as a slow consumer). What the worker
has in flight is bounded (``WorkerSettings.fetch_bytes``), so the server never cuts it, and
every event is applied once.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from support.engine import checkpoint_row, counts, make_events, oracle, publish, wires

from agora.embedded import EmbeddedNats
from agora.stream import StreamSettings, ensure_stream
from projections.api import Delivered
from projections.changes import Changes
from projections.counts import EventCounts
from projections.database import create_engine
from projections.runner import Worker, WorkerSettings
from projections.store import ProjectionStore

MAX_PENDING = 256 * 1024
"""The server's per-connection limit of bytes waiting to be written to a client (at least its
``max_payload``, which must admit the stream's largest message)."""
EVENTS = 30_000


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A nats-server that cuts any client with more than MAX_PENDING bytes waiting for it."""
    config = tmp_path / "small.conf"
    config.write_text(f"max_pending: {MAX_PENDING}\nmax_payload: {MAX_PENDING // 2}\n")
    server = EmbeddedNats(tmp_path / "nats", extra_args=["--config", str(config)])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def monitor(server: EmbeddedNats, path: str) -> Any:
    url = f"http://127.0.0.1:{server.monitor_port}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def slow_consumers(server: EmbeddedNats) -> int:
    return int(monitor(server, "/varz")["slow_consumers"])


def sending_stopped(server: EmbeddedNats, last_seq: int) -> bool:
    """True when the server sends the worker nothing more unasked: all delivered, or its pull
    requests served and none waiting."""
    document = monitor(server, "/jsz?consumers=true")
    consumers = [
        consumer
        for account in document.get("account_details") or []
        for stream in account.get("stream_detail") or []
        for consumer in stream.get("consumer_detail") or []
    ]
    delivered = [c.get("delivered", {}).get("stream_seq", 0) for c in consumers]
    return bool(consumers) and all(
        seq >= last_seq
        or (seq > 0 and not c.get("config", {}).get("deliver_subject") and not c.get("num_waiting"))
        for seq, c in zip(delivered, consumers, strict=True)
    )


class BlockedOnce(EventCounts):
    """EventCounts whose first fold waits until ``release`` is set (by a watcher thread)."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        assert self.release.wait(120), "the watcher never released the fold"
        super().fold(batch, changes)


async def test_a_catch_up_with_a_slow_fold_is_never_a_slow_consumer(
    small_server: EmbeddedNats, tmp_path: Path
) -> None:
    publisher = await nats.connect(small_server.url)
    js = publisher.jetstream()
    await ensure_stream(js, StreamSettings())
    events = make_events(EVENTS, communities=8, seed=81)
    seqs: list[int] = []
    for start in range(0, EVENTS, 500):  # acks in small rounds: the limit applies to them too
        seqs += await publish(js, wires(events[start : start + 500]))
    await publisher.close()
    total_bytes = sum(len(w.data) for w in wires(events))
    assert total_bytes > 20 * MAX_PENDING

    release = threading.Event()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not release.is_set():
            if slow_consumers(small_server) or sending_stopped(small_server, seqs[-1]):
                release.set()
            done.wait(0.02)

    cut: list[str] = []

    async def on_error(error: Exception) -> None:
        cut.append(f"error: {error!r}")

    async def on_disconnect() -> None:
        cut.append("disconnected")

    nc = await nats.connect(
        small_server.url,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.05,
    )
    engine = create_engine(f"sqlite:///{tmp_path / 'slow.db'}")
    watcher = threading.Thread(target=watch, daemon=True)
    try:
        store = ProjectionStore(engine, BlockedOnce(release))
        store.ensure(1)
        watcher.start()
        settings = WorkerSettings(
            stall_timeout=2.0,
            idle_heartbeat=0.5,
            status_interval=0.2,
            lock_poll=0.1,
            db_retry=0.2,
            fetch_bytes=MAX_PENDING // 2,
        )
        worker = Worker(nc.jetstream(), store, generation=1, settings=settings)
        await asyncio.wait_for(worker.run(until_seq=seqs[-1]), 180)
        assert release.is_set()
        assert slow_consumers(small_server) == 0
        assert cut == []
        assert counts(engine) == oracle(zip(seqs, events, strict=True))
        row = checkpoint_row(engine, "event_counts", 1)
        assert (row.last_seq, row.events, row.duplicates) == (seqs[-1], EVENTS, 0)
    finally:
        done.set()
        release.set()
        watcher.join(10)
        await nc.close()
        engine.dispose()
