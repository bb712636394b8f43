"""The dashboard over real projections: a real uvicorn server, real SQLite and PostgreSQL.

A small history is folded by every registered projection (``ProjectionStore.apply``, no NATS),
the generations are activated (so the stable views exist), and the dashboard is served by
``serve_dashboard`` on a free loopback port. Each JSON endpoint is compared with direct SQL on
the stable names and with what the history implies; each page must answer 200 and show the same
numbers under its ``data-testid``s. Empty databases (no file, no views, no events) must render
too, and the read engine must refuse writes.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from support.engine import DB_KINDS, postgres_database, wait_until

from agora.config import Settings
from agora.embedded import free_port
from agora.registry import get_projections
from agora.web.readonly import read_only_engine, read_only_engine_for
from agora.web.server import serve_dashboard
from events import (
    CODEC,
    AnswerAccepted,
    ContentReported,
    Event,
    MemberJoined,
    MemberLeft,
    PostCreated,
    PostDeleted,
    ReactionAdded,
    ReplyCreated,
    derived_event_id,
)
from events.subjects import subject_of
from projections.database import create_engine
from projections.infra import parked as parked_table
from projections.store import FoldPolicy, ProjectionStore, RawMessage

BEER = Path("/work/shared/data/stackexchange-beer")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
TOWN = "town"
SPIKE = T0 + timedelta(days=9, hours=5)


def _history() -> list[Event]:
    n = iter(range(1_000_000))

    def common(actor: str, at: datetime, community: str = TOWN) -> dict[str, Any]:
        return {
            "id": derived_event_id("web", str(next(n))),
            "community": community,
            "actor": actor,
            "occurred_at": at,
        }

    def join(m: str, at: datetime) -> Event:
        return MemberJoined(**common(m, at), member=m)

    def post(m: str, p: str, at: datetime) -> Event:
        return PostCreated(**common(m, at), post=p, title=f"Post {p}")

    def reply(m: str, r: str, p: str, author: str, at: datetime) -> Event:
        return ReplyCreated(**common(m, at), reply=r, post=p, post_author=author)

    def upvote(m: str, kind: Any, target: str, author: str, at: datetime) -> Event:
        return ReactionAdded(
            **common(m, at), target=target, target_kind=kind, target_author=author, kind="upvote"
        )

    def report(m: str, r: str, target: str, author: str, reason: Any, at: datetime) -> Event:
        return ContentReported(
            **common(m, at),
            report=r,
            target=target,
            target_kind="post",
            target_author=author,
            reason=reason,
        )

    day = timedelta(days=1)
    hour = timedelta(hours=1)
    minute = timedelta(minutes=1)
    return [
        *(
            join(m, T0 + i * minute)
            for i, m in enumerate(["alice", "bob", "carol", "dave", "erin"])
        ),
        post("alice", "p1", T0 + hour),
        reply("bob", "r1", "p1", "alice", T0 + 2 * hour),
        AnswerAccepted(
            **common("alice", T0 + 3 * hour),
            post="p1",
            post_author="alice",
            reply="r1",
            reply_author="bob",
        ),
        post("bob", "p2", T0 + day),
        post("carol", "p3", T0 + day + hour),
        reply("alice", "r2", "p3", "carol", T0 + day + hour + 30 * minute),
        upvote("carol", "post", "p1", "alice", T0 + day + 2 * hour),
        upvote("dave", "post", "p1", "alice", T0 + day + 3 * hour),
        upvote("erin", "reply", "r1", "bob", T0 + day + 4 * hour),
        post("dave", "p4", T0 + 2 * day),
        reply("dave", "r3", "p4", "dave", T0 + 2 * day + hour),  # own reply: not an answer
        post("erin", "p5", T0 + 3 * day),
        PostDeleted(**common("erin", T0 + 3 * day + hour), post="p5", author="erin"),
        join("frank", T0 + 8 * day),
        report("carol", "x1", "p2", "bob", "spam", SPIKE + 5 * minute),
        report("dave", "x2", "p2", "bob", "spam", SPIKE + 10 * minute),
        report("erin", "x3", "p2", "bob", "off_topic", SPIKE + 15 * minute),
        report("alice", "x4", "p2", "bob", "spam", SPIKE + 20 * minute),
        report("frank", "x5", "p3", "carol", "other", SPIKE + 25 * minute),
        MemberLeft(**common("dave", SPIKE + 2 * hour), member="dave"),
        MemberJoined(**common("zoe", T0, "quiet"), member="zoe"),
    ]


HISTORY = _history()
AS_OF = SPIKE + timedelta(hours=2)  # dave leaving: the latest event in town


def project(url: str, events: list[Event]) -> None:
    """Fold ``events`` with every registered projection and activate generation 1."""
    engine = create_engine(url)
    messages = [
        RawMessage(seq, subject_of(e), CODEC.encode(e), seq) for seq, e in enumerate(events, 1)
    ]
    try:
        for projection in get_projections():
            store = ProjectionStore(engine, projection)
            store.ensure(1)
            checkpoint = 0
            for start in range(0, len(messages), 2000):
                batch = messages[start : start + 2000]
                checkpoint = store.apply(1, 0, checkpoint, batch, FoldPolicy.PAUSE).last_seq
            store.activate(1)
    finally:
        engine.dispose()


@asynccontextmanager
async def dashboard(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """``serve_dashboard`` on a free loopback port, and a client for it."""
    stop = asyncio.Event()
    port = free_port()
    task = asyncio.create_task(serve_dashboard(settings, stop, port=port))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def up() -> bool:
            if task.done():
                task.result()
            try:
                return (await client.get("/openapi.json")).status_code == 200
            except httpx.TransportError:
                return False

        try:
            await wait_until(up, 20, "the dashboard to answer")
            yield client
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)


@dataclass
class Site:
    """A projected database, its writer engine for direct SQL, and the dashboard over it."""

    client: httpx.AsyncClient
    engine: sa.Engine

    def sql(self, text: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(text), params).all())

    async def json(self, path: str) -> Any:
        response = await self.client.get(path)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    async def page(self, path: str) -> str:
        response = await self.client.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        return response.text


def text_of(html: str, name: str) -> str:
    """The text of the first element with ``data-testid=name``."""
    found = re.search(rf'data-testid="{re.escape(name)}"[^>]*>([^<]*)<', html)
    assert found, f"no data-testid={name!r}"
    return found.group(1).strip()


@pytest.fixture(scope="module", params=DB_KINDS)
async def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Site]:
    tmp = tmp_path_factory.mktemp("web")
    drop: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'web.db'}"
    else:
        url, drop = postgres_database(request.getfixturevalue("postgres_server_url"))
    project(url, HISTORY)
    engine = create_engine(url)
    try:
        async with dashboard(Settings(data_dir=tmp, database_url=url)) as client:
            yield Site(client, engine)
    finally:
        engine.dispose()
        drop()


# -- the JSON API against the tables -----------------------------------------------------------


async def test_openapi_lists_every_endpoint(site: Site) -> None:
    spec = await site.json("/openapi.json")
    paths = set(spec["paths"])
    for path in (
        "/api/communities",
        "/api/communities/{community}/overview",
        "/api/communities/{community}/moderation",
        "/api/communities/{community}/reputation",
        "/api/communities/{community}/reputation/{member}",
        "/api/communities/{community}/needs-attention",
        "/api/communities/{community}/responsiveness",
        "/api/communities/{community}/retention",
        "/api/communities/{community}/crisis",
    ):
        assert path in paths, path
        assert "200" in spec["paths"][path]["get"]["responses"]
    assert not [p for p in paths if not p.startswith("/api/")], "pages must not be in the API"
    assert "Overview" in spec["components"]["schemas"]
    docs = await site.client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


async def test_communities(site: Site) -> None:
    found = (await site.json("/api/communities"))["communities"]
    expected = site.sql(
        "SELECT community, sum(events) FROM event_counts GROUP BY community ORDER BY community"
    )
    assert [(c["community"], c["events"]) for c in found] == [(c, int(n)) for c, n in expected]
    town = next(c for c in found if c["community"] == TOWN)
    assert town["events"] == sum(1 for e in HISTORY if e.community == TOWN)
    assert datetime.fromisoformat(town["as_of"]) == AS_OF
    assert town["first_day"] == T0.date().isoformat()
    assert town["last_day"] == SPIKE.date().isoformat()


async def test_overview(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/overview?days=30")
    assert datetime.fromisoformat(view["as_of"]) == AS_OF
    assert view["end"] == AS_OF.date().isoformat()
    assert view["start"] == (AS_OF.date() - timedelta(days=29)).isoformat()
    assert len(view["series"]) == 30
    rows = site.sql(
        "SELECT day, active, wau, mau, joins, leaves, posts, replies FROM engagement_daily "
        "WHERE community = :c",
        c=TOWN,
    )
    by_day = {(r[0] if isinstance(r[0], date) else date.fromisoformat(r[0])): r for r in rows}
    for point in view["series"]:
        row = by_day.get(date.fromisoformat(point["day"]))
        expected = (0,) * 7 if row is None else tuple(int(v) for v in row[1:])
        found = tuple(
            point[k] for k in ("dau", "wau", "mau", "joins", "leaves", "posts", "replies")
        )
        assert found == expected, point["day"]
    latest = view["latest"]
    assert latest["day"] == AS_OF.date().isoformat()
    assert latest["dau"] == 5  # the five reporters (dave, leaving, is one of them)
    totals = view["totals"]
    assert (totals["joins"], totals["leaves"], totals["posts"], totals["replies"]) == (6, 1, 5, 3)
    assert totals["net_growth"] == 5


async def test_moderation_queue(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/moderation")
    counts = dict(
        site.sql(
            "SELECT priority, count(*) FROM moderation_queue "
            "WHERE community = :c AND status = 'pending' GROUP BY priority",
            c=TOWN,
        )
    )
    assert {b["priority"]: b["count"] for b in view["bands"]} == {
        p: int(counts.get(p, 0)) for p in ("high", "medium", "low")
    }
    assert [b["priority"] for b in view["bands"]] == ["high", "medium", "low"]
    assert view["pending"] == 2
    items = {i["target"]: i for b in view["bands"] for i in b["items"]}
    assert set(items) == {"p2", "p3"}
    assert items["p2"]["reasons"] == {"spam": 3, "off_topic": 1}
    assert items["p2"]["open_reports"] == 4
    assert items["p3"]["reasons"] == {"other": 1}
    opened = SPIKE + timedelta(minutes=5)
    assert datetime.fromisoformat(items["p2"]["opened_at"]) == opened
    assert items["p2"]["age_seconds"] == (AS_OF - opened).total_seconds()
    for band in view["bands"]:
        for item in band["items"]:
            assert item["priority"] == band["priority"]
            (score,) = site.sql(
                "SELECT score FROM moderation_queue WHERE community = :c AND target = :t",
                c=TOWN,
                t=item["target"],
            )[0]
            assert item["score"] == int(score)


@pytest.mark.parametrize("rules", ["default", "stackexchange"])
async def test_reputation_leaderboard_and_ledger(site: Site, rules: str) -> None:
    prefix = "reputation" if rules == "default" else "reputation_stackexchange"
    view = await site.json(f"/api/communities/{TOWN}/reputation?rules={rules}&limit=100")
    expected = site.sql(
        f"SELECT member, score, trust_level FROM {prefix}_members WHERE community = :c "
        "ORDER BY score DESC, member",
        c=TOWN,
    )
    found = [(m["member"], m["score"], m["trust_level"]) for m in view["members"]]
    assert found == [(m, int(s), int(t)) for m, s, t in expected]
    assert [m["rank"] for m in view["members"]] == list(range(1, len(expected) + 1))
    assert view["members_total"] == len(expected)
    top = view["members"][0]
    assert top["member"] == "bob"  # accepted answer +15, upvote on the reply +10

    ledger = await site.json(f"/api/communities/{TOWN}/reputation/bob?rules={rules}")
    rows = site.sql(
        f"SELECT seq, n, delta, balance FROM {prefix}_ledger "
        "WHERE community = :c AND member = 'bob' ORDER BY seq DESC, n DESC",
        c=TOWN,
    )
    assert [(e["seq"], e["n"], e["delta"], e["balance"]) for e in ledger["entries"]] == [
        tuple(int(v) for v in r) for r in rows
    ]
    assert ledger["entries_total"] == len(rows)
    assert sum(e["delta"] for e in ledger["entries"]) == ledger["member"]["score"] == top["score"]
    assert ledger["entries"][0]["balance"] == top["score"]
    assert ledger["member"]["rank"] == 1

    missing = await site.client.get(f"/api/communities/{TOWN}/reputation/nobody?rules={rules}")
    assert missing.status_code == 404


async def test_reputation_refuses_unknown_rules(site: Site) -> None:
    response = await site.client.get(f"/api/communities/{TOWN}/reputation?rules=nope")
    assert response.status_code == 422


async def test_needs_attention(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/needs-attention")
    assert datetime.fromisoformat(view["as_of"]) == AS_OF
    # p2 has no reply, p4 only its author's own; p5 is deleted; p1 and p3 are answered.
    assert view["count"] == 2
    assert [p["post"] for p in view["posts"]] == ["p2", "p4"]
    p2 = view["posts"][0]
    assert p2["author"] == "bob"
    assert p2["age_seconds"] == (AS_OF - (T0 + timedelta(days=1))).total_seconds()
    limited = await site.json(f"/api/communities/{TOWN}/needs-attention?limit=1")
    assert limited["count"] == 2 and len(limited["posts"]) == 1


async def test_responsiveness(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/responsiveness?days=30")
    days = {d["day"]: d for d in view["days"]}
    assert view["posts"] == 4  # p5 was deleted
    assert view["answered"] == 2 and view["accepted"] == 1
    first = days[T0.date().isoformat()]
    assert (first["posts"], first["answered"], first["accepted"]) == (1, 1, 1)
    assert first["median_first_reply_seconds"] == 3600
    second = days[(T0 + timedelta(days=1)).date().isoformat()]
    assert (second["posts"], second["answered"]) == (2, 1)
    assert second["median_first_reply_seconds"] == 1800
    assert second["within_1h"] == 0.5
    (posts,) = site.sql(
        "SELECT count(*) FROM engagement_posts WHERE community = :c AND deleted_at IS NULL",
        c=TOWN,
    )[0]
    assert view["posts"] == int(posts)


async def test_retention(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/retention")
    sizes = site.sql(
        "SELECT cohort, members FROM engagement_cohort_sizes WHERE community = :c ORDER BY cohort",
        c=TOWN,
    )
    assert [(c["cohort"], c["members"]) for c in view["cohorts"]] == [
        (c if isinstance(c, str) else c.isoformat(), int(m)) for c, m in sizes
    ]
    first = view["cohorts"][0]
    assert first["cohort"] == T0.date().isoformat() and first["members"] == 5
    assert len(first["active"]) == view["weeks_tracked"] + 1 == 13
    assert first["active"][0] == 5
    assert first["active"][1] == 4  # alice, carol, dave, erin reported in week 1
    assert first["shares"][1] == 0.8
    cells = site.sql(
        "SELECT week, active FROM engagement_cohorts WHERE community = :c AND cohort = :d",
        c=TOWN,
        d=T0.date(),
    )
    assert {int(w): int(a) for w, a in cells} == {w: a for w, a in enumerate(first["active"]) if a}


async def test_crisis(site: Site) -> None:
    view = await site.json(f"/api/communities/{TOWN}/crisis?hours=48")
    assert len(view["hours"]) == 48
    assert datetime.fromisoformat(view["end"]) == AS_OF.replace(minute=0)
    assert [datetime.fromisoformat(a["hour"]) for a in view["alerts"]] == [SPIKE]
    alert = view["alerts"][0]
    assert (alert["reports"], alert["negative"], alert["signal"]) == (5, 0, 5)
    hourly = site.sql("SELECT sum(reports) FROM engagement_hourly WHERE community = :c", c=TOWN)[0][
        0
    ]
    assert sum(h["reports"] for h in view["hours"]) == int(hourly)


async def test_unknown_community_reads_as_empty(site: Site) -> None:
    view = await site.json("/api/communities/nowhere/overview")
    assert view["as_of"] is None and view["series"] == [] and view["latest"] is None
    bad = await site.client.get("/api/communities/not.valid/overview")
    assert bad.status_code == 422


# -- the pages ---------------------------------------------------------------------------------


async def test_pages_show_the_numbers(site: Site) -> None:
    home = await site.page("/")
    assert f'href="/c/{TOWN}"' in home and 'data-community="quiet"' in home

    overview = await site.page(f"/c/{TOWN}?days=30")
    api = await site.json(f"/api/communities/{TOWN}/overview?days=30")
    assert text_of(overview, "dau") == str(api["latest"]["dau"])
    assert text_of(overview, "wau") == str(api["latest"]["wau"])
    assert text_of(overview, "mau") == str(api["latest"]["mau"])
    assert text_of(overview, "posts") == "5"
    assert text_of(overview, "replies") == "3"
    assert text_of(overview, "as-of") == AS_OF.strftime("%Y-%m-%d %H:%M UTC")
    assert 'data-chart="active"' in overview and "/static/vendor/plotly.min.js" in overview

    moderation = await site.page(f"/c/{TOWN}/moderation")
    assert text_of(moderation, "pending") == "2"
    assert 'data-target="post/p2"' in moderation
    assert "spam \u00d7 3" in moderation and "off_topic \u00d7 1" in moderation

    board = await site.page(f"/c/{TOWN}/reputation")
    assert 'data-member="bob"' in board
    assert text_of(board, "score") == str(
        (await site.json(f"/api/communities/{TOWN}/reputation"))["members"][0]["score"]
    )
    member = await site.page(f"/c/{TOWN}/reputation/bob?rules=stackexchange")
    ledger = await site.json(f"/api/communities/{TOWN}/reputation/bob?rules=stackexchange")
    assert text_of(member, "score") == str(ledger["member"]["score"])
    assert text_of(member, "entries-total") == str(ledger["entries_total"])
    assert member.count('data-testid="ledger-row"') == ledger["entries_total"]
    missing = await site.client.get(f"/c/{TOWN}/reputation/nobody")
    assert missing.status_code == 404 and 'data-testid="empty"' in missing.text

    attention = await site.page(f"/c/{TOWN}/needs-attention")
    assert text_of(attention, "unanswered") == "2"
    assert 'data-post="p2"' in attention and 'data-post="p4"' in attention

    responsiveness = await site.page(f"/c/{TOWN}/responsiveness?days=30")
    assert text_of(responsiveness, "posts") == "4"
    assert text_of(responsiveness, "answered") == "2"

    retention = await site.page(f"/c/{TOWN}/retention")
    row = retention.split(f'data-cohort="{T0.date().isoformat()}"', 1)[1]
    assert text_of(row, "members") == "5"
    assert text_of(row, "cell-1") == "80.0%"

    crisis = await site.page(f"/c/{TOWN}/crisis?hours=48")
    assert text_of(crisis, "alert-count") == "1"
    assert text_of(crisis, "signal") == "5"


async def test_static_files_come_from_the_installed_packages(site: Site) -> None:
    import plotly

    plotly_js = await site.client.get("/static/vendor/plotly.min.js")
    assert plotly_js.status_code == 200
    assert plotly_js.headers["content-type"].startswith("text/javascript")
    shipped = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    assert plotly_js.content == shipped.read_bytes()
    for path in ("/static/dashboard.css", "/static/charts.js"):
        assert (await site.client.get(path)).status_code == 200


# -- fresh starts ------------------------------------------------------------------------------

PAGES = [
    "/",
    "/c/town",
    "/c/town/moderation",
    "/c/town/reputation",
    "/c/town/needs-attention",
    "/c/town/responsiveness",
    "/c/town/retention",
    "/c/town/crisis",
]
ENDPOINTS = [
    "/api/communities",
    "/api/communities/town/overview",
    "/api/communities/town/moderation",
    "/api/communities/town/reputation",
    "/api/communities/town/needs-attention",
    "/api/communities/town/responsiveness",
    "/api/communities/town/retention",
    "/api/communities/town/crisis",
]


@pytest.mark.parametrize("state", ["no-file", "no-views", "no-events"])
async def test_an_empty_database_renders(state: str, tmp_path: Path) -> None:
    path = tmp_path / "agora.db"
    url = f"sqlite:///{path}"
    if state != "no-file":
        engine = create_engine(url)
        for projection in get_projections():
            store = ProjectionStore(engine, projection)
            store.ensure(1)
            if state == "no-events":
                store.activate(1)
        engine.dispose()
    async with dashboard(Settings(data_dir=tmp_path, database_url=url)) as client:
        for endpoint in ENDPOINTS:
            response = await client.get(endpoint)
            assert response.status_code == 200, (endpoint, response.text)
        assert (await client.get("/api/communities")).json() == {"communities": []}
        overview = (await client.get("/api/communities/town/overview")).json()
        assert overview["as_of"] is None and overview["series"] == []
        for page in PAGES:
            response = await client.get(page)
            assert response.status_code == 200, (page, response.text)
            assert 'data-testid="empty"' in response.text or page.endswith("moderation")
        assert (await client.get("/c/town/reputation/bob")).status_code == 404
    assert path.exists() == (state != "no-file"), "the dashboard must not create the database"


# -- read-only access --------------------------------------------------------------------------


@pytest.fixture(params=DB_KINDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ro.db'}"
        return
    url, drop = postgres_database(request.getfixturevalue("postgres_server_url"))
    try:
        yield url
    finally:
        drop()


def test_the_read_engine_refuses_writes(database: str) -> None:
    writer = create_engine(database)
    with writer.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    writer.dispose()
    engine = read_only_engine(database)
    try:
        for statement in (
            "INSERT INTO t VALUES (2)",
            "UPDATE t SET x = 3",
            "DELETE FROM t",
            "CREATE TABLE u (y INTEGER)",
            "DROP TABLE t",
        ):
            with pytest.raises(sa.exc.DBAPIError, match=r"(?i)read-?only"), engine.begin() as c:
                c.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalars().all() == [1]
    finally:
        engine.dispose()


def test_the_read_engine_uses_the_read_url_when_set(tmp_path: Path) -> None:
    main, other = tmp_path / "main.db", tmp_path / "replica.db"
    for path, value in ((main, 1), (other, 2)):
        writer = create_engine(f"sqlite:///{path}")
        with writer.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
            conn.execute(sa.text("INSERT INTO t VALUES (:v)"), {"v": value})
        writer.dispose()
    for settings, expected in (
        (Settings(database_url=f"sqlite:///{main}"), 1),
        (Settings(database_url=f"sqlite:///{main}", read_database_url=f"sqlite:///{other}"), 2),
    ):
        engine = read_only_engine_for(settings)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT x FROM t")).scalar() == expected
        engine.dispose()


@pytest.mark.postgres
def test_a_select_only_role_reads_and_cannot_write(postgres_url: str) -> None:
    """The role docs/operations.md creates: the dashboard works through it, writes are denied."""
    project(postgres_url, HISTORY[:8])
    admin = create_engine(postgres_url)
    database = sa.make_url(postgres_url).database
    writer = sa.make_url(postgres_url).username
    with admin.begin() as conn:
        conn.execute(sa.text("DROP ROLE IF EXISTS agora_read_test"))
        conn.execute(sa.text("CREATE ROLE agora_read_test LOGIN PASSWORD 'pw'"))
        conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO agora_read_test'))
        conn.execute(sa.text("GRANT USAGE ON SCHEMA public TO agora_read_test"))
        conn.execute(sa.text("GRANT SELECT ON ALL TABLES IN SCHEMA public TO agora_read_test"))
        conn.execute(
            sa.text(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {writer} IN SCHEMA public "
                "GRANT SELECT ON TABLES TO agora_read_test"
            )
        )
    url = (
        sa.make_url(postgres_url)
        .set(username="agora_read_test", password="pw")
        .render_as_string(hide_password=False)
    )
    engine = read_only_engine_for(Settings(database_url=postgres_url, read_database_url=url))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT sum(events) FROM event_counts")).scalar() == 8
            conn.commit()
            # Even with the session's read-only default lifted, the role has no write grant.
            conn.execute(sa.text("SET TRANSACTION READ WRITE"))
            with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                conn.execute(sa.text("DELETE FROM event_counts"))
        # A rebuild re-creates the views; the default privileges grant the new ones.
        store = ProjectionStore(admin, get_projections(["event_counts"])[0])
        store.ensure(2)
        store.activate(2, require_caught_up=False)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM event_counts")).scalar() == 0
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'REVOKE ALL ON DATABASE "{database}" FROM agora_read_test'))
            conn.execute(sa.text("DROP OWNED BY agora_read_test"))
            conn.execute(sa.text("DROP ROLE agora_read_test"))
        admin.dispose()


# -- the beer.stackexchange.com history ---------------------------------------------------------


@pytest.mark.skipif(not BEER.is_dir(), reason=f"{BEER} is not available")
async def test_the_beer_history_renders(tmp_path: Path) -> None:
    from services.stackexchange import iter_events

    url = f"sqlite:///{tmp_path / 'beer.db'}"
    project(url, list(iter_events(BEER, "beer", work_dir=tmp_path)))
    engine = create_engine(url)
    with engine.connect() as conn:
        as_of = conn.execute(
            sa.text("SELECT max(last_active_at) FROM engagement_members WHERE community = 'beer'")
        ).scalar()
        top = conn.execute(
            sa.text(
                "SELECT member, score FROM reputation_stackexchange_members "
                "WHERE community = 'beer' ORDER BY score DESC, member LIMIT 1"
            )
        ).one()
    engine.dispose()
    async with dashboard(Settings(data_dir=tmp_path, database_url=url)) as client:
        for page in PAGES:
            response = await client.get(page.replace("town", "beer"))
            assert response.status_code == 200, page
        overview = (await client.get("/api/communities/beer/overview")).json()
        assert datetime.fromisoformat(overview["as_of"]) == datetime.fromisoformat(
            str(as_of)
        ).replace(tzinfo=UTC)
        assert overview["latest"]["mau"] > 100
        board = (await client.get("/api/communities/beer/reputation?rules=stackexchange")).json()
        assert (board["members"][0]["member"], board["members"][0]["score"]) == tuple(top)
        member = await client.get(f"/c/beer/reputation/{top[0]}?rules=stackexchange")
        assert member.status_code == 200 and text_of(member.text, "score") == str(top[1])
        retention = (await client.get("/api/communities/beer/retention")).json()
        assert retention["cohorts"] and retention["cohorts"][0]["members"] > 0


async def test_a_parked_community_shows_that_its_figures_are_held(site: Site) -> None:
    """Failed before: the pages said nothing of a community parked at a poison event."""
    assert 'data-testid="held"' not in await site.page(f"/c/{TOWN}")
    since = datetime(2026, 3, 3, 12, 30, tzinfo=UTC)
    row = {
        "projection": "event_counts",
        "generation": 1,
        "community": TOWN,
        "partition": 0,
        "first_seq": 17,
        "error_class": "RuntimeError",
        "error_message": "boom",
        "since": since,
        "occurred_at": since,
        "held": 4,
    }
    with site.engine.begin() as conn:
        conn.execute(parked_table.insert(), [row])
    try:
        overview = await site.page(f"/c/{TOWN}")
        note = re.search(r'data-testid="held">(.*?)</p>', overview, re.S)
        assert note is not None
        text = " ".join(re.sub(r"<[^>]+>", "", note.group(1)).split())
        assert text.startswith("Figures of event_counts for this community are held since")
        assert "2026-03-03 12:30 UTC" in text and "stream sequence 17" in text
        assert "RuntimeError: boom" in text
        assert 'data-testid="held"' not in await site.page("/c/quiet")
    finally:
        with site.engine.begin() as conn:
            conn.execute(parked_table.delete())
