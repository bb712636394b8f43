"""The dashboard's HTML pages: server-rendered with Jinja2, one page per view.

Each page renders the same model its JSON endpoint returns (:mod:`agora.web.data`), so the two
always agree. Charts are drawn in the browser by plotly.js (served from the installed package)
from the model embedded in the page as JSON; ``static/charts.js`` is the only script of ours.
Key numbers and tables carry ``data-testid`` attributes for browser tests.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from agora.web import data
from agora.web.params import (
    DEFAULT_DAYS,
    DEFAULT_HOURS,
    DEFAULT_LEDGER_LIMIT,
    DEFAULT_LIMIT,
    DEFAULT_RULES,
    DEFAULT_WEEKS,
    Community,
    Days,
    Hours,
    Limit,
    Member,
    Offset,
    Rules,
    Weeks,
    read,
)
from projections.reputation import RULE_SETS

TEMPLATES: Final = Jinja2Templates(directory=Path(__file__).parent / "templates")

NAV: Final = (
    ("overview", "Overview", ""),
    ("moderation", "Moderation queue", "/moderation"),
    ("reputation", "Reputation", "/reputation"),
    ("attention", "Needs attention", "/needs-attention"),
    ("responsiveness", "Responsiveness", "/responsiveness"),
    ("retention", "Retention", "/retention"),
    ("crisis", "Crisis alerts", "/crisis"),
)
"""The pages of a community: (key, title, path under /c/<community>)."""


def duration(seconds: float | None) -> str:
    """A duration for people: ``45 s``, ``12 min``, ``3 h 5 min``, ``4 d 2 h``; ``-`` if none."""
    if seconds is None:
        return "-"
    sign, s = ("-", -seconds) if seconds < 0 else ("", seconds)
    if s < 60:
        return f"{sign}{s:.0f} s"
    if s < 3600:
        return f"{sign}{s // 60:.0f} min"
    if s < 86400:
        return f"{sign}{s // 3600:.0f} h {s % 3600 // 60:.0f} min"
    return f"{sign}{s // 86400:.0f} d {s % 86400 // 3600:.0f} h"


def percent(share: float | None) -> str:
    """A share 0..1 as a percentage with one decimal; ``-`` if none."""
    return "-" if share is None else f"{share * 100:.1f}%"


def when(at: datetime | None) -> str:
    """A UTC time to the minute; ``-`` if none."""
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M UTC")


def points(milli: int) -> str:
    """Milli-points as points with up to three decimals."""
    return f"{milli / 1000:g}"


TEMPLATES.env.filters.update(duration=duration, percent=percent, when=when, points=points)

router = APIRouter(include_in_schema=False)


def _page(
    request: Request,
    template: str,
    community: str | None,
    page: str,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    held = read(request, lambda s: data.held_figures(s, community)) if community else []
    return TEMPLATES.TemplateResponse(
        request,
        template,
        {"community": community, "page": page, "nav": NAV, "held": held, **context},
        status_code=status_code,
    )


@router.get("/", response_class=HTMLResponse)
def communities_page(request: Request) -> HTMLResponse:
    """Every community, linking to its overview."""
    return _page(
        request, "communities.html", None, "communities", view=read(request, data.community_list)
    )


@router.get("/c/{community}", response_class=HTMLResponse)
def overview_page(
    request: Request, community: Community, days: Days = DEFAULT_DAYS
) -> HTMLResponse:
    """DAU/WAU/MAU, growth, posts and replies per day, as numbers and charts."""
    view = read(request, lambda s: data.overview(s, community, days))
    return _page(request, "overview.html", community, "overview", view=view)


@router.get("/c/{community}/moderation", response_class=HTMLResponse)
def moderation_page(
    request: Request, community: Community, limit: Limit = DEFAULT_LIMIT
) -> HTMLResponse:
    """The moderation queue by priority, with reasons and age."""
    view = read(request, lambda s: data.moderation_queue(s, community, limit))
    return _page(request, "moderation.html", community, "moderation", view=view)


@router.get("/c/{community}/reputation", response_class=HTMLResponse)
def reputation_page(
    request: Request,
    community: Community,
    rules: Rules = DEFAULT_RULES,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> HTMLResponse:
    """The reputation leaderboard under a rule set."""
    view = read(request, lambda s: data.leaderboard(s, community, rules, limit, offset))
    return _page(
        request, "reputation.html", community, "reputation", view=view, rule_sets=list(RULE_SETS)
    )


@router.get("/c/{community}/reputation/{member}", response_class=HTMLResponse)
def member_page(
    request: Request,
    community: Community,
    member: Member,
    rules: Rules = DEFAULT_RULES,
    limit: Limit = DEFAULT_LEDGER_LIMIT,
) -> HTMLResponse:
    """A member's standing and ledger; 404 if they have no reputation in the community."""
    view = read(request, lambda s: data.member_ledger(s, community, member, rules, limit))
    return _page(
        request,
        "member.html",
        community,
        "reputation",
        view=view,
        member=member,
        rules=rules,
        status_code=200 if view is not None else 404,
    )


@router.get("/c/{community}/needs-attention", response_class=HTMLResponse)
def attention_page(
    request: Request, community: Community, limit: Limit = DEFAULT_LIMIT
) -> HTMLResponse:
    """Posts still waiting for a first reply, oldest first."""
    view = read(request, lambda s: data.needs_attention(s, community, limit))
    return _page(request, "attention.html", community, "attention", view=view)


@router.get("/c/{community}/responsiveness", response_class=HTMLResponse)
def responsiveness_page(
    request: Request, community: Community, days: Days = DEFAULT_DAYS
) -> HTMLResponse:
    """Time to first reply and acceptance per day of post creation."""
    view = read(request, lambda s: data.responsiveness(s, community, days))
    return _page(request, "responsiveness.html", community, "responsiveness", view=view)


@router.get("/c/{community}/retention", response_class=HTMLResponse)
def retention_page(
    request: Request, community: Community, weeks: Weeks = DEFAULT_WEEKS
) -> HTMLResponse:
    """The weekly cohort retention grid."""
    view = read(request, lambda s: data.retention(s, community, weeks))
    return _page(request, "retention.html", community, "retention", view=view)


@router.get("/c/{community}/crisis", response_class=HTMLResponse)
def crisis_page(
    request: Request, community: Community, hours: Hours = DEFAULT_HOURS
) -> HTMLResponse:
    """Hours whose reports and negative reactions spiked, and the signal as a chart."""
    view = read(request, lambda s: data.crisis(s, community, hours))
    return _page(request, "crisis.html", community, "crisis", view=view)
