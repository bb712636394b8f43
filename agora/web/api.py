"""The dashboard's web application: the JSON read API under ``/api``, the pages, static files.

:func:`create_app` builds it on a read-only engine (see :mod:`agora.web.readonly`). Every
endpoint reads the projection tables through their stable names in one read-only transaction and
returns a typed model; OpenAPI is at ``/openapi.json``, interactive docs at ``/docs``. plotly.js
is served from the installed ``plotly`` package at ``/static/vendor/plotly.min.js``: nothing is
fetched from the internet and no third-party code is kept in the repository.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine

from agora.config import Settings
from agora.web import data, models, pages
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
from agora.web.readonly import read_only_engine, read_only_engine_for
from services.serving import json_errors

STATIC_DIR: Final = Path(__file__).parent / "static"
PLOTLY_PATH: Final = "/static/vendor/plotly.min.js"

router = APIRouter(prefix="/api", tags=["dashboard"])


@router.get("/communities")
def get_communities(request: Request) -> models.CommunityList:
    """Every community the projections have seen."""
    return read(request, data.community_list)


@router.get("/communities/{community}/overview")
def get_overview(
    request: Request, community: Community, days: Days = DEFAULT_DAYS
) -> models.Overview:
    """DAU/WAU/MAU, growth, posts and replies per day over the last ``days`` days of data."""
    return read(request, lambda s: data.overview(s, community, days))


@router.get("/communities/{community}/moderation")
def get_moderation(
    request: Request, community: Community, limit: Limit = DEFAULT_LIMIT
) -> models.ModerationQueueView:
    """The pending moderation items by priority, with their reasons and age."""
    return read(request, lambda s: data.moderation_queue(s, community, limit))


@router.get("/communities/{community}/reputation")
def get_leaderboard(
    request: Request,
    community: Community,
    rules: Rules = DEFAULT_RULES,
    limit: Limit = DEFAULT_LIMIT,
    offset: Offset = 0,
) -> models.Leaderboard:
    """The reputation leaderboard under a rule set, highest score first."""
    return read(request, lambda s: data.leaderboard(s, community, rules, limit, offset))


@router.get(
    "/communities/{community}/reputation/{member}",
    responses={404: {"description": "the member has no reputation in this community"}},
)
def get_member_ledger(
    request: Request,
    community: Community,
    member: Member,
    rules: Rules = DEFAULT_RULES,
    limit: Limit = DEFAULT_LEDGER_LIMIT,
) -> models.MemberLedger:
    """A member's standing and their ledger, newest first: why their score is what it is."""
    found = read(request, lambda s: data.member_ledger(s, community, member, rules, limit))
    if found is None:
        raise HTTPException(404, f"no reputation for {member!r} in {community!r}")
    return found


@router.get("/communities/{community}/needs-attention")
def get_needs_attention(
    request: Request, community: Community, limit: Limit = DEFAULT_LIMIT
) -> models.NeedsAttentionView:
    """Posts without a reply from another member as of the latest event, oldest first."""
    return read(request, lambda s: data.needs_attention(s, community, limit))


@router.get("/communities/{community}/responsiveness")
def get_responsiveness(
    request: Request, community: Community, days: Days = DEFAULT_DAYS
) -> models.ResponsivenessView:
    """Time to first reply and acceptance per day of post creation."""
    return read(request, lambda s: data.responsiveness(s, community, days))


@router.get("/communities/{community}/retention")
def get_retention(
    request: Request,
    community: Community,
    weeks: Weeks = DEFAULT_WEEKS,
) -> models.RetentionView:
    """The weekly join cohorts and their members active in each week after joining."""
    return read(request, lambda s: data.retention(s, community, weeks))


@router.get("/communities/{community}/crisis")
def get_crisis(
    request: Request,
    community: Community,
    hours: Hours = DEFAULT_HOURS,
) -> models.CrisisView:
    """The hourly crisis signal (reports + negative reactions) and the hours that alerted."""
    return read(request, lambda s: data.crisis(s, community, hours))


@cache
def plotly_js() -> bytes:
    """plotly.js as shipped in the installed ``plotly`` package."""
    return resources.files("plotly").joinpath("package_data", "plotly.min.js").read_bytes()


def _database_unavailable(request: Request, error: Exception) -> Response:
    return JSONResponse({"detail": f"database unavailable: {type(error).__name__}"}, 503)


def create_app(source: Engine | Settings | str, *, title: str = "Agora dashboard") -> FastAPI:
    """The dashboard application reading ``source``.

    ``source`` is an engine (used as given: pass a read-only one, see
    :func:`agora.web.readonly.read_only_engine`), settings (the read-only engine of
    ``AGORA_READ_DATABASE_URL`` or ``AGORA_DATABASE_URL``) or a database URL (opened
    read-only). An engine the application creates is disposed of when it stops.
    """
    owned = not isinstance(source, Engine)
    if isinstance(source, Settings):
        engine = read_only_engine_for(source)
    elif isinstance(source, str):
        engine = read_only_engine(source)
    else:
        engine = source

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            engine.dispose()

    app = FastAPI(
        title=title,
        summary="Read-only API over Agora's projection tables (stable names).",
        description=(
            "Every number is read from the projection tables through their stable names. "
            "`as_of` is the community's latest event time by a member: ranges end on its day "
            "and ages are measured at it (event time, not the wall clock)."
        ),
        lifespan=lifespan,
    )
    json_errors(app)
    app.state.engine = engine
    app.add_exception_handler(sa.exc.OperationalError, _database_unavailable)
    app.add_exception_handler(sa.exc.InterfaceError, _database_unavailable)
    app.include_router(router)
    app.include_router(pages.router)

    @app.get(PLOTLY_PATH, include_in_schema=False)
    def get_plotly() -> Response:
        return Response(
            plotly_js(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
