"""Disk per event of the AGORA stream, for docs/capacity.md.

    .venv/bin/python deploy/measure_storage.py --events 1000000

Starts an embedded nats-server in a temporary directory, creates AGORA (Agora's configuration,
1 replica), publishes ``--events`` events of ``bench.synthetic.history`` (a coherent Q&A history
over 20 communities) with the Publisher, then prints the stream's bytes (the server's count) and
the store directory's size on disk (``du``), per event and per million events. With 3 replicas
each node holds one copy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agora.embedded import EmbeddedNats
from agora.stream import StreamSettings, ensure_stream
from bench.synthetic import history
from events.publisher import Publisher


def du_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (du -s --block-size=1)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0])


async def measure(events: int, directory: Path) -> None:
    """Publish ``events`` events into a fresh embedded server under ``directory``; print sizes."""
    with EmbeddedNats(directory / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await ensure_stream(js, StreamSettings())
            publisher = Publisher(nc)
            started = time.monotonic()
            source = history(events, seed=1)
            while chunk := list(itertools.islice(source, 10_000)):
                results = await publisher.publish_many(chunk)
                assert all(r.ok for r in results)
            took = time.monotonic() - started
            info = await js.stream_info("AGORA")
        finally:
            await nc.close()
        disk = du_bytes(directory / "nats" / "jetstream")
    n = info.state.messages
    print(f"events published: {n:,} in {took:.1f} s ({n / took:,.0f}/s)")
    print(f"stream bytes (server): {info.state.bytes:,} = {info.state.bytes / n:.0f} B/event")
    print(f"store on disk (du):    {disk:,} = {disk / n:.0f} B/event")
    print(
        f"per 1,000,000 events:  {info.state.bytes / n * 1e6 / 2**20:,.0f} MiB stream, "
        f"{disk / n * 1e6 / 2**20:,.0f} MiB on disk (one replica)"
    )


def main() -> None:
    """Parse the arguments and measure in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agora-storage-") as tmp:
        asyncio.run(measure(args.events, Path(tmp)))


if __name__ == "__main__":
    main()
