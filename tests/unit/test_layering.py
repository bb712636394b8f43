"""Dependency direction between the top-level packages, checked on the imports in the source.

    events  <-  projections          (the contract depends on nothing of ours)
    events  <-  services
    events, projections, services  <-  agora   (the edge: config, CLI, embedded stack)

* ``events`` imports only the standard library, msgspec and itself; ``events/publisher.py`` may
  also import nats (and structlog, to log).
* ``projections`` never imports ``services`` or ``agora``; ``services`` never ``projections`` or
  ``agora``.

Every import counts, including those under ``if TYPE_CHECKING:`` and inside functions.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = ("events", "projections", "services", "agora")
STDLIB = frozenset(sys.stdlib_module_names)


@dataclass(frozen=True)
class Rule:
    """What one package may import: ``allowed`` (None: anything) minus ``forbidden``."""

    allowed: frozenset[str] | None = None
    forbidden: frozenset[str] = frozenset()
    extra: tuple[tuple[str, frozenset[str]], ...] = ()  # (file, more allowed roots)

    def permits(self, file: str, root: str) -> bool:
        if root in self.forbidden:
            return False
        if self.allowed is None or root in STDLIB or root in self.allowed:
            return True
        return any(file == name and root in more for name, more in self.extra)


RULES: dict[str, Rule] = {
    "events": Rule(
        allowed=frozenset({"events", "msgspec"}),
        extra=(("events/publisher.py", frozenset({"nats", "structlog"})),),
    ),
    "projections": Rule(forbidden=frozenset({"services", "agora"})),
    "services": Rule(forbidden=frozenset({"projections", "agora"})),
    "agora": Rule(),
}


@dataclass(frozen=True)
class Import:
    """One imported module, where it is imported."""

    file: str
    line: int
    module: str

    @property
    def root(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: imports {self.module}"


def imports_of(path: Path, package: str, root: Path = ROOT) -> list[Import]:
    """Every module ``path`` imports; relative imports resolve to ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    name = path.relative_to(root).as_posix()
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # ``from . import x`` stays inside the package
                module = package + (f".{node.module}" if node.module else "")
            else:
                module = node.module or ""
            found.append(Import(name, node.lineno, module))
    return sorted(found, key=lambda imp: imp.line)


def violations(package: str, root: Path = ROOT) -> list[Import]:
    """The imports of ``package``'s source files that break its rule."""
    rule = RULES[package]
    return [
        imp
        for path in sorted((root / package).rglob("*.py"))
        for imp in imports_of(path, package, root)
        if not rule.permits(imp.file, imp.root)
    ]


@pytest.mark.parametrize("package", OURS)
def test_dependency_direction(package: str) -> None:
    bad = violations(package)
    assert not bad, f"{package} breaks the layering:\n" + "\n".join(map(str, bad))


@pytest.mark.parametrize("package", ["events", "projections", "services"])
def test_nothing_below_the_edge_imports_agora(package: str) -> None:
    bad = [
        imp
        for path in sorted((ROOT / package).rglob("*.py"))
        for imp in imports_of(path, package)
        if imp.root == "agora"
    ]
    assert not bad, "only the edge may import agora:\n" + "\n".join(map(str, bad))


def test_the_contract_package_exists_and_is_scanned() -> None:
    files = sorted((ROOT / "events").rglob("*.py"))
    assert ROOT / "events" / "codec.py" in files
    assert any(imp.root == "msgspec" for imp in imports_of(ROOT / "events" / "codec.py", "events"))


# -- the checker itself --------------------------------------------------------------------------


def write(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return root


def test_checker_reports_file_line_and_module(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "events/__init__.py": "",
            "events/codec.py": (
                "from __future__ import annotations\n"
                "import json\n"
                "import msgspec\n"
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    import sqlalchemy.orm\n"
                "def f():\n"
                "    from agora.config import get_settings\n"
                "from .errors import InvalidEvent\n"
            ),
            "events/publisher.py": "import nats\nimport structlog\n",
            "events/other.py": "import nats.js\n",
        },
    )
    found = [str(imp) for imp in violations("events", root)]
    assert found == [
        "events/codec.py:6: imports sqlalchemy.orm",
        "events/codec.py:8: imports agora.config",
        "events/other.py:1: imports nats.js",
    ]


def test_checker_applies_the_forbidden_packages(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "projections/a.py": "import sqlalchemy\nfrom services import x\nimport events\n",
            "services/b.py": "from projections.counts import y\nimport agora\nimport events\n",
        },
    )
    assert [str(i) for i in violations("projections", root)] == [
        "projections/a.py:2: imports services"
    ]
    assert [str(i) for i in violations("services", root)] == [
        "services/b.py:1: imports projections.counts",
        "services/b.py:2: imports agora",
    ]


def test_checker_handles_a_missing_package(tmp_path: Path) -> None:
    assert violations("services", tmp_path) == []
