"""Publish throughput and latency: Publisher against raw nats-py JetStream, in one run.

    .venv/bin/python -m bench.publish [--events N] [--rounds R] [--latency N] [--json PATH]

Starts its own nats-server (store in a temporary directory). Every phase publishes to a freshly
re-created stream shaped exactly like AGORA (``ensure_stream``), on a fresh connection:

* raw: ``js.publish_async`` of N pre-encoded events with ``Nats-Msg-Id``, then
  ``js.publish_async_completed()``;
* publisher: ``Publisher.publish_many`` of N event Structs (validation and encoding included);
* latency: sequential single publishes, ``js.publish`` and ``Publisher.publish``.

The throughput phases alternate for ``--rounds`` rounds; the table shows the median of each.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext

from agora.embedded import EmbeddedNats, find_nats_server
from agora.logs import configure_logging
from agora.stream import StreamSettings, ensure_stream
from events import (
    CODEC,
    STREAM,
    Event,
    PostCreated,
    ReactionAdded,
    ReplyCreated,
    subject_of,
)
from events.publisher import Publisher, PublishStatus

TARGET_RATIO = 0.85
T = TypeVar("T")
_T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def make_events(n: int) -> list[Event]:
    """A realistic mix: one post in ten, three replies, six reactions; 20 communities."""
    events: list[Event] = []
    body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 3
    for i in range(n):
        common: dict[str, Any] = {
            "id": uuid.uuid4(),
            "community": f"c{i % 20}",
            "actor": f"m{i % 997}",
            "occurred_at": _T0 + dt.timedelta(milliseconds=i),
        }
        kind = i % 10
        if kind == 0:
            events.append(
                PostCreated(
                    **common,
                    post=f"p{i}",
                    title=f"Question {i}",
                    body=body,
                    tags=["python", "nats"],
                )
            )
        elif kind <= 3:
            events.append(
                ReplyCreated(
                    **common, reply=f"r{i}", post=f"p{i - kind}", post_author="m1", body=body
                )
            )
        else:
            events.append(
                ReactionAdded(
                    **common,
                    target=f"p{i - kind}",
                    target_kind="post",
                    target_author="m1",
                    kind="upvote",
                )
            )
    return events


async def connect(url: str) -> Client:
    return await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)


async def fresh_stream(js: JetStreamContext) -> None:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream(STREAM)
    await ensure_stream(js, StreamSettings())


async def stored(js: JetStreamContext) -> int:
    return int((await js.stream_info(STREAM)).state.messages)


async def raw_publish_async(url: str, events: list[Event]) -> float:
    """Seconds for js.publish_async of every event (pre-encoded) and all its acks."""
    pre = [(subject_of(e), CODEC.encode(e), str(e.id)) for e in events]
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await fresh_stream(js)
        start = time.perf_counter()
        for subject, payload, msg_id in pre:
            await js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
        await js.publish_async_completed()
        elapsed = time.perf_counter() - start
        assert await stored(js) == len(events), "raw phase: not every event stored"
        return elapsed
    finally:
        await nc.close()


async def publisher_many(url: str, events: list[Event]) -> float:
    """Seconds for Publisher.publish_many of every event (validation and encoding included)."""
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await fresh_stream(js)
        publisher = Publisher(nc)
        start = time.perf_counter()
        results = await publisher.publish_many(events)
        elapsed = time.perf_counter() - start
        assert all(r.status is PublishStatus.STORED for r in results), "publisher: not all stored"
        assert await stored(js) == len(events), "publisher phase: not every event stored"
        return elapsed
    finally:
        await nc.close()


async def latencies(url: str, events: list[Event]) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of sequential single publishes: raw js.publish, then Publisher.publish."""
    half = len(events) // 2
    nc = await connect(url)
    try:
        js = nc.jetstream()
        await fresh_stream(js)
        publisher = Publisher(nc)
        pre = [(subject_of(e), CODEC.encode(e), str(e.id)) for e in events[:half]]

        async def raw(item: tuple[str, bytes, str]) -> None:
            await js.publish(item[0], item[1], headers={"Nats-Msg-Id": item[2]})

        async def ours(event: Event) -> None:
            await publisher.publish(event)

        out = {
            "raw js.publish": await _timed(raw, pre),
            "Publisher.publish": await _timed(ours, events[half:]),
        }
        assert await stored(js) == 2 * half, "latency phase: not every event stored"
        return out
    finally:
        await nc.close()


async def _timed(call: Callable[[T], Awaitable[None]], items: list[T]) -> dict[str, float]:
    for item in items[:50]:  # warm-up, not measured
        await call(item)
    samples = []
    for item in items[50:]:
        start = time.perf_counter()
        await call(item)
        samples.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p99_ms": cuts[98], "samples": len(samples)}


def _python() -> str:
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    server_version = subprocess.run(
        [str(find_nats_server()), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "nats-py": version("nats-py"),
        "msgspec": version("msgspec"),
        "nats-server": server_version,
        "platform": platform.platform(),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = dt.datetime.now(dt.UTC)
    sizes = [len(CODEC.encode(e)) for e in make_events(1000)]
    raw_s: list[float] = []
    pub_s: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="agora-bench-") as tmp,
        EmbeddedNats(Path(tmp) / "nats") as server,
    ):
        warm = make_events(min(5000, args.events))
        await raw_publish_async(server.url, warm)
        await publisher_many(server.url, warm)
        for round_ in range(args.rounds):
            phases = [(raw_publish_async, raw_s), (publisher_many, pub_s)]
            for phase, out in phases if round_ % 2 == 0 else reversed(phases):
                events = make_events(args.events)
                gc.collect()
                out.append(await phase(server.url, events))
        latency = await latencies(server.url, make_events(args.latency))
    raw_rate = args.events / statistics.median(raw_s)
    pub_rate = args.events / statistics.median(pub_s)
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join([_python(), "-m", "bench.publish", *sys.argv[1:]]),
        "machine": machine(),
        "events": args.events,
        "rounds": args.rounds,
        "event_bytes_mean": round(statistics.mean(sizes), 1),
        "throughput": {
            "raw js.publish_async": {
                "events_per_s": round(raw_rate),
                "seconds": [round(s, 3) for s in raw_s],
            },
            "Publisher.publish_many": {
                "events_per_s": round(pub_rate),
                "seconds": [round(s, 3) for s in pub_s],
            },
        },
        "ratio": round(pub_rate / raw_rate, 3),
        "target_ratio": TARGET_RATIO,
        "latency": {k: {m: round(v, 3) for m, v in d.items()} for k, d in latency.items()},
    }


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"date     {report['date']}",
        f"command  {report['command']}",
        f"machine  {m['nproc']} CPU ({m['cpu']}), Python {m['python']}, nats-py {m['nats-py']}, "
        f"{m['nats-server']}",
        f"events   {report['events']} per round, {report['rounds']} rounds, "
        f"mean {report['event_bytes_mean']} bytes/event",
        "",
        f"{'throughput (median of rounds)':<32}{'events/s':>12}   seconds per round",
    ]
    for name, row in report["throughput"].items():
        secs = ", ".join(f"{s:.3f}" for s in row["seconds"])
        lines.append(f"{name:<32}{row['events_per_s']:>12,}   {secs}")
    ok = "meets" if report["ratio"] >= report["target_ratio"] else "BELOW"
    lines += [
        f"ratio publish_many / raw publish_async: {report['ratio']:.3f} "
        f"({ok} the {report['target_ratio']} target)",
        "",
        f"{'latency, sequential':<32}{'p50 ms':>10}{'p99 ms':>10}{'samples':>10}",
    ]
    for name, row in report["latency"].items():
        lines.append(
            f"{name:<32}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}{int(row['samples']):>10}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__)
    parser.add_argument("--events", type=int, default=100_000, help="events per phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    parser.add_argument("--latency", type=int, default=4_100, help="single publishes, both kinds")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")
    report = asyncio.run(run(args))
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
