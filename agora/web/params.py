"""What the API and the pages share: request parameters and reading one snapshot."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Final, TypeVar

from fastapi import Path, Query, Request
from sqlalchemy.engine import Engine

from agora.web import data
from events.limits import MAX_ID_LENGTH
from projections.reputation import RULE_SETS

T = TypeVar("T")

ID: Final = rf"^[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}$"
"""events.limits.ID_PATTERN without its look-ahead, which pydantic's regex engine refuses
(and which its ``$``, matching only at the very end, does not need)."""

Community = Annotated[str, Path(pattern=ID, description="community id")]
Member = Annotated[str, Path(pattern=ID, description="member id")]
Rules = Annotated[
    str,
    Query(
        pattern=f"^({'|'.join(RULE_SETS)})$",
        description=f"reputation rule set: {', '.join(RULE_SETS)}",
    ),
]
Days = Annotated[int, Query(ge=1, le=3660, description="days of data, ending on the day of as_of")]
Weeks = Annotated[int, Query(ge=1, le=520, description="join weeks, ending with that of as_of")]
Hours = Annotated[int, Query(ge=1, le=24 * 92, description="hours, ending with that of as_of")]
Limit = Annotated[int, Query(ge=1, le=1000, description="rows listed at most")]
MAX_OFFSET: Final = 2**31 - 1
"""The most rows a listing skips: any database's integer holds it (and it plus a limit)."""
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows skipped")]

DEFAULT_RULES: Final = "default"
DEFAULT_DAYS: Final = 90
DEFAULT_WEEKS: Final = 26
DEFAULT_HOURS: Final = 7 * 24
DEFAULT_LIMIT: Final = 50
DEFAULT_LEDGER_LIMIT: Final = 200


def engine_of(request: Request) -> Engine:
    """The read-only engine of the application serving ``request``."""
    engine: Engine = request.app.state.engine
    return engine


def read(request: Request, view: Callable[[data.Snapshot], T]) -> T:
    """Run ``view`` on one read-only snapshot of the database."""
    with data.snapshot(engine_of(request)) as snap:
        return view(snap)
