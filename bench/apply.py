"""Where a batch transaction's time goes, per projection, without NATS.

    python -m bench.apply [--events 200000] [--db sqlite|postgres] [--batch 5000]
                          [--projections event_counts,reputation,moderation,engagement]

Encodes the synthetic history of bench/synthetic.py once, then applies it to a fresh database
per projection through ``ProjectionStore.apply`` in catch-up-sized batches (the engine's batch
transaction: decode, seen table, reads, load, fold, write, checkpoint, commit) and prints the
cost per event of each part, in microseconds, with each projection's total against the
reference ``event_counts`` in the same run. ``bench.replay`` measures the whole worker against
the stream; this one says which part of a heavy projection to work on.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.common import DEFAULT_PG, machine, postgres_database, stamp
from bench.synthetic import history
from events import CODEC, subject_of

PARTS = ("reads", "load", "fold", "write")


class _Clock:
    """Seconds spent in each part, summed over the run."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(PARTS, 0.0)

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.spent[name] += time.perf_counter() - started


def _timed_store(engine: Any, projection: Any, clock: _Clock) -> Any:
    """A ProjectionStore whose load and write, and a projection whose reads and fold, are timed."""
    from projections.store import ProjectionStore

    reads, reads_after, fold = projection.reads, projection.reads_after, projection.fold

    def timed_reads(batch: Sequence[Any]) -> Mapping[str, Iterable[Any]]:
        with clock.part("reads"):
            wanted = reads(batch)
            # Key lists are often generators or lazy views: count building them here.
            return {table: list(keys) for table, keys in wanted.items()}

    def timed_reads_after(batch: Sequence[Any], loaded: Any) -> Mapping[str, Iterable[Any]]:
        with clock.part("reads"):
            wanted = reads_after(batch, loaded)
            return {table: list(keys) for table, keys in wanted.items()}

    def timed_fold(batch: Sequence[Any], changes: Any) -> None:
        with clock.part("fold"):
            fold(batch, changes)

    projection.reads, projection.reads_after = timed_reads, timed_reads_after
    projection.fold = timed_fold

    class Timed(ProjectionStore):
        def _load(self, *args: Any) -> Any:
            with clock.part("load"):
                return super()._load(*args)

        def _write(self, *args: Any) -> None:
            with clock.part("write"):
                super()._write(*args)

    return Timed(engine, projection)


def measure(name: str, url: str, messages: Sequence[Any], batch: int) -> dict[str, float]:
    """Apply ``messages`` for projection ``name`` on ``url``; microseconds per event per part."""
    from agora.registry import get_projection
    from projections.database import create_engine

    engine = create_engine(url)
    clock = _Clock()
    store = _timed_store(engine, get_projection(name), clock)
    store.ensure(1)
    last = 0
    started = time.perf_counter()
    for start in range(0, len(messages), batch):
        last = store.apply(1, 0, last, messages[start : start + batch]).last_seq
    total = time.perf_counter() - started
    engine.dispose()
    n = len(messages)
    result = {part: clock.spent[part] / n * 1e6 for part in PARTS}
    result["total"] = total / n * 1e6
    result["rest"] = result["total"] - sum(result[p] for p in PARTS)
    result["events_per_s"] = n / total
    return result


def main() -> None:
    """Measure each projection and print the table."""
    from projections.store import RawMessage

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres", default=DEFAULT_PG)
    parser.add_argument("--projections", default="event_counts,reputation,moderation,engagement")
    args = parser.parse_args()
    names = args.projections.split(",")
    if "event_counts" not in names:
        names.insert(0, "event_counts")
    messages = [
        RawMessage(seq, subject_of(event), CODEC.encode(event), 0)
        for seq, event in enumerate(history(args.events), start=1)
    ]
    print(f"machine: {machine()}")
    print(f"when:    {stamp()}")
    print(f"{args.events:,} events, batches of {args.batch:,}, {args.db}; us per event:")
    print(
        f"{'projection':<14}"
        + "".join(f"{p:>8}" for p in (*PARTS, "rest", "total"))
        + "  events/s  vs event_counts"
    )
    results: dict[str, dict[str, float]] = {}
    for name in names:
        with contextlib.ExitStack() as stack:
            if args.db == "sqlite":
                directory = stack.enter_context(tempfile.TemporaryDirectory())
                url = f"sqlite:///{Path(directory) / 'apply.db'}"
            else:
                url = stack.enter_context(postgres_database(args.postgres))
            results[name] = r = measure(name, url, messages, args.batch)
        ratio = r["events_per_s"] / results["event_counts"]["events_per_s"]
        print(
            f"{name:<14}"
            + "".join(f"{r[p]:>8.1f}" for p in (*PARTS, "rest", "total"))
            + f"  {r['events_per_s']:>8,.0f}  {ratio:>5.2f}"
        )
    print("rest = decode, seen table, checkpoint and commit (the engine's share of every batch)")


if __name__ == "__main__":
    main()
