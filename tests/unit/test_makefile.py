"""The Makefile's Python probe: it finds a Python 3.11+ and prints nothing on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def probe(path: str) -> subprocess.CompletedProcess[str]:
    """``make``'s value of PYTHON with ``path`` as PATH (PYTHON itself unset)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env["PATH"] = path
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "--eval", "probe: ; @echo [$(PYTHON)]", "probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_pyenv_shim_of_a_missing_version_is_skipped_silently(tmp_path: Path) -> None:
    # A pyenv shim exists on PATH for every version pyenv knows, installed or not; run for a
    # version that is not installed it prints an error on stderr and exits 127.
    for name in ("python3.13", "python3.12"):
        shim = tmp_path / name
        shim.write_text(f'#!/bin/sh\necho "pyenv: {name}: command not found" >&2\nexit 127\n')
        shim.chmod(0o755)
    real = tmp_path / "real"
    real.mkdir()
    (real / "python3.11").symlink_to(sys.executable)
    result = probe(
        f"{tmp_path}{os.pathsep}{real}{os.pathsep}{os.path.dirname(shutil.which('make') or '')}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[python3.11]\n"
    assert result.stderr == ""
