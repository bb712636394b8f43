"""The projection registry: entry points of the group ``agora.projections``, one line each."""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from agora import registry
from agora.registry import (
    GROUP,
    RegistryError,
    UnknownProjection,
    get_projection,
    get_projections,
    known_names,
    registered,
)

ROOT = Path(__file__).resolve().parents[2]


def declared() -> dict[str, str]:
    """The entry points pyproject.toml declares for Agora's own projections."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    table: dict[str, str] = project["entry-points"][GROUP]
    return table


def test_the_installed_registry_is_what_pyproject_declares() -> None:
    installed = {
        point.name: point.value
        for point in entry_points(group=GROUP)
        if point.dist is not None and point.dist.name == "agora"
    }
    assert installed == declared(), (
        "the environment's metadata is stale: run `make install` after changing "
        '[project.entry-points."agora.projections"] in pyproject.toml'
    )
    assert known_names() == sorted(declared())


def test_each_factory_makes_a_fresh_projection_of_its_name() -> None:
    for name, factory in registered().items():
        one, two = factory(), factory()
        assert one.name == name and one is not two
    assert [p.name for p in get_projections(["moderation", "moderation", "engagement"])] == [
        "moderation",
        "engagement",
    ]
    assert get_projection("event_counts").name == "event_counts"
    with pytest.raises(UnknownProjection, match="known: engagement, event_counts"):
        get_projection("nope")


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path where a test writes a distribution registering projections."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("plugin_")]:
            del sys.modules[name]


def install(directory: Path, dist: str, module: str, source: str, entries: str) -> None:
    (directory / f"{module}.py").write_text(source)
    info = directory / f"{dist}-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{entries}\n")


PLUGIN = """
from projections.counts import EventCounts

class Renamed(EventCounts):
    name = "renamed"
"""


def test_another_distribution_registers_projections_too(plugin_dir: Path) -> None:
    install(plugin_dir, "plugin", "plugin_one", PLUGIN, "renamed = plugin_one:Renamed")
    assert "renamed" in registered()
    assert get_projection("renamed").name == "renamed"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("moderation = plugin_two:Renamed", "registered twice"),
        ("other = plugin_two:Renamed", "register a projection under its own name"),
        ("Bad-Name = plugin_two:Renamed", "must match"),
        ("missing = plugin_two:Nothing", "cannot load projection 'missing'"),
    ],
)
def test_contradictory_registrations_are_refused(
    plugin_dir: Path, entries: str, message: str
) -> None:
    install(plugin_dir, "plugin", "plugin_two", PLUGIN, entries)
    with pytest.raises(RegistryError, match=message):
        registered()


def test_a_stale_install_says_to_install_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "OWN_DISTRIBUTION", "not-installed")
    with pytest.raises(RegistryError, match="make install"):
        registered()
