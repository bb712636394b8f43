"""Dashboard query latency of the engagement projection over a large synthetic history.

    python -m bench.dashboard [--events 1000000] [--db postgres|sqlite] [--days 365] [--reps 200]

Generates the synthetic community history of bench/synthetic.py (its event times stretched over
``--days`` so that daily, rolling and cohort metrics have a year of data), folds it into a fresh
database through ProjectionStore.apply in batches of 5,000 (the engine's batch transaction, without
NATS: this measures the queries, not the consumer), activates generation 1 so the queries read the
stable names, runs VACUUM ANALYZE, then runs each query of projections/engagement/queries.py
``--reps`` times on the busiest community and prints p50/p99 in ms against the 50 ms target.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa

from bench.common import DEFAULT_PG, machine, postgres_database, stamp
from bench.synthetic import START, history
from events import CODEC, subject_of
from projections.database import create_engine
from projections.engagement import Engagement, queries
from projections.store import FoldPolicy, ProjectionStore, RawMessage

TARGET_MS = 50.0
BATCH = 5_000


def messages(count: int, days: int) -> tuple[list[RawMessage], Counter[str], datetime]:
    """The encoded history, its events per community, and the newest event time."""
    raw = list(history(count))
    span = raw[-1].occurred_at - START
    factor = timedelta(days=days) / span
    out: list[RawMessage] = []
    per: Counter[str] = Counter()
    last = START
    for seq, event in enumerate(raw, start=1):
        at = START + (event.occurred_at - START) * factor
        event = msgspec.structs.replace(event, occurred_at=at)
        per[event.community] += 1
        last = max(last, at)
        out.append(RawMessage(seq, subject_of(event), CODEC.encode(event), seq))
    return out, per, last


def fold(url: str, msgs: list[RawMessage]) -> tuple[sa.Engine, float]:
    """Fold every message into generation 1 and activate it; return the engine and seconds."""
    engine = create_engine(url)
    store = ProjectionStore(engine, Engagement())
    store.ensure(1)
    started = time.monotonic()
    checkpoint = 0
    for i in range(0, len(msgs), BATCH):
        batch = msgs[i : i + BATCH]
        checkpoint = store.apply(1, 0, checkpoint, batch, FoldPolicy.PAUSE).last_seq
    seconds = time.monotonic() - started
    store.activate(1)
    if engine.dialect.name == "postgresql":
        # What autovacuum does on a live database; it also lets PostgreSQL use index-only scans.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    else:
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    return engine, seconds


def cases(conn: sa.Connection, community: str, now: datetime) -> dict[str, Callable[[], Any]]:
    """The dashboard's queries, with the ranges a dashboard asks for."""
    today = now.date()
    member = conn.execute(
        sa.text(
            "SELECT member FROM engagement_members WHERE community = :c "
            "ORDER BY active_days DESC, member LIMIT 1"
        ),
        {"c": community},
    ).scalar_one()
    post = conn.execute(
        sa.text(
            "SELECT post FROM engagement_posts WHERE community = :c "
            "ORDER BY replies DESC, post LIMIT 1"
        ),
        {"c": community},
    ).scalar_one()
    return {
        "daily_series 90d": lambda: queries.daily_series(
            conn, community, today - timedelta(days=89), today
        ),
        "daily_series 365d": lambda: queries.daily_series(
            conn, community, today - timedelta(days=364), today
        ),
        "responsiveness 30d": lambda: queries.responsiveness(
            conn, community, today - timedelta(days=29), today
        ),
        "needs_attention": lambda: queries.needs_attention(conn, community, now),
        "needs_attention 60d ago": lambda: queries.needs_attention(
            conn, community, now - timedelta(days=60)
        ),
        "cohort_retention 26w": lambda: queries.cohort_retention(
            conn, community, today - timedelta(weeks=26), today
        ),
        "inactive_members 30d": lambda: queries.inactive_members(conn, community, now, 30),
        "member_profile": lambda: queries.member_profile(conn, community, member),
        "post_stats": lambda: queries.post_stats(conn, community, post),
        "crisis_hours 7d": lambda: queries.crisis_hours(
            conn, community, now - timedelta(days=7), now
        ),
        "crisis_alerts 30d": lambda: queries.crisis_alerts(
            conn, community, now - timedelta(days=30), now
        ),
    }


def measure(engine: sa.Engine, community: str, now: datetime, reps: int) -> list[tuple[str, ...]]:
    """p50/p99 of each query over ``reps`` runs (after 3 warm-up runs)."""
    rows: list[tuple[str, ...]] = []
    with engine.connect() as conn:
        for name, run in cases(conn, community, now).items():
            for _ in range(3):
                run()
            times: list[float] = []
            for _ in range(reps):
                started = time.perf_counter()
                run()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            p50 = statistics.median(times)
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            verdict = "ok" if p99 <= TARGET_MS else "OVER"
            rows.append((name, f"{p50:.2f}", f"{p99:.2f}", verdict))
    return rows


def sizes(engine: sa.Engine) -> dict[str, int]:
    """Rows per engagement table."""
    out: dict[str, int] = {}
    with engine.connect() as conn:
        for name in (
            "engagement_daily",
            "engagement_hourly",
            "engagement_members",
            "engagement_posts",
            "engagement_cohorts",
        ):
            out[name] = int(conn.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one())
    return out


def main() -> None:
    """Generate, fold, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--pg", default=DEFAULT_PG, help="PostgreSQL server URL")
    args = parser.parse_args()

    started = time.monotonic()
    msgs, per, now = messages(args.events, args.days)
    generated = time.monotonic() - started
    community, events = per.most_common(1)[0]
    print(f"# {stamp()}\n# {machine()}")
    total = len(msgs)
    print(
        f"# {total} events over {args.days} days, {len(per)} communities; "
        f"queried: {community} ({events} events); generated in {generated:.0f}s"
    )

    def run(url: str) -> None:
        engine, seconds = fold(url, msgs)
        # A dashboard process does not hold a million messages: without them, a garbage
        # collection no longer walks them in the middle of a timed query.
        msgs.clear()
        gc.collect()
        print(
            f"# folded into {args.db} in {seconds:.0f}s "
            f"({total / seconds:,.0f} events/s, batches of {BATCH}); rows: {sizes(engine)}"
        )
        rows = measure(engine, community, now, args.reps)
        engine.dispose()
        width = max(len(r[0]) for r in rows)
        print(f"\n{'query':<{width}}  {'p50 ms':>8}  {'p99 ms':>8}  target {TARGET_MS:.0f} ms")
        for name, p50, p99, verdict in rows:
            print(f"{name:<{width}}  {p50:>8}  {p99:>8}  {verdict}")

    if args.db == "postgres":
        with postgres_database(args.pg) as url:
            run(url)
    else:
        with tempfile.TemporaryDirectory() as directory:
            run(f"sqlite:///{Path(directory) / 'dashboard'}.db")


if __name__ == "__main__":
    main()
