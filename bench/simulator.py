"""Does the simulator sustain its configured rate? Achieved rate and publish latency per target.

    .venv/bin/python -m bench.simulator [--rates 1000,5000,10000] [--seconds 20] [--json PATH]

Starts its own nats-server (store in a temporary directory, as ``bench.publish`` does) and, for
each target rate, a freshly created AGORA stream (``ensure_stream``) and connection, then runs
``services.simulator.runner.Runner`` (the model with a flat daily cycle, so the target is constant)
publishing through ``Publisher.publish_many`` for ``--seconds``. Reported per rate: events
acknowledged per second against the target, the share of the target, batch publish latency
(``publish_many`` call to its last ack; p50/p99), and whether the stream holds every event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nats
import nats.js.errors

from agora.embedded import EmbeddedNats
from agora.logs import configure_logging
from agora.stream import StreamSettings, ensure_stream
from bench.common import machine, stamp
from events import STREAM
from events.publisher import Publisher
from services.simulator.model import Simulator, SimulatorConfig
from services.simulator.runner import Runner

SUSTAINED = 0.98
"""Share of the target that counts as sustained."""


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_rate(url: str, rate: float, seconds: float, seed: int) -> dict[str, float]:
    nc = await nats.connect(url, connect_timeout=5, max_reconnect_attempts=3)
    try:
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(STREAM)
        await ensure_stream(js, StreamSettings())
        simulator = Simulator(seed, SimulatorConfig(daily_amplitude=0.0))
        runner = Runner(simulator, Publisher(nc), rate)
        cpu = _cpu()
        stats = await runner.run(asyncio.Event(), duration=seconds)
        cpu = _cpu() - cpu
        stored = int((await js.stream_info(STREAM)).state.messages)
        latencies = sorted(stats.latencies)
        return {
            "target": rate,
            "achieved": stats.rate,
            "share": stats.rate / rate,
            "events": stats.stored + stats.duplicates,
            "failed": stats.failed,
            "in_stream": stored,
            "batches": len(latencies),
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "client_cpu": cpu / stats.seconds,
        }
    finally:
        await nc.close()


async def main_async(rates: list[float], seconds: float, seed: int) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="agora-bench-sim-") as tmp:
        server = EmbeddedNats(Path(tmp) / "nats")
        server.start()
        try:
            rows = []
            for rate in rates:
                rows.append(await one_rate(server.url, rate, seconds, seed))
                await asyncio.sleep(1)  # let the server settle between phases
            return rows
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="1000,5000,10000")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure_logging("console", "warning")
    rates = [float(r) for r in args.rates.split(",")]
    started = time.monotonic()
    rows = asyncio.run(main_async(rates, args.seconds, args.seed))
    print(f"{stamp()}\n{machine()}\n")
    print(
        "| target ev/s | achieved ev/s | share | batch p50 ms | batch p99 ms "
        "| client CPU | events | in stream | sustained |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|:---:|")
    for r in rows:
        ok = r["share"] >= SUSTAINED and r["failed"] == 0 and r["in_stream"] == r["events"]
        print(
            f"| {r['target']:,.0f} | {r['achieved']:,.0f} | {r['share']:.3f} | {r['p50_ms']:.2f} "
            f"| {r['p99_ms']:.2f} | {r['client_cpu']:.0%} | {r['events']:,.0f} "
            f"| {r['in_stream']:,.0f} | {'yes' if ok else 'NO'} |"
        )
    print(f"\n{args.seconds:g} s per rate; total {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
