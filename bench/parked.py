"""What parked communities cost a batch (SQLite, ``event_counts``, without NATS).

    python -m bench.parked [--events 20000] [--batch 100]

Applies the synthetic history through ``ProjectionStore.apply`` twice, on fresh databases: with
no parked community, then with community ``c0`` parked (its events are held). Prints SQL
statements per batch (a deterministic count, unlike times on a shared machine), microseconds
per event, and the cost of one uncached parked-communities lookup.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from bench.common import machine, stamp
from bench.synthetic import history
from events import CODEC, subject_of
from projections.counts import EventCounts
from projections.database import create_engine
from projections.infra import parked
from projections.store import ProjectionStore, RawMessage

_T = datetime(2026, 1, 1, tzinfo=UTC)


def run(messages: list[RawMessage], batch: int, park: bool) -> tuple[float, float, float]:
    """(statements per batch, us per event, us per uncached lookup) on a fresh database."""
    with tempfile.TemporaryDirectory() as folder:
        engine = create_engine(f"sqlite:///{Path(folder) / 'bench.db'}")
        store = ProjectionStore(engine, EventCounts())
        store.ensure(1)
        if park:
            row = {
                "projection": "event_counts",
                "generation": 1,
                "community": "c0",
                "partition": 0,
                "first_seq": 0,
                "error_class": "RuntimeError",
                "error_message": "bench",
                "since": _T,
                "occurred_at": _T,
                "held": 0,
            }
            with engine.begin() as conn:
                conn.execute(parked.insert(), [row])
        gen = store.generation(1)
        with engine.begin() as conn:
            started = time.perf_counter()
            for _ in range(1000):
                store._parked_now(conn, gen, 0, -1)
            lookup = (time.perf_counter() - started) / 1000 * 1e6
        statements = [0]

        def count(*_: object) -> None:
            statements[0] += 1

        sa.event.listen(engine, "before_cursor_execute", count)
        last = 0
        started = time.perf_counter()
        for start in range(0, len(messages), batch):
            last = store.apply(1, 0, last, messages[start : start + batch]).last_seq
        spent = time.perf_counter() - started
        engine.dispose()
    batches = -(-len(messages) // batch)
    return statements[0] / batches, spent / len(messages) * 1e6, lookup


def main() -> None:
    """Measure without and with a parked community and print both."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    messages = [
        RawMessage(i + 1, subject_of(e), CODEC.encode(e), 1_700_000_000_000_000_000 + i)
        for i, e in enumerate(history(args.events))
    ]
    print(f"machine: {machine()}")
    print(f"when:    {stamp()}")
    print(f"{args.events:,} events, batches of {args.batch:,}, sqlite, event_counts")
    for park in (False, True):
        statements, per_event, lookup = run(messages, args.batch, park)
        label = "c0 parked " if park else "none parked"
        print(
            f"{label}: {statements:.2f} statements per batch, {per_event:.1f} us per event, "
            f"uncached lookup {lookup:.0f} us"
        )


if __name__ == "__main__":
    main()
