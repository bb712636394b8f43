"""`agora status` per call: wall time of the command on a populated store beside a running NATS.

    python -m bench.status [--events 5000] [--partitions 3] [--extra 500] [--reps 15]
                           [--code DIR ...]

Sets up what an operator has beside `agora demo`: a data folder whose embedded nats-server runs
(the command attaches to it, as it does to the demo's), every registered projection caught up in
SQLite with ``--partitions`` partitions, a retired generation (one rebuild), and ``--extra``
events published after the workers stopped, so every partition lags (the slow case: each lag has
an age to read). Then runs ``agora status`` and ``agora status --json`` ``--reps`` times each as
a fresh process and reports the wall time and the CPU time (user + system) per call. Each
``--code DIR`` (a checkout of another commit, e.g. ``git worktree add /tmp/before main``) is
timed the same way on the same store, for before/after figures from one run. Byte code is cached
as on an operator's machine (``PYTHONDONTWRITEBYTECODE`` is dropped for the calls; the warm-up
call writes it). Target (issue 16): <= 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, stamp


async def populate(data_dir: Path, events: int, partitions: int, extra: int) -> dict[str, Any]:
    """Publish, run every projection until caught up, rebuild one, publish ``extra`` more."""
    import structlog

    from agora.config import get_settings
    from agora.registry import known_names
    from agora.stack import Stack
    from agora.workers import open_engine, run_workers
    from bench.synthetic import history
    from projections.status import read_status

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    settings = get_settings()
    engine = open_engine(settings)
    async with Stack(settings, name="bench-status") as stack:
        await stack.ensure_stream()
        publisher = stack.publisher()
        await publisher.publish_many(list(history(events, seed=7)))
        head = (await stack.stream_status()).state.last_seq
        stop = asyncio.Event()
        task = asyncio.create_task(run_workers(stack, None, partitions=partitions, stop=stop))
        wanted = len(known_names()) * partitions
        deadline = time.monotonic() + 600
        while True:
            rows = await asyncio.to_thread(read_status, engine)
            if len(rows) >= wanted and all(r.checkpoint >= head for r in rows):
                break
            if time.monotonic() > deadline or task.done():
                raise RuntimeError(f"workers did not catch up: {rows}")
            await asyncio.sleep(0.2)
        stop.set()
        await task
    engine.dispose()
    env = {**os.environ, "AGORA_LOG_LEVEL": "warning"}
    name = known_names()[0]
    rebuilt = subprocess.run(  # noqa: ASYNC221 - setup, nothing else runs meanwhile
        [sys.executable, "-m", "agora.cli", "rebuild", name, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if rebuilt.returncode != 0:
        raise RuntimeError(f"rebuild failed: {rebuilt.stderr}")
    async with Stack(settings, name="bench-status") as stack:
        await stack.publisher().publish_many(list(history(extra, seed=8)))
        head = (await stack.stream_status()).state.last_seq
    return {"head": head, "rows": len(read_status(open_engine(settings)))}


def time_calls(args: list[str], reps: int, code: Path | None = None) -> dict[str, Any]:
    """Wall and CPU time of ``agora ARGS`` as a fresh process, ``reps`` times (after a warm-up)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    wall: list[float] = []
    cpu: list[float] = []
    widest = 0
    for i in range(reps + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "agora.cli", *args],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=code,
        )
        elapsed = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"agora {' '.join(args)} exited {done.returncode}: {done.stderr}")
        if i:
            wall.append(elapsed)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        widest = max((len(line.rstrip()) for line in done.stdout.splitlines()), default=0)
    return {
        "code": str(code) if code is not None else "this checkout",
        "command": "agora " + " ".join(args),
        "wall_p50_ms": round(statistics.median(wall) * 1000),
        "wall_min_ms": round(min(wall) * 1000),
        "cpu_p50_ms": round(statistics.median(cpu) * 1000),
        "cpu_min_ms": round(min(cpu) * 1000),
        "widest_line": widest,
    }


def main() -> None:
    """Set up the store, time the calls, print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--extra", type=int, default=500)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--code", type=Path, action="append", default=[])
    args = parser.parse_args()

    from agora.embedded import EmbeddedNats

    with tempfile.TemporaryDirectory(prefix="agora-bench-status-") as folder:
        data_dir = Path(folder) / "data"
        os.environ["AGORA_DATA_DIR"] = str(data_dir)
        os.environ.pop("AGORA_NATS_URL", None)
        os.environ.pop("AGORA_DATABASE_URL", None)
        with EmbeddedNats(data_dir / "nats"):
            setup = asyncio.run(populate(data_dir, args.events, args.partitions, args.extra))
            results = []
            for code in [*args.code, None]:
                for command in (["status"], ["status", "--json"]):
                    results.append(time_calls(command, args.reps, code))
    print(
        json.dumps(
            {"when": stamp(), "machine": machine(), "setup": setup, "results": results}, indent=2
        )
    )


if __name__ == "__main__":
    main()
