"""The ``agora`` command line, run as a user runs it: a subprocess against a real nats-server."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.sample import sample_events

from agora.demo import DEFAULT_DATA
from agora.embedded import EmbeddedNats, free_port
from events.codec import encode

START = datetime(2024, 1, 1, tzinfo=UTC)


def _env(**settings: str) -> dict[str, str]:
    """The test process's environment without any AGORA_* variable, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def agora(
    *args: str, cwd: Path, input: str | None = None, timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m agora.cli ARGS`` with only the given AGORA_* settings."""
    return subprocess.run(
        [sys.executable, "-m", "agora.cli", *args],
        cwd=cwd,
        env=_env(**settings),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _jsonl(n: int, seed: int = 1) -> list[str]:
    return [encode(e).decode() for e in sample_events(seed, 1, 5, n, START)]


@pytest.fixture
def url(nats_server: EmbeddedNats) -> str:
    return nats_server.url


def test_stream_init_twice_then_mismatch_exits_3(url: str, tmp_path: Path) -> None:
    first = agora("stream", "init", cwd=tmp_path, AGORA_NATS_URL=url)
    assert first.returncode == 0, first.stderr
    assert "stream AGORA created" in first.stdout

    second = agora("stream", "init", cwd=tmp_path, AGORA_NATS_URL=url)
    assert second.returncode == 0, second.stderr
    assert "stream AGORA exists, configuration matches" in second.stdout

    other = agora(
        "stream", "init", cwd=tmp_path, AGORA_NATS_URL=url, AGORA_STREAM_DUPLICATE_WINDOW="60"
    )
    assert other.returncode == 3
    assert "nothing was changed" in other.stderr
    assert "duplicate_window: stream has 120.0, Agora wants 60.0" in other.stderr
    assert "AGORA_STREAM_DUPLICATE_WINDOW" in other.stderr

    as_json = agora(
        "stream",
        "init",
        "--json",
        cwd=tmp_path,
        AGORA_NATS_URL=url,
        AGORA_STREAM_DUPLICATE_WINDOW="60",
        AGORA_STREAM_MAX_AGE="86400",
    )
    assert as_json.returncode == 3
    assert json.loads(as_json.stdout)["differences"] == {
        "duplicate_window": {"have": 120.0, "want": 60.0},
        "max_age": {"have": 0.0, "want": 86400.0},
    }

    info = agora("stream", "info", "--json", cwd=tmp_path, AGORA_NATS_URL=url)
    assert json.loads(info.stdout)["config"]["duplicate_window"] == 120.0  # unchanged


def test_stream_info_shows_the_messages(url: str, tmp_path: Path) -> None:
    missing = agora("stream", "info", cwd=tmp_path, AGORA_NATS_URL=url)
    assert missing.returncode == 1
    assert "does not exist; run `agora stream init`" in missing.stderr

    assert agora("stream", "init", cwd=tmp_path, AGORA_NATS_URL=url).returncode == 0
    lines = _jsonl(7)
    published = agora("publish", "-", cwd=tmp_path, input="\n".join(lines), AGORA_NATS_URL=url)
    assert published.returncode == 0, published.stderr

    info = agora("stream", "info", "--json", cwd=tmp_path, AGORA_NATS_URL=url)
    assert info.returncode == 0, info.stderr
    status = json.loads(info.stdout)
    assert status["state"]["messages"] == 7
    assert (status["state"]["first_seq"], status["state"]["last_seq"]) == (1, 7)
    assert status["state"]["first_time"] <= status["state"]["last_time"]
    assert status["config"]["subjects"] == ["agora.>"]
    assert status["config"]["deny_delete"] and status["config"]["deny_purge"]

    human = agora("stream", "info", cwd=tmp_path, AGORA_NATS_URL=url)
    assert human.returncode == 0
    assert re.search(r"messages\s+│\s+7\b", human.stdout), human.stdout
    assert re.search(r"append-only\s+│\s+yes", human.stdout), human.stdout


def test_config_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    result = agora(
        "config",
        "--json",
        cwd=tmp_path,
        AGORA_NATS_PASSWORD="hunter2",
        AGORA_DATABASE_URL="postgresql+psycopg://agora:s3cret@db:5432/agora",
        AGORA_STREAM_REPLICAS="1",
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout and "s3cret" not in result.stdout
    rows = json.loads(result.stdout)
    assert rows["nats_password"] == {
        "value": "***",
        "env": "AGORA_NATS_PASSWORD",
        "source": "env",
    }
    assert rows["database_url"]["value"] == "postgresql+psycopg://agora:***@db:5432/agora"
    assert rows["effective_database_url"]["value"].startswith("postgresql+psycopg://agora:***@")
    assert rows["stream_replicas"] == {"value": 1, "env": "AGORA_STREAM_REPLICAS", "source": "env"}
    assert rows["stream_duplicate_window"]["source"] == "default"
    assert rows["nats_token"]["value"] is None
    assert rows["embedded_nats"]["value"] is True

    human = agora("config", cwd=tmp_path, AGORA_NATS_TOKEN="tok-123")
    assert human.returncode == 0
    assert "tok-123" not in human.stdout
    assert "AGORA_NATS_TOKEN" in human.stdout


def test_config_shows_the_demo_dump_the_demo_would_use(tmp_path: Path) -> None:
    rows = json.loads(agora("config", "--json", cwd=tmp_path).stdout)
    if (DEFAULT_DATA / "Posts.xml").is_file():  # the beer dump beside the repository
        assert rows["demo_data"] == {
            "value": str(DEFAULT_DATA),
            "env": "AGORA_DEMO_DATA",
            "source": "default",
            "detail": "found beside the repository",
        }
        human = agora("config", cwd=tmp_path)
        assert re.search(r"AGORA_DEMO_DATA\s+│\s+/", human.stdout), human.stdout
        assert "(unset)" not in human.stdout.split("AGORA_DEMO_DATA")[1].split("\n")[0]
    else:  # a clone elsewhere: config says the demo runs without history
        assert rows["demo_data"]["value"] is None
        assert "simulated traffic only" in rows["demo_data"]["detail"]

    dump = tmp_path / "dump"
    chosen = json.loads(agora("config", "--json", cwd=tmp_path, AGORA_DEMO_DATA=str(dump)).stdout)
    assert chosen["demo_data"] == {"value": str(dump), "env": "AGORA_DEMO_DATA", "source": "env"}


@pytest.mark.parametrize("command", [["config"], ["stream", "init"], ["demo", "--duration", "0"]])
def test_a_malformed_setting_exits_2_naming_it(command: list[str], tmp_path: Path) -> None:
    result = agora(*command, cwd=tmp_path, AGORA_STREAM_REPLICAS="x")
    assert result.returncode == 2
    assert "AGORA_STREAM_REPLICAS" in result.stderr
    assert not (tmp_path / ".agora").exists()  # nothing was started


def test_an_unknown_setting_exits_2_but_help_still_works(tmp_path: Path) -> None:
    result = agora("config", cwd=tmp_path, AGORA_STREAM_REPLICA="1")
    assert result.returncode == 2
    assert "AGORA_STREAM_REPLICA is not an Agora setting" in result.stderr
    helped = agora("stream", "init", "--help", cwd=tmp_path, AGORA_STREAM_REPLICA="1")
    assert helped.returncode == 0
    assert "idempotent" in helped.stdout


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert agora("nonsense", cwd=tmp_path).returncode == 2
    assert agora("demo", "--rate", "0", cwd=tmp_path).returncode == 2
    missing = agora("publish", str(tmp_path / "missing.jsonl"), cwd=tmp_path)
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_schema_writes_one_file_per_type_and_the_union(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    result = agora("schema", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    assert len(files) == 15
    assert "event.json" in files and "post.created.json" in files
    documents = {name: json.loads((out / name).read_text()) for name in files}
    assert len(documents["event.json"]["oneOf"]) == 14
    assert documents["reply.created.json"]["title"] == "reply.created"

    union = agora("schema", cwd=tmp_path)
    assert union.returncode == 0
    assert json.loads(union.stdout) == documents["event.json"]


def test_publish_stores_the_valid_lines_and_names_the_invalid_field(
    url: str, tmp_path: Path
) -> None:
    valid = _jsonl(3)
    invalid = json.loads(valid[1])
    invalid["id"] = "7d3c4d1e-0000-4000-8000-000000000001"
    del invalid["member"]  # a member.joined without its member
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([valid[0], valid[1], "", json.dumps(invalid), valid[2]]) + "\n")
    assert agora("stream", "init", cwd=tmp_path, AGORA_NATS_URL=url).returncode == 0

    result = agora("publish", str(events), cwd=tmp_path, AGORA_NATS_URL=url)
    assert result.returncode == 1
    assert "read 4 events: stored 3, duplicate 0, failed 0, conflict 0, invalid 1" in result.stdout
    assert "line 4: invalid: member: is required" in result.stderr

    again = agora("publish", "--json", str(events), cwd=tmp_path, AGORA_NATS_URL=url)
    assert again.returncode == 1
    report = json.loads(again.stdout)
    assert (report["stored"], report["duplicate"], report["invalid"]) == (0, 3, 1)
    assert report["errors"] == [
        {"line": 4, "kind": "invalid", "error": "member: is required", "field": "member"}
    ]

    good = agora("publish", "-", cwd=tmp_path, input="\n".join(_jsonl(5)), AGORA_NATS_URL=url)
    assert good.returncode == 0
    assert "stored 2, duplicate 3" in good.stdout

    # Another event under a stored event's id: not stored, and not a success.
    squat = {**json.loads(valid[0]), "community": "c999"}
    taken = agora("publish", "-", cwd=tmp_path, input=json.dumps(squat), AGORA_NATS_URL=url)
    assert taken.returncode == 1
    assert "stored 0, duplicate 0, failed 0, conflict 1" in taken.stdout
    assert "line 1: conflict: id " in taken.stderr


def test_publish_without_the_stream_fails_every_event(url: str, tmp_path: Path) -> None:
    result = agora(
        "publish",
        "-",
        cwd=tmp_path,
        input="\n".join(_jsonl(2)),
        timeout=60,
        AGORA_NATS_URL=url,
        AGORA_PUBLISH_DEADLINE="1",
        AGORA_PUBLISH_TIMEOUT="0.2",
    )
    assert result.returncode == 1
    assert "failed 2" in result.stdout
    assert "line 1: failed:" in result.stderr


def test_an_unreachable_server_is_an_operational_failure(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    result = agora("stream", "info", cwd=tmp_path, AGORA_NATS_URL=url)
    assert result.returncode == 1
    assert f"cannot connect to NATS at {url}" in result.stderr


def _demo_args(*args: str) -> list[str]:
    """``demo ARGS`` on free ports, so tests never meet another dashboard or service."""
    return ["demo", *args, "--port", str(free_port()), "--moderation-port", "0"]


def test_demo_runs_on_the_embedded_server_and_keeps_its_store(tmp_path: Path) -> None:
    result = agora(*_demo_args("--duration", "3"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data_dir = (tmp_path / ".agora").resolve()
    assert re.search(r"NATS: nats://127\.0\.0\.1:\d+ \(embedded", result.stdout)
    assert f"database: sqlite:///{data_dir / 'agora.db'}" in result.stdout
    assert "stream AGORA created" in result.stdout
    assert "moderator token of this run: " in result.stdout
    imported = re.search(r"imported ([\d,]+) events of beer .* failed 0", result.stdout)
    if DEFAULT_DATA.is_dir():  # the beer dump beside the repository, as the demo looks for it
        assert imported, result.stdout
    else:  # a clone elsewhere: the demo says so and runs on the simulator's traffic alone
        assert imported is None and "no Stack Exchange dump found" in result.stdout
    assert "projections caught up with stream seq" in result.stdout
    assert "live:" in result.stdout
    published = re.search(r"simulator published ([\d,]+) events \(.*, failed 0\)", result.stdout)
    last = re.search(r"stopped; stream AGORA last seq ([\d,]+)", result.stdout)
    assert published and last, result.stdout
    head = int(last[1].replace(",", ""))
    assert int(published[1].replace(",", "")) > 0
    history = int(imported[1].replace(",", "")) if imported else 0
    assert head >= history + int(published[1].replace(",", ""))

    # the store outlives the demo: the next command's embedded server finds the events
    info = agora("stream", "info", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["state"]["messages"] == head


def _read_until(process: subprocess.Popen[str], pattern: str, timeout: float) -> str:
    """Read the process's stdout until a line matches ``pattern``; return what was read."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not re.search(pattern, seen):
            left = deadline - time.monotonic()
            if left <= 0 or process.poll() is not None:
                pytest.fail(f"no {pattern!r} in demo output: {seen!r}")
            if selector.select(left):
                seen += process.stdout.readline()
    return seen


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_stops_cleanly_on_a_signal(sig: signal.Signals, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "agora.cli", *_demo_args("--rate", "50")],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _read_until(process, r"live: ", timeout=90)
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "stopping..." in stdout
    assert re.search(r"stopped; stream AGORA last seq [\d,]+", stdout), stdout
    assert re.search(r"simulator published [\d,]+ events \(.*, failed 0\)", stdout), stdout


def test_the_data_dir_setting_is_used(tmp_path: Path) -> None:
    data_dir = tmp_path / "elsewhere"
    result = agora(*_demo_args("--duration", "0"), cwd=tmp_path, AGORA_DATA_DIR=str(data_dir))
    assert result.returncode == 0, result.stderr
    assert (data_dir / "nats" / "jetstream").is_dir()


def test_publish_refuses_what_the_contract_refuses_and_events_past_the_clock(
    url: str, tmp_path: Path
) -> None:
    """Issue 14: `agora publish` stored each of these lines on main (all but the last)."""
    base = json.loads(_jsonl(1)[0])
    ahead = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        json.dumps({**base, "occurred_at": "9999-12-31T23:59:59Z"}),
        json.dumps({**base, "occurred_at": "2024-03-14 09:26:53Z"}),
        json.dumps({**base, "id": base["id"].upper()}),
        json.dumps({**base, "display_name": "a\u0000b"}),
        json.dumps(base)[:-1] + ', "member": "m2"}',
        json.dumps({**base, "occurred_at": ahead}),
        json.dumps(base),
    ]
    assert agora("stream", "init", cwd=tmp_path, AGORA_NATS_URL=url).returncode == 0
    result = agora(
        "publish", "--json", "-", cwd=tmp_path, input="\n".join(lines), AGORA_NATS_URL=url
    )
    report = json.loads(result.stdout)
    assert (report["stored"], report["invalid"]) == (1, 6)
    fields = [(e["line"], e["field"]) for e in report["errors"]]
    assert fields == [
        (1, "occurred_at"),
        (2, "occurred_at"),
        (3, "id"),
        (4, "display_name"),
        (5, "member"),
        (6, "occurred_at"),
    ]
    assert "clock skew" in report["errors"][5]["error"]
