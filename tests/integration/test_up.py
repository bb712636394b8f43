"""``agora up`` (and ``agora demo``'s refusals) run as a user runs them: a subprocess.

The whole demo, import and simulator and dashboard pages included, is tested end to end in
``tests/e2e/test_demo.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agora.embedded import free_port


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(PYTHONUNBUFFERED="1", AGORA_DATA_DIR=str(data_dir))
    return env


def _agora(*args: str, cwd: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agora.cli", *args],
        cwd=cwd,
        env=_env(cwd / "data"),
        stdout=out.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_line(proc: subprocess.Popen[str], out: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in out.read_text():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before {text!r}:\n{out.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {text!r} within {timeout} s:\n{out.read_text()}")
        time.sleep(0.1)


def test_up_serves_until_sigint_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "up.out"
    proc = _agora("up", "--port", str(port), "--moderation-port", "0", cwd=tmp_path, out=out)
    try:
        _wait_for_line(proc, out, "caught up with stream seq", 90)
        text = out.read_text()
        assert f"dashboard: http://127.0.0.1:{port}" in text
        assert "stream AGORA created" in text
        assert "AGORA_INGEST_TOKENS is not set" in text
        assert "simulator" not in text and "importing" not in text
        reply = httpx.get(f"http://127.0.0.1:{port}/api/communities", timeout=10)
        assert reply.status_code == 200
        assert reply.json()["communities"] == []
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped; stream AGORA last seq 0" in out.read_text()


def test_up_exits_1_when_the_dashboard_port_is_taken(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = tmp_path / "up.out"
        proc = _agora("up", "--port", str(port), "--moderation-port", "0", cwd=tmp_path, out=out)
        try:
            code = proc.wait(90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = out.read_text()
    assert code == 1, text
    assert "error: dashboard stopped" in text


def test_demo_with_a_missing_dump_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agora.cli", "demo", "--data", str(tmp_path / "nope")],
        cwd=tmp_path,
        env=_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no Stack Exchange dump in" in result.stderr
    assert not (tmp_path / "data").exists()  # nothing was started
