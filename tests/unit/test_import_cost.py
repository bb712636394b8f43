"""What loading the CLI imports: no database driver that the configured database does not use."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_does_not_import_the_postgresql_driver_until_it_is_used() -> None:
    """Failed before: projections.pgcopy imported psycopg, 0.2 s of CPU for every SQLite command."""
    code = "import sys, agora.cli; print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", done.stdout
