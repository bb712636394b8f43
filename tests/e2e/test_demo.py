"""End to end: ``agora demo`` as a user runs it, its dashboard driven in headless Chromium.

The demo runs in a subprocess (embedded nats-server, SQLite in a temporary data dir, the beer
Stack Exchange dump imported, every worker, the moderation service, the simulator, the
dashboard). Once the projections have caught up, every dashboard page of the ``beer`` community
is opened in Chromium (Debian's ``chromium`` and ``chromedriver``, through selenium: nothing is
downloaded) and its key numbers are compared with the projection tables, read directly and
read-only. The simulator's communities change while the test reads; ``beer`` does not, so its
numbers must match exactly.

Screenshots of every page go to ``tests/e2e/artifacts/`` (gitignored). The README's
``docs/img/dashboard.png`` is written when missing or when ``E2E_UPDATE_SCREENSHOT=1``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from agora.demo import DEFAULT_DATA
from agora.embedded import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
README_SHOT = ROOT / "docs" / "img" / "dashboard.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
COMMUNITY = "beer"
DURATION = 40  # seconds of live traffic once the projections caught up
WINDOW = (1280, 800)

T = TypeVar("T")

if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "needs Chromium and chromedriver: apt-get install -y chromium chromium-driver "
        "(`make test` installs them when run as root)",
        allow_module_level=True,
    )
if not (DEFAULT_DATA / "Posts.xml").is_file():
    pytest.skip(f"needs the beer Stack Exchange dump in {DEFAULT_DATA}", allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only once Chromium is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

# -- helpers -----------------------------------------------------------------------------------


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(PYTHONUNBUFFERED="1", AGORA_DATA_DIR=str(data_dir))
    return env


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, proc: Any = None) -> T:
    """Poll ``probe`` until it returns a value; fail naming ``what`` (or the demo's exit)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the demo exited ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


class Tables:
    """The projection tables by their stable names, read-only (SQLite ``mode=ro``)."""

    def __init__(self, database: Path) -> None:
        self.engine = sa.create_engine(f"sqlite:///file:{database}?mode=ro&uri=true")

    def all(self, query: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(query), params).all())

    def one(self, query: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar()


class Browser:
    """Headless Chromium at the dashboard; every page it opens is screenshotted."""

    def __init__(self, driver: WebDriver, base: str) -> None:
        self.driver = driver
        self.base = base

    def open(self, path: str, shot: str, *, charts: bool = False, ready: str = "as-of") -> None:
        self.driver.get(self.base + path)
        wait = WebDriverWait(self.driver, 30)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-testid={ready}]"))
        if charts:  # plotly has drawn every chart of the page
            wait.until(
                lambda d: all(
                    c.find_elements(By.CSS_SELECTOR, ".plot-container")
                    for c in d.find_elements(By.CSS_SELECTOR, "[data-chart]")
                )
            )
        self.driver.save_screenshot(str(ARTIFACTS / f"{shot}.png"))

    def text(self, testid: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, f"[data-testid={testid}]").text)

    def number(self, testid: str) -> int:
        return int(self.text(testid).replace(",", ""))

    def all(self, testid: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, f"[data-testid={testid}]"))

    def as_of(self) -> datetime:
        element = self.driver.find_element(By.CSS_SELECTOR, "[data-testid=as-of]")
        return _utc(element.get_attribute("datetime"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``agora demo --duration 40`` running, its projections caught up with the import."""
    ARTIFACTS.mkdir(exist_ok=True)
    work = tmp_path_factory.mktemp("demo")
    port = free_port()
    log = ARTIFACTS / "demo.out"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "agora.cli", "demo", "--duration", str(DURATION)),
                *("--port", str(port), "--moderation-port", "0"),
            ],
            cwd=work,
            env=_env(work / "data"),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(
                "the projections to catch up with the import",
                lambda: True if "projections caught up" in log.read_text() else None,
                180,
                proc,
            )
            yield {"proc": proc, "port": port, "log": log, "work": work}
        finally:
            if proc.poll() is None:
                proc.terminate()  # SIGTERM: the demo's graceful stop
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# -- the test ----------------------------------------------------------------------------------


def test_demo_serves_a_dashboard_that_matches_the_tables(demo: dict[str, Any]) -> None:
    proc, port, log, work = demo["proc"], demo["port"], demo["log"], demo["work"]
    text = log.read_text()
    imported = re.search(r"imported ([\d,]+) events of beer", text)
    assert imported, text
    assert re.search(r"moderation service: (http://\S+)", text), text
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/api/communities", timeout=10).status_code == 200

    # the moderation service answers
    moderation = re.search(r"moderation service: (http://\S+)", text)
    assert moderation is not None
    assert httpx.get(f"{moderation.group(1)}/healthz", timeout=10).json() == {"ok": True}

    # `agora status --json` beside the demo: every projection live, nothing paused
    status = subprocess.run(
        [sys.executable, "-m", "agora.cli", "status", "--json"],
        cwd=work,
        env=_env(work / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    assert document["ok"] and not document["not_started"]
    assert document["stream"]["last_seq"] >= int(imported.group(1).replace(",", ""))

    tables = Tables(work / "data" / "agora.db")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        browser = Browser(driver, base)
        check_pages(browser, tables)
    finally:
        driver.quit()
        tables.engine.dispose()

    # the demo ends by itself after its live phase, exit 0, having run the simulator
    proc.wait(DURATION + 120)
    text = log.read_text()
    assert proc.returncode == 0, text
    published = re.search(r"simulator published ([\d,]+) events \([\d.]+/s, failed 0\)", text)
    assert published and int(published.group(1).replace(",", "")) > 0, text
    last = re.search(r"stopped; stream AGORA last seq ([\d,]+)", text)
    assert last and int(last.group(1).replace(",", "")) > document["stream"]["last_seq"], text


def check_pages(browser: Browser, tables: Tables) -> None:
    c = COMMUNITY
    as_of = _utc(
        tables.one("SELECT max(last_active_at) FROM engagement_members WHERE community = :c", c=c)
    )
    end = as_of.date()

    # communities
    browser.open("/", "communities", ready="communities")
    events = tables.one("SELECT sum(events) FROM event_counts WHERE community = :c", c=c)
    row = browser.driver.find_element(By.CSS_SELECTOR, f"[data-community={c}]")
    assert int(row.find_element(By.CSS_SELECTOR, "[data-testid=events]").text.replace(",", "")) == (
        events
    )
    listed = {r.get_attribute("data-community") for r in browser.all("community-row")}
    known = {r[0] for r in tables.all("SELECT DISTINCT community FROM event_counts")}
    assert c in listed and listed <= known

    # overview: the 90 days ending on the day of "as of"
    browser.open(f"/c/{c}", "overview", charts=True)
    assert browser.as_of() == as_of
    assert browser.text("community") == c
    start = end - timedelta(days=89)
    daily = {
        _day(r.day): r
        for r in tables.all(
            "SELECT day, posts, replies, joins, active FROM engagement_daily WHERE community = :c",
            c=c,
        )
    }
    window = [r for d, r in daily.items() if start <= d <= end]
    assert browser.number("posts") == sum(r.posts for r in window) > 0
    assert browser.number("replies") == sum(r.replies for r in window)
    assert browser.number("joins") == sum(r.joins for r in window)
    assert browser.number("dau") == (daily[end].active if end in daily else 0)
    assert len(browser.all("day-row")) == 90
    if os.environ.get("E2E_UPDATE_SCREENSHOT") == "1" or not README_SHOT.exists():
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        browser.driver.save_screenshot(str(README_SHOT))

    # moderation: nobody reported anything in the beer dump
    browser.open(f"/c/{c}/moderation", "moderation")
    assert browser.as_of() == as_of
    pending = tables.one(
        "SELECT count(*) FROM moderation_queue WHERE community = :c AND status = 'pending'", c=c
    )
    assert browser.number("pending") == pending
    assert len(browser.all("queue-row")) == pending

    # reputation: the leaderboard's size and its top score
    browser.open(f"/c/{c}/reputation", "reputation", ready="leaderboard")
    assert browser.text("rules") == "default"
    members = tables.all(
        "SELECT member, score FROM reputation_members WHERE community = :c ORDER BY score DESC",
        c=c,
    )
    assert browser.number("members-total") == len(members) > 0
    top = browser.all("leader-row")[0]
    top_member = top.get_attribute("data-member")
    top_score = int(top.find_element(By.CSS_SELECTOR, "[data-testid=score]").text.replace(",", ""))
    assert top_score == members[0].score
    assert dict((m.member, m.score) for m in members)[top_member] == top_score

    # the top member's standing and ledger, newest first
    browser.open(f"/c/{c}/reputation/{top_member}", "member", ready="ledger")
    assert browser.number("score") == top_score
    entries = tables.one(
        "SELECT count(*) FROM reputation_ledger WHERE community = :c AND member = :m",
        c=c,
        m=top_member,
    )
    assert browser.number("entries-total") == entries
    balances = browser.all("balance")
    assert balances and int(balances[0].text.replace(",", "")) == top_score

    # needs attention: posts by "as of", not deleted then, without another member's reply then
    browser.open(f"/c/{c}/needs-attention", "needs-attention")
    posts = tables.all(
        "SELECT post, created_at, deleted_at, first_reply_at FROM engagement_posts "
        "WHERE community = :c",
        c=c,
    )

    def after(value: Any) -> bool:
        return value is None or _utc(value) > as_of

    unanswered = [
        p
        for p in posts
        if p.created_at is not None
        and _utc(p.created_at) <= as_of
        and after(p.deleted_at)
        and after(p.first_reply_at)
    ]
    assert browser.number("unanswered") == len(unanswered)
    oldest = min(unanswered, key=lambda p: (_utc(p.created_at), p.post), default=None)
    rows = browser.all("unanswered-row")
    assert (rows[0].get_attribute("data-post") if rows else None) == (
        oldest.post if oldest else None
    )

    # responsiveness: live posts created in the 90 days, answered, accepted
    browser.open(f"/c/{c}/responsiveness", "responsiveness", charts=True)
    in_range = [
        p
        for p in tables.all(
            "SELECT created_at, first_reply_at, accepted_at FROM engagement_posts "
            "WHERE community = :c AND deleted_at IS NULL AND created_at IS NOT NULL",
            c=c,
        )
        if start <= _utc(p.created_at).date() <= end
    ]
    assert browser.number("posts") == len(in_range) > 0
    assert browser.number("answered") == sum(1 for p in in_range if p.first_reply_at is not None)
    assert browser.number("accepted") == sum(1 for p in in_range if p.accepted_at is not None)

    # retention: one row per join cohort of the 26 weeks, with its size
    browser.open(f"/c/{c}/retention", "retention")
    last_week = end - timedelta(days=end.weekday())
    first_week = last_week - timedelta(weeks=25)
    sizes = {
        _day(r.cohort): r.members
        for r in tables.all(
            "SELECT cohort, members FROM engagement_cohort_sizes WHERE community = :c", c=c
        )
    }
    expected = {d.isoformat(): n for d, n in sizes.items() if first_week <= d <= last_week}
    shown = {
        r.get_attribute("data-cohort"): int(
            r.find_element(By.CSS_SELECTOR, "[data-testid=members]").text.replace(",", "")
        )
        for r in browser.all("cohort-row")
    }
    assert shown == expected and shown

    # crisis: each alerting hour's signal is its reports + negative reactions
    browser.open(f"/c/{c}/crisis", "crisis", charts=True)
    hourly = {
        _utc(r.hour): r.reports + r.negative
        for r in tables.all(
            "SELECT hour, reports, negative FROM engagement_hourly WHERE community = :c", c=c
        )
    }
    alerts = browser.all("alert-row")
    assert browser.number("alert-count") == len(alerts)
    for alert in alerts:
        hour = _utc(alert.get_attribute("data-hour"))
        assert end - timedelta(days=7) <= hour.date() <= end
        signal = int(alert.find_element(By.CSS_SELECTOR, "[data-testid=signal]").text)
        assert signal == hourly[hour]
