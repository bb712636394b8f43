"""Dependency direction between the top-level packages, checked on the imports in the source.

    events  <-  projections          (the contract depends on nothing of ours)
    events  <-  services
    events, projections, services  <-  agora   (the edge: config, CLI, embedded stack)

* ``events`` imports only the standard library, msgspec and itself; ``events/publisher.py`` may
  also import nats (and structlog, to log).
* ``projections`` never imports ``services`` or ``agora``; ``services`` never ``projections`` or
  ``agora``.

Every import counts, including those under ``if TYPE_CHECKING:`` and inside functions.

No module of ours imports itself back through others (an import cycle), counting imports inside
functions too: the graph over events/, projections/, services/, agora/ and bench/ has no cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Mapping
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


# -- import cycles -------------------------------------------------------------------------------

#: Packages whose modules form the import graph checked for cycles.
GRAPHED = (*OURS, "bench")


def module_name(path: Path, root: Path = ROOT) -> str:
    """The dotted module name of a source file (a package's ``__init__.py`` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_imports(path: Path, root: Path = ROOT) -> list[tuple[str, tuple[str, ...]]]:
    """Every import in ``path`` as (module, names imported from it); relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    own = module_name(path, root)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = parts[: len(parts) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, tuple(alias.name for alias in node.names)))
    return found


def import_graph(root: Path = ROOT, packages: Iterable[str] = GRAPHED) -> dict[str, set[str]]:
    """Each of our modules -> the modules of ours it imports (anywhere in its source).

    An import names a module directly: ``a.b`` is the edge to ``a.b``, not to the package ``a``
    whose ``__init__`` Python also runs, and ``from a import b`` is the edge to the module
    ``a.b`` when there is one (Python loads it without needing ``a``'s names), else to ``a``.
    So a package's init importing its own submodules is the normal shape of a package, not a
    cycle, while a submodule importing a name from its package's init is one.
    """
    paths = {
        module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
    }
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        targets: set[str] = set()
        for module, names in module_imports(path, root):
            submodules = {f"{module}.{n}" for n in names} & paths.keys()
            targets |= submodules
            if len(submodules) < len(names) or not names:
                targets.add(module)
        graph[name] = (targets & paths.keys()) - {name}
    return graph


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None when the graph has none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = [start]
        on_path = {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            following = next(stack[-1], None)
            if following is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif following in on_path:
                return [*path[path.index(following) :], following]
            elif following not in done:
                path.append(following)
                on_path.add(following)
                stack.append(iter(sorted(graph.get(following, ()))))
    return None


def test_no_import_cycle() -> None:
    graph = import_graph()
    assert "agora.config" in graph["agora.stack"]  # the graph is built from our sources
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


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


def test_cycle_checker_finds_function_level_and_relative_imports(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "agora/__init__.py": "",
            "agora/cli/__init__.py": "from agora.cli import stream\nfrom .common import run\n",
            "agora/cli/common.py": "import agora.config\n",
            "agora/cli/stream.py": "from . import common\n",
            "agora/config.py": "def f():\n    from agora.importing import x\n",
            "agora/importing.py": "def g():\n    from .cli.common import run\n",
        },
    )
    graph = import_graph(root, ["agora"])
    assert graph["agora.cli"] == {"agora.cli.stream", "agora.cli.common"}
    assert graph["agora.cli.stream"] == {"agora.cli.common"}
    assert find_cycle(graph) == [
        "agora.cli.common",
        "agora.config",
        "agora.importing",
        "agora.cli.common",
    ]


def test_cycle_checker_passes_a_package_importing_its_own_modules(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "agora/__init__.py": "from agora import a\n",
            "agora/a.py": "from agora.b import x\n",
            "agora/b.py": "import events.codec\n",
            "events/__init__.py": "",
            "events/codec.py": "import json\n",
        },
    )
    graph = import_graph(root, ["agora", "events"])
    assert graph["agora.b"] == {"events.codec"}
    assert find_cycle(graph) is None


def test_cycle_checker_finds_a_module_importing_a_name_from_its_package(tmp_path: Path) -> None:
    root = write(
        tmp_path,
        {
            "agora/__init__.py": "from agora.a import f\nVALUE = 1\n",
            "agora/a.py": "def f():\n    from agora import VALUE\n",
        },
    )
    assert find_cycle(import_graph(root, ["agora"])) == ["agora", "agora.a", "agora"]


# -- module size ---------------------------------------------------------------------------------

#: Lines a module of the command line may have at most (small modules named by role).
MAX_LINES = 500


def test_command_line_modules_stay_small() -> None:
    sizes = {
        path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted((ROOT / "agora" / "cli").glob("*.py"))
    }
    assert "agora/cli/common.py" in sizes
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: {too_long}"
