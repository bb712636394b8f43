"""Shared pieces of the benchmarks: machine description, RSS sampling, databases, the stream."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

DEFAULT_PG = os.environ.get(
    "AGORA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
"""The PostgreSQL server benchmarks create their scratch databases on."""


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, Python."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{model}, {os.cpu_count()} cores, {mem:.0f} GiB, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def stamp() -> str:
    """Today's date and the command line, for reports."""
    command = " ".join(["python", *sys.argv]).replace(f"{os.getcwd()}/", "")
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; command: {command}"


def rss_mb() -> float:
    """This process's resident set size in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def postgres_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database on ``server_url`` for one benchmark phase, dropped after."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    name = f"agora_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_phase(module: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run one benchmark phase in a child process (its own RSS); return its last stdout line."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=3600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"phase {args} failed after {time.monotonic() - started:.0f}s:\n{done.stderr[-3000:]}"
        )
    return done.stdout.strip().splitlines()[-1]
