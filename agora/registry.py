"""The registered projections, by name: what `agora worker`, `status`, `rebuild` and the docs run.

A projection is registered by one line, an entry point of the group ``agora.projections``
naming a factory that returns a fresh instance (its class, usually). Agora's own projections are
registered in its pyproject.toml::

    [project.entry-points."agora.projections"]
    event_counts = "projections.counts:EventCounts"

and any installed distribution can register more the same way, without touching Agora. The
entry point's name is the projection's ``name`` (the prefix of its tables). A change to
pyproject.toml reaches the environment's metadata when the package is installed again
(``make install``). Listing names (``known_names``, e.g. for `agora status`) loads no
projection module; a factory's module is imported when that projection is asked for.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING

from agora.errors import AgoraError

if TYPE_CHECKING:
    from projections.api import Projection

GROUP = "agora.projections"
"""The entry-point group projections are registered in."""

OWN_DISTRIBUTION = "agora"
"""The distribution registering Agora's own projections (without them, the install is stale)."""

_NAME = re.compile(r"[a-z][a-z0-9_]*")


class UnknownProjection(AgoraError):
    """A projection name that is not registered; the message lists the known names."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown projection {name!r} (known: {', '.join(known_names())})")
        self.name = name


class RegistryError(AgoraError):
    """The registered projections contradict each other or this environment is not installed."""


def registered() -> dict[str, Callable[[], Projection]]:
    """Every registered projection's factory, in name order.

    Read from the installed distributions' metadata each call (the scan is cached by Python).
    """
    found = _entry_points()
    return {name: _factory(found[name]) for name in sorted(found)}


def _entry_points() -> dict[str, EntryPoint]:
    """The registered entry points by name, checked without importing any of them."""
    found: dict[str, EntryPoint] = {}
    for point in entry_points(group=GROUP):
        if not _NAME.fullmatch(point.name):
            raise RegistryError(f"projection name {point.name!r} must match {_NAME.pattern}")
        seen = found.get(point.name)
        if seen is not None and seen.value != point.value:
            raise RegistryError(
                f"projection {point.name!r} is registered twice: {seen.value} ({_owner(seen)}) "
                f"and {point.value} ({_owner(point)})"
            )
        found.setdefault(point.name, point)
    if not any(_owner(p) == OWN_DISTRIBUTION for p in found.values()):
        raise RegistryError(
            f"no projection of {OWN_DISTRIBUTION!r} is registered in this environment: its "
            "installed metadata predates the entry points; install it again (make install)"
        )
    return found


def known_names() -> list[str]:
    """The registered projection names, in name order (no projection module is imported)."""
    return sorted(_entry_points())


def get_projection(name: str) -> Projection:
    """A fresh instance of the projection called ``name``; UnknownProjection if there is none."""
    point = _entry_points().get(name)
    if point is None:
        raise UnknownProjection(name)
    return _factory(point)()


def get_projections(names: list[str] | None = None) -> list[Projection]:
    """Fresh instances of ``names`` (all registered projections when empty), without repeats."""
    points = _entry_points()
    chosen = list(dict.fromkeys(names)) if names else sorted(points)
    out: list[Projection] = []
    for name in chosen:
        point = points.get(name)
        if point is None:
            raise UnknownProjection(name)
        out.append(_factory(point)())
    return out


def _owner(point: EntryPoint) -> str:
    dist = point.dist
    return "" if dist is None else dist.name


def _factory(point: EntryPoint) -> Callable[[], Projection]:
    """The factory an entry point names, checked: it makes a projection of the entry's name."""
    try:
        factory = point.load()
    except Exception as error:
        raise RegistryError(
            f"cannot load projection {point.name!r} ({point.value}): {error}"
        ) from error
    if not callable(factory):
        raise RegistryError(f"projection {point.name!r} ({point.value}) is not callable")
    name = getattr(factory, "name", point.name)
    if name != point.name:
        raise RegistryError(
            f"entry point {point.name!r} names {point.value}, whose name is {name!r}: "
            "register a projection under its own name"
        )
    return factory  # type: ignore[no-any-return]
