"""What loading the CLI imports: only what the command asked for needs.

Every `agora` call is a fresh process, so what a command imports is its start-up time (issue 16:
`agora status` took 0.9-1.5 s, most of it imports). These tests look at ``sys.modules`` after a
call in a subprocess; the time itself is measured by ``python -m bench.status``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Modules no command needs merely to be loaded or to print its help: the database drivers and
#: SQLAlchemy's dialects, nats-py, the engine's worker modules, the web stack, the test tools.
HEAVY = (
    "sqlalchemy",
    "psycopg",
    "pydantic",
    "nats",
    "prometheus_client",
    "faststream",
    "fastapi",
    "starlette",
    "uvicorn",
    "jinja2",
    "plotly",
    "hypothesis",
    "agora.workers",
    "agora.stack",
    "agora.web",
    "projections.store",
    "projections.runner",
    "projections.supervisor",
    "projections.counts",
    "projections.engagement",
    "projections.moderation",
    "projections.reputation",
    "services",
)


def _loaded_after(code: str) -> list[str]:
    """The modules loaded after running ``code`` in a fresh interpreter."""
    script = (
        "import contextlib, io, json, sys\n"
        f"{code}\n"
        "sys.__stdout__.write(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    modules: list[str] = json.loads(done.stdout)
    return modules


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY))]


def _help(*args: str) -> str:
    """Code running ``agora ARGS`` in process, its output and exit swallowed."""
    return (
        "from agora.cli import app\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()),"
        " contextlib.suppress(SystemExit):\n"
        f"    app({list(args)!r}, prog_name='agora')\n"
    )


def test_the_cli_does_not_import_the_postgresql_driver_until_it_is_used() -> None:
    """Failed before: projections.pgcopy imported psycopg, 0.2 s of CPU for every SQLite command."""
    code = "import sys, agora.cli; print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    "code",
    [
        "import agora.cli",
        _help("--help"),
        _help("status", "--help"),
        _help("rebuild", "--help"),
        _help("worker", "--help"),
        _help("rebuild", "no_such_projection"),
    ],
    ids=["import", "help", "status-help", "rebuild-help", "worker-help", "usage-error"],
)
def test_loading_the_cli_or_asking_for_help_imports_no_heavy_module(code: str) -> None:
    """Failed before: the command modules imported agora.workers (SQLAlchemy with its PostgreSQL
    dialect, nats-py, the runner, store and supervisor, prometheus_client) and every
    projection's tables, 0.8 s of CPU before any command ran; and typer 0.29 imported pydantic
    for any parameter that is not a bool flag (here PROJECTION), even for --help."""
    assert _heavy(_loaded_after(code)) == []


def test_help_still_lists_every_command() -> None:
    """Commands register when their module loads; loading less must not hide one."""
    done = subprocess.run(
        [sys.executable, "-m", "agora.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    for command in (
        "stream",
        "schema",
        "config",
        "publish",
        "demo",
        "up",
        "worker",
        "serve",
        "status",
        "replay",
        "rebuild",
        "activate",
        "drop",
        "dlq",
        "import",
    ):
        assert f" {command} " in done.stdout, (command, done.stdout)


def test_listing_projection_names_imports_no_projection() -> None:
    """Failed before: agora.registry loaded every entry point (each projection's module and its
    SQLAlchemy tables) to list the names `agora status` and the usage errors show."""
    code = "from agora.registry import known_names\nknown_names()"
    assert _heavy(_loaded_after(code)) == []
