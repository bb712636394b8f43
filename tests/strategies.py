"""Hypothesis strategies for valid events of the catalogue.

Import them as ``from strategies import any_event, event_of`` (pytest puts ``tests/`` on
``sys.path`` for ``tests/conftest.py``).

The field strategies are derived from msgspec's type information (constraints, literals,
optionals), so a field added to a type is covered without touching this module. What a field type
cannot say is added by name (which pool an id is drawn from) and by the cross-field rules of the
catalogue (``ModerationDecided.until`` iff ``suspend``, ``MemberJoined.member`` is never
``system``, a ``target`` matches its ``target_kind``).

Pools: each of the optional ``communities``, ``members``, ``posts``, ``replies`` and ``reports``
arguments makes ids of that kind come from a small list, so a generated history has collisions
(the same post reacted to twice, a member joining twice...). ``system`` is added to actors by
itself, about one time in eight; it is never a member.

    any_event(communities=["c1", "c2"], members=["m1", "m2", "m3"], posts=["p1", "p2"])
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import msgspec.inspect as mi
from hypothesis import strategies as st

from events.catalogue import (
    EVENT_TYPES,
    Event,
    ModerationDecided,
    ReactionAdded,
    ReactionRemoved,
)
from events.fields import Tag
from events.limits import (
    ID_PATTERN,
    MAX_EVENT_TIME,
    MAX_ID_LENGTH,
    MIN_EVENT_TIME,
    SYSTEM_ACTOR,
    TEXT_PATTERN,
)

ID_ALPHABET = string.ascii_letters + string.digits + "_-"
"""Characters of every identifier (community, member, post, reply, report)."""

_TAG = mi.type_info(Tag)
assert isinstance(_TAG, mi.StrType) and _TAG.pattern
TAG_PATTERN: str = _TAG.pattern
"""The pattern every tag matches, read from the catalogue."""

TEXT_BUDGET = 400
"""Longest free text drawn (titles are 300 at most anyway), so events stay far below 64 KiB."""

_OMIT = object()
_VALID_ID = re.compile(f"[{re.escape(ID_ALPHABET)}]{{1,{MAX_ID_LENGTH}}}")

Draw = Callable[[st.SearchStrategy[Any]], Any]


def ids(pool: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Valid identifiers: from ``pool`` when given, else any of ``[A-Za-z0-9_-]{1,64}``."""
    if pool:
        return st.sampled_from(list(pool))
    return st.text(ID_ALPHABET, min_size=1, max_size=MAX_ID_LENGTH)


def member_ids(pool: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Valid member ids, never the reserved ``system``."""
    return ids(pool).filter(lambda value: value != SYSTEM_ACTOR)


def actors(pool: Sequence[str] | None = None) -> st.SearchStrategy[str]:
    """Actors: a member, or (about one time in eight) the reserved ``system``."""
    member = member_ids(pool)
    return st.integers(0, 7).flatmap(lambda n: st.just(SYSTEM_ACTOR) if n == 7 else member)


_NAIVE_MIN = MIN_EVENT_TIME.replace(tzinfo=None)
_NAIVE_MAX = MAX_EVENT_TIME.replace(tzinfo=None)


def utc_datetimes(min_value: datetime | None = None) -> st.SearchStrategy[datetime]:
    """UTC datetimes with microseconds over the contract's whole range (at or after ``min_value``).

    The range is 1970-01-01 .. 2999-12-31T23:59:59.999999 (:data:`events.limits.MIN_EVENT_TIME`,
    ``MAX_EVENT_TIME``); both ends are drawn often (Hypothesis favours bounds).
    """
    low = _NAIVE_MIN if min_value is None else min_value.astimezone(UTC).replace(tzinfo=None)
    return st.datetimes(
        min_value=max(low, _NAIVE_MIN), max_value=_NAIVE_MAX, timezones=st.just(UTC)
    )


def free_text(min_size: int = 0, max_size: int = TEXT_BUDGET) -> st.SearchStrategy[str]:
    """Free text the contract accepts: any character but the refused controls (TAB/LF/CR kept)."""
    refused = [chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"] + ["\x7f"]
    alphabet = st.characters(codec="utf-8", exclude_characters="".join(refused))
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def tags(max_length: int = 50) -> st.SearchStrategy[str]:
    """Valid tags: lower-case, ``^[a-z0-9][a-z0-9.+#-]*$``."""
    head = st.sampled_from(string.ascii_lowercase + string.digits)
    tail = st.text(string.ascii_lowercase + string.digits + ".+#-", max_size=max_length - 1)
    return st.builds(str.__add__, head, tail)


@dataclass(frozen=True)
class Pools:
    """Optional small pools of ids; ``None`` means any valid id."""

    communities: Sequence[str] | None = None
    members: Sequence[str] | None = None
    posts: Sequence[str] | None = None
    replies: Sequence[str] | None = None
    reports: Sequence[str] | None = None

    def __post_init__(self) -> None:
        for name in ("communities", "members", "posts", "replies", "reports"):
            pool = getattr(self, name)
            if pool is None:
                continue
            if not pool:
                raise ValueError(f"pool {name!r} is empty; pass None for any id")
            bad = [value for value in pool if not _VALID_ID.fullmatch(value)]
            if bad:
                raise ValueError(f"invalid ids in pool {name!r}: {bad}")
        if self.members and SYSTEM_ACTOR in self.members:
            raise ValueError(f"{SYSTEM_ACTOR!r} is reserved; actors() adds it by itself")

    def of_kind(self, kind: str) -> st.SearchStrategy[str]:
        """Ids of what a ``target_kind`` / ``ContentKind`` value names."""
        if kind == "post":
            return ids(self.posts)
        if kind == "reply":
            return ids(self.replies)
        if kind == "member":
            return member_ids(self.members)
        raise ValueError(f"unknown target kind {kind!r}")  # pragma: no cover


# Which pool an id field is drawn from, by field name. Unlisted id fields get any valid id.
_ROLES: dict[str, Callable[[Pools], st.SearchStrategy[str]]] = {
    "community": lambda p: ids(p.communities),
    "actor": lambda p: actors(p.members),
    "member": lambda p: member_ids(p.members),
    "author": lambda p: member_ids(p.members),
    "post_author": lambda p: member_ids(p.members),
    "reply_author": lambda p: member_ids(p.members),
    "target_author": lambda p: member_ids(p.members),
    "post": lambda p: ids(p.posts),
    "reply": lambda p: ids(p.replies),
    "parent": lambda p: ids(p.replies),
    "report": lambda p: ids(p.reports),
}


def _from_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy for values of a msgspec type, honouring its constraints."""
    if isinstance(t, mi.Metadata):
        return _from_type(t.type)
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.UUIDType):
        return st.uuids(version=4)
    if isinstance(t, mi.DateTimeType):
        return utc_datetimes()
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(sorted(t.values))
    if isinstance(t, mi.UnionType):
        return st.one_of(*(_from_type(member) for member in t.types))
    if isinstance(t, mi.IntType):
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else None)
        return st.integers(low, high)
    if isinstance(t, mi.ListType):
        size = t.max_length if t.max_length is not None else 10
        return st.lists(_from_type(t.item_type), min_size=t.min_length or 0, max_size=size)
    if isinstance(t, mi.StrType):
        return _strings(t)
    raise NotImplementedError(f"no strategy for msgspec type {t!r}; extend tests/strategies.py")


def _strings(t: mi.StrType) -> st.SearchStrategy[str]:
    low = t.min_length or 0
    high = t.max_length if t.max_length is not None else TEXT_BUDGET
    if t.pattern == ID_PATTERN:
        return st.text(ID_ALPHABET, min_size=max(low, 1), max_size=min(high, MAX_ID_LENGTH))
    if t.pattern == TAG_PATTERN:
        return tags(high)
    if t.pattern == TEXT_PATTERN:
        return free_text(low, min(high, TEXT_BUDGET))
    if t.pattern is not None:
        return st.from_regex(t.pattern).filter(lambda s: low <= len(s) <= high)
    return st.text(min_size=low, max_size=min(high, TEXT_BUDGET))


@cache
def _fields(cls: type[Event]) -> tuple[mi.Field, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info.fields


def _field_strategy(field: mi.Field, pools: Pools) -> st.SearchStrategy[Any]:
    role = _ROLES.get(field.name)
    strategy = _from_type(field.type)
    if role is not None:
        value = role(pools)
        # Keep the field's optionality (``parent: ContentId | None``).
        strategy = st.one_of(st.none(), value) if _optional(field.type) else value
    if not field.required:
        strategy = st.one_of(st.just(_OMIT), strategy)
    return strategy


def _optional(t: mi.Type) -> bool:
    if isinstance(t, mi.Metadata):
        return _optional(t.type)
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _make_consistent(cls: type[Event], values: dict[str, Any], draw: Draw, pools: Pools) -> None:
    """Apply the cross-field rules (and a little realism) a field type cannot express."""
    kind = values.get("target_kind")
    if kind is not None:
        values["target"] = draw(pools.of_kind(kind))
        if kind == "member":
            values["target_author"] = values["target"]
    if cls in (ReactionAdded, ReactionRemoved):
        # ``post`` is the topic of a reply; null when the target is the post itself.
        values["post"] = None if kind == "post" else draw(ids(pools.posts))
    if cls is ModerationDecided:
        if values["decision"] == "suspend":
            values["until"] = draw(utc_datetimes(min_value=values["occurred_at"]))
        else:
            values.pop("until", None)


@st.composite
def _event(draw: Draw, cls: type[Event], pools: Pools) -> Event:
    values: dict[str, Any] = {}
    for field in _fields(cls):
        if field.name == "v":  # new events are written at the type's current version
            continue
        value = draw(_field_strategy(field, pools))
        if value is not _OMIT:
            values[field.name] = value
    _make_consistent(cls, values, draw, pools)
    return cls(**values)


def event_of(
    cls: type[Event],
    *,
    communities: Sequence[str] | None = None,
    members: Sequence[str] | None = None,
    posts: Sequence[str] | None = None,
    replies: Sequence[str] | None = None,
    reports: Sequence[str] | None = None,
) -> st.SearchStrategy[Event]:
    """Valid events of one type, ids optionally drawn from the given pools."""
    pools = Pools(communities, members, posts, replies, reports)
    return _event(cls, pools)


def any_event(
    *,
    types: Iterable[type[Event]] = EVENT_TYPES,
    communities: Sequence[str] | None = None,
    members: Sequence[str] | None = None,
    posts: Sequence[str] | None = None,
    replies: Sequence[str] | None = None,
    reports: Sequence[str] | None = None,
) -> st.SearchStrategy[Event]:
    """Valid events of any type of ``types`` (default: the whole catalogue)."""
    pools = Pools(communities, members, posts, replies, reports)
    return st.one_of(*(_event(cls, pools) for cls in types))
