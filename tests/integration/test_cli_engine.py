"""The projection commands of ``agora``, run as an operator runs them: subprocesses against a real
nats-server and a real database (SQLite, and PostgreSQL for the main flows).

Covered: ``worker`` (until SIGTERM, metrics, progress log), ``status`` (checkpoint, lag, generation
states, exit 1 when paused), ``dlq list/show/retry``, ``rebuild`` under traffic with a running
worker, ``activate`` (refused when behind, ``--force`` rollback), ``drop``, ``replay`` from a
sequence and from a time, an interrupted build continued by ``--resume`` and by ``worker``, and
the helpers ``seq_at_time`` and ``lag_age``. Every wait is a bounded poll of a condition.

The last section holds the regression tests of engine problems found on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js import JetStreamContext
from support.engine import (
    DB_KINDS,
    counts,
    database_url,
    make_events,
    oracle,
    stream_head,
    wait_until,
)

from agora.embedded import EmbeddedNats, free_port
from agora.registry import get_projections
from agora.stack import API_TIMEOUT
from events import Event
from events.publisher import Publisher, PublishStatus
from projections.api import Delivered
from projections.changes import Changes
from projections.counts import EventCounts
from projections.database import create_engine
from projections.infra import checkpoints
from projections.infra import status as status_table
from projections.lifecycle import seq_at_time
from projections.locks import WriterLock
from projections.runner import Worker, WorkerSettings
from projections.status import lag_age, read_status, wait_for
from projections.store import ProjectionStore

NAME = "event_counts"
FAST = WorkerSettings(stall_timeout=2.0, idle_heartbeat=0.5, status_interval=0.2, lock_poll=0.1)

Pairs = list[tuple[int, Event]]


# -- running the CLI -----------------------------------------------------------------------------


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """How to run ``agora`` for one test: its settings, folder, and background processes."""

    env: dict[str, str]
    cwd: Path

    async def __call__(self, *args: str, timeout: float = 120) -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agora.cli",
            *args,
            cwd=self.cwd,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), timeout)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    def start(self, name: str, *args: str) -> Background:
        return Background(self, name, args)

    async def status(self, *args: str, code: int = 0) -> dict[str, Any]:
        result = await self("status", "--json", *args)
        assert result.code == code, result.stderr
        document: dict[str, Any] = result.json()
        return document


class Background:
    """``agora ARGS`` in the background, its output in files; killed by the test's finally."""

    def __init__(self, cli: Cli, name: str, args: Sequence[str]) -> None:
        self.name = name
        self.out_path = cli.cwd / f"{name}.out"
        self.err_path = cli.cwd / f"{name}.err"
        self._out: IO[str] = self.out_path.open("w")
        self._err: IO[str] = self.err_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agora.cli", *args],
            cwd=cli.cwd,
            env=cli.env,
            stdout=self._out,
            stderr=self._err,
            text=True,
        )

    def stdout(self) -> str:
        return self.out_path.read_text()

    def stderr(self) -> str:
        return self.err_path.read_text()

    def running(self) -> bool:
        return self.process.poll() is None

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit; return the exit code."""
        self.process.send_signal(sig)
        await wait_until(lambda: not self.running(), timeout, f"{self.name} to exit")
        self.close()
        return self.process.returncode

    def close(self) -> None:
        if self.running():
            self.process.kill()
            self.process.wait()
        self._out.close()
        self._err.close()


def cli_env(nats_url: str, tmp_path: Path, db_url: str) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    env.update(
        PYTHONUNBUFFERED="1",
        AGORA_NATS_URL=nats_url,
        AGORA_DATA_DIR=str(tmp_path / "data"),
        AGORA_DATABASE_URL=db_url,
        AGORA_LOG_FORMAT="json",
    )
    return Cli(env, tmp_path)


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request.param, tmp_path, request, "agora")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agora.db'}"


@pytest.fixture
def engine_of() -> Any:
    engines: list[sa.Engine] = []

    def make(url: str) -> sa.Engine:
        engine = create_engine(url)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


async def publish_events(nc: Client, events: list[Event]) -> Pairs:
    """Publish with the real publisher; return (seq, event) for each (all must be stored)."""
    results = await Publisher(nc).publish_many(events)
    assert all(r.status is PublishStatus.STORED for r in results), results
    return [(int(r.seq or 0), e) for r, e in zip(results, events, strict=True)]


def partitions(document: dict[str, Any], generation: int | None = None) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = document["partitions"]
    return [
        r
        for r in rows
        if r["projection"] == NAME and (generation is None or r["generation"] == generation)
    ]


def states(document: dict[str, Any]) -> dict[int, str]:
    return {r["generation"]: r["generation_state"] for r in partitions(document)}


def generation_states(engine: sa.Engine) -> dict[int, str]:
    return {r.generation: r.state for r in ProjectionStore(engine, EventCounts()).generations()}


def worker_state(engine: sa.Engine, generation: int) -> str | None:
    rows = [r for r in read_status(engine, NAME) if r.generation == generation]
    return rows[0].worker_state if rows else None


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


async def caught_up(engine: sa.Engine, js: JetStreamContext, timeout: float = 60) -> int:
    """Wait until the active generation has applied the stream's head; return the head."""
    head = await stream_head(js)
    await wait_for(engine, NAME, head, timeout)
    return head


# -- the main flow -------------------------------------------------------------------------------


async def test_worker_status_dead_letters_rebuild_rollback_replay(
    db_url: str,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine_of: Any,
) -> None:
    cli = cli_env(nats_server.url, tmp_path, db_url)
    engine = engine_of(db_url)
    pairs = await publish_events(nc, make_events(3000, seed=11, tag="history"))
    metrics_port = free_port()
    worker = cli.start("worker", "worker", NAME, "--metrics-port", str(metrics_port))
    try:
        # The worker creates g1 and catches up with the head.
        head = await caught_up(engine, js)
        assert head == pairs[-1][0] == 3000
        document = await cli.status()
        assert document["stream"] == {"name": "AGORA", "last_seq": head}
        [row] = partitions(document)
        assert row["projection"] == NAME
        assert (row["generation"], row["generation_state"], row["partition"]) == (1, "active", 0)
        assert (row["checkpoint"], row["lag_events"], row["lag_seconds"]) == (head, 0, 0.0)
        assert row["stream_last_seq"] == head
        assert row["worker_state"] in ("running", "catching_up") and not row["stale"]
        assert row["dead_letters"] == 0 and row["events"] == head
        assert document["ok"] is True and document["paused"] == 0
        assert counts(engine, NAME) == oracle(pairs)

        # Metrics and the progress log line (every few seconds, never per event).
        metrics = await asyncio.to_thread(fetch, f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'agora_projection_checkpoint{partition="0",projection="event_counts"}' in metrics
        await wait_until(lambda: "projection progress" in worker.stderr(), 30, "a progress line")
        assert worker.stderr().count("projection progress") < 20

        # Invalid bytes straight to the stream become a dead letter.
        bad = int((await js.publish("agora.c1.post.created", b"not json")).seq)
        await wait_for(engine, NAME, bad, 30)
        listed = await cli("dlq", "list", "--json")
        assert listed.code == 0, listed.stderr
        [letter] = listed.json()["dead_letters"]
        assert (letter["seq"], letter["generation"], letter["kind"]) == (bad, 1, "invalid")
        assert letter["subject"] == "agora.c1.post.created"
        assert letter["error_class"] == "InvalidEvent"
        assert letter["generation_state"] == "active"
        shown = await cli("dlq", "show", NAME, str(bad), "--json")
        assert shown.code == 0, shown.stderr
        assert shown.json()["raw"] == "not json"
        assert shown.json()["raw_encoding"] == "utf-8"
        human = await cli("dlq", "show", NAME, str(bad))
        assert human.code == 0 and "not json" in human.stdout
        retried = await cli("dlq", "retry", NAME, "--json")
        assert retried.code == 1
        assert [f["seq"] for f in retried.json()["failed"]] == [bad]
        assert (await cli.status())["partitions"][0]["dead_letters"] == 1

        # Rebuild while the worker runs and events keep arriving.
        done = asyncio.Event()

        async def traffic() -> Pairs:
            sent: Pairs = []
            batch = 0
            while not done.is_set() or batch < 5:
                events = make_events(50, seed=batch, tag="live")
                sent += await publish_events(nc, events)
                batch += 1
                await asyncio.sleep(0.02)  # pacing the traffic, not waiting for anything
            return sent

        publishing = asyncio.create_task(traffic())
        try:
            rebuilt = await cli("rebuild", NAME, "--json")
        finally:
            done.set()
            pairs += await publishing
        assert rebuilt.code == 0, rebuilt.stderr
        report = rebuilt.json()
        assert (report["generation"], report["previous"], report["start_seq"]) == (2, 1, 1)
        assert report["swapped"] and report["finished"]
        assert report["checkpoint"] > bad

        head = await caught_up(engine, js)
        document = await cli.status()
        assert states(document) == {1: "retired", 2: "active"}
        [active] = partitions(document, 2)
        assert (active["checkpoint"], active["lag_events"]) == (head, 0)
        assert active["dead_letters"] == 1  # g2 folded the invalid message too
        assert counts(engine, NAME) == oracle(pairs)  # the stable view reads g2
        assert counts(engine, f"{NAME}__g2") == oracle(pairs)

        # The retired g1 stops; events published after that leave it behind g2.
        await wait_until(
            lambda: worker_state(engine, 1) == "stopped",
            30,
            "g1's worker to stop",
            detail=lambda: (
                f"status: {read_status(engine, NAME)}\nworker log:\n" + worker.stderr()[-4000:]
            ),
        )
        pairs += await publish_events(nc, make_events(500, seed=13, tag="after"))
        head = await caught_up(engine, js)
        assert await worker.stop(signal.SIGTERM) == 0, worker.stderr()
        assert "worker stopped" in worker.stdout()
    finally:
        worker.close()

    # Rollback: refused while g1 is behind, forced with --force.
    behind = await cli("activate", NAME, "1")
    assert behind.code == 1
    assert "behind the active generation" in behind.stderr and "--force" in behind.stderr
    forced = await cli("activate", NAME, "1", "--force")
    assert forced.code == 0, forced.stderr
    assert f"{NAME}: g1 is active; g2 is retired" in forced.stdout
    document = await cli.status()
    assert states(document) == {1: "active", 2: "retired"}
    [g1] = partitions(document, 1)
    assert g1["lag_events"] == head - g1["checkpoint"] > 0
    assert g1["lag_seconds"] is not None and g1["lag_seconds"] > 0

    refused = await cli("drop", NAME, "1")
    assert refused.code == 1
    assert "g1 is active: activate another first" in refused.stderr
    assert generation_states(engine)[1] == "active"

    worker = cli.start("worker2", "worker")
    try:
        # The worker catches the rolled-back g1 up: every event counted exactly once.
        await caught_up(engine, js)
        assert counts(engine, NAME) == oracle(pairs)

        # Replay from a sequence: the new generation holds only the events from there.
        start = 2001
        replayed = await cli("replay", NAME, "--from-seq", str(start), "--json")
        assert replayed.code == 0, replayed.stderr
        report = replayed.json()
        assert (report["generation"], report["previous"], report["start_seq"]) == (3, 1, start)
        assert report["swapped"]
        await caught_up(engine, js)
        from_start = [(s, e) for s, e in pairs if s >= start]
        assert counts(engine, f"{NAME}__g3") == oracle(from_start)
        assert counts(engine, NAME) == oracle(from_start)
        assert states(await cli.status()) == {1: "retired", 2: "retired", 3: "active"}

        dropped = await cli("drop", NAME, "2")
        assert dropped.code == 0, dropped.stderr
        assert states(await cli.status()) == {1: "retired", 3: "active"}
        assert f"{NAME}__g2" not in sa.inspect(engine).get_table_names()

        assert await worker.stop(signal.SIGTERM) == 0, worker.stderr()
    finally:
        worker.close()


# -- interrupted builds --------------------------------------------------------------------------


async def test_an_interrupted_rebuild_stays_building_and_is_continued(
    db_url: str,
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    engine_of: Any,
) -> None:
    cli = cli_env(nats_server.url, tmp_path, db_url)
    engine = engine_of(db_url)
    pairs = await publish_events(nc, make_events(2000, seed=31))

    first = await cli("rebuild", NAME, "--json")  # no generation yet: g1, swapped in
    assert first.code == 0, first.stderr
    assert (first.json()["generation"], first.json()["previous"]) == (1, None)

    # Hold g2's writer lock so the build cannot progress, then interrupt it with Ctrl-C.
    lock = WriterLock(engine, NAME, 2, 0)
    assert lock.try_acquire()
    build = cli.start("rebuild", "rebuild", NAME)
    try:
        await wait_until(lambda: 2 in generation_states(engine), 60, "g2 to be created")
        assert await build.stop(signal.SIGINT) == 1
        assert "stays building at checkpoint 0" in build.stderr()
        assert f"agora replay {NAME} --resume 2" in build.stderr()
    finally:
        build.close()
        lock.release()
    document = await cli.status()
    assert states(document) == {1: "active", 2: "building"}
    assert partitions(document, 2)[0]["checkpoint"] == 0

    again = await cli("rebuild", NAME)
    assert again.code == 1
    assert "g2 is already building" in again.stderr and "--resume 2" in again.stderr

    resumed = await cli("replay", NAME, "--resume", "2", "--json")
    assert resumed.code == 0, resumed.stderr
    assert (resumed.json()["generation"], resumed.json()["swapped"]) == (2, True)
    assert counts(engine, f"{NAME}__g2") == oracle(pairs)

    # Interrupted again; this time a worker continues the build and swaps it in.
    lock = WriterLock(engine, NAME, 3, 0)
    assert lock.try_acquire()
    build = cli.start("rebuild2", "rebuild", NAME)
    try:
        await wait_until(lambda: 3 in generation_states(engine), 60, "g3 to be created")
        assert await build.stop(signal.SIGINT) == 1
    finally:
        build.close()
        lock.release()
    worker = cli.start("worker", "worker")
    try:
        await wait_until(
            lambda: generation_states(engine).get(3) == "active", 60, "the worker to swap g3 in"
        )
        assert counts(engine, f"{NAME}__g3") == oracle(pairs)
        assert await worker.stop(signal.SIGINT) == 0, worker.stderr()
    finally:
        worker.close()


async def test_a_rebuild_rides_out_a_broker_stall(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    sqlite_url: str,
    engine_of: Any,
) -> None:
    """Failed before: `agora rebuild` exited 1 with `cannot read stream AGORA: NATS error: nats:
    timeout` when the broker stalled longer than a request's timeout during the build."""
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    engine = engine_of(sqlite_url)
    pairs = await publish_events(nc, make_events(500, seed=33))
    assert (await cli("rebuild", NAME)).code == 0  # g1

    lock = WriterLock(engine, NAME, 2, 0)  # the build of g2 waits for it: it only reads the head
    assert lock.try_acquire()
    build = cli.start("rebuild", "rebuild", NAME, "--json")
    try:
        await wait_until(lambda: 2 in generation_states(engine), 60, "g2 to be created")
        nats_server.pause()
        try:  # the fault lasts twice the CLI's request timeout; a build ending in it has failed
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(build.process.wait, 2 * API_TIMEOUT + 1)
        finally:
            nats_server.resume()
        lock.release()
        await wait_until(lambda: not build.running(), 60, "the rebuild to end", 0.1)
        assert build.process.returncode == 0, build.stderr()
        document = json.loads(build.stdout())
        assert (document["generation"], document["swapped"]) == (2, True)
        assert counts(engine, f"{NAME}__g2") == oracle(pairs)
    finally:
        build.close()
        lock.release()


# -- output: a progress bar on a terminal, clean JSON in a pipe ----------------------------------

#: Columns of the pseudo-terminal (wide enough for one JSON log line).
TTY_COLUMNS = 300
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen_of(raw: str, width: int = TTY_COLUMNS) -> list[str]:
    """What a terminal shows after ``raw``: the escape codes a rich live display sends, applied."""
    rows: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        match = _CSI.match(raw, i)
        if match:
            arg, code = match.groups()
            if code == "A":  # cursor up
                row = max(row - int(arg or 1), 0)
            elif code == "K" and arg == "2":  # erase the whole line
                rows[row] = []
            elif not (code == "m" or (code in "hl" and arg == "?25")):  # colours, cursor on/off
                raise AssertionError(f"escape code not emulated: {match.group()!r}")
            i = match.end()
            continue
        char = raw[i]
        i += 1
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
        else:
            if col >= width:
                row, col = row + 1, 0
            while len(rows) <= row:
                rows.append([])
            line = rows[row]
            line.extend(" " * (col - len(line) + 1))
            line[col] = char
            col += 1
        while len(rows) <= row:
            rows.append([])
    return ["".join(line).rstrip() for line in rows]


def run_on_a_terminal(
    cli: Cli, *args: str, stderr: IO[str] | None = None, timeout: float = 120
) -> tuple[int, str]:
    """Run ``agora ARGS`` with stdout (and stderr, unless given) on a pseudo-terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, TTY_COLUMNS, 0, 0))
    env = {**cli.env, "TERM": "xterm-256color", "COLUMNS": str(TTY_COLUMNS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "agora.cli", *args],
        cwd=cli.cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave if stderr is None else stderr,
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout)
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, b"".join(chunks).decode(errors="replace")


async def test_rebuild_logs_above_its_bar_on_a_terminal_and_only_json_on_a_pipe(
    tmp_path: Path, nats_server: EmbeddedNats, nc: Client, js: JetStreamContext, sqlite_url: str
) -> None:
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    await publish_events(nc, make_events(3000, seed=41))

    # A pipe: stdout is the JSON document alone; the log lines of the build went to stderr.
    piped = await cli("rebuild", NAME, "--json")
    assert piped.code == 0, piped.stderr
    assert piped.json()["generation"] == 1
    assert "writer lock taken" in piped.stderr
    assert all(json.loads(line)["event"] for line in piped.stderr.splitlines())

    # A terminal: the bar is drawn, and each log line printed during the build is whole, on a
    # line of its own above the bar, never written into it.
    code, raw = await asyncio.to_thread(run_on_a_terminal, cli, "rebuild", NAME)
    assert code == 0, raw
    screen = screen_of(raw)
    assert any("━" in line and "g2" in line for line in screen), screen
    logs = [line for line in screen if '"event"' in line]
    assert any("writer lock taken" in line for line in logs), screen
    for line in logs:
        assert line.startswith("{") and json.loads(line)["event"], line
    assert any(line.startswith(f"{NAME}: g2 is active") for line in screen), screen

    # A terminal with stderr sent to a file: the log lines go to the file, not to the screen.
    with (tmp_path / "rebuild.err").open("w") as err:
        code, raw = await asyncio.to_thread(run_on_a_terminal, cli, "rebuild", NAME, stderr=err)
    assert code == 0, raw
    assert '"event"' not in raw and f"{NAME}: g3 is active" in raw
    assert "writer lock taken" in (tmp_path / "rebuild.err").read_text()


# -- times, lag, --no-swap -----------------------------------------------------------------------


async def test_replay_from_a_time_and_the_stream_position_helpers(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    sqlite_url: str,
    engine_of: Any,
) -> None:
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    engine = engine_of(sqlite_url)
    before = await publish_events(nc, make_events(300, seed=41, tag="a"))
    after = await publish_events(nc, make_events(200, seed=42, tag="b"))
    first_after = after[0][0]
    head = after[-1][0]
    stored = (await js.get_msg("AGORA", first_after)).time
    assert stored is not None

    # seq_at_time: the first message at or after a time; last seq + 1 past the end.
    assert await seq_at_time(js, stored) == first_after
    assert await seq_at_time(js, stored - timedelta(days=1)) == 1
    assert await seq_at_time(js, datetime.now(UTC) + timedelta(hours=1)) == head + 1
    # lag_age: the age of the message after the checkpoint; None at the head.
    assert await lag_age(js, head) is None
    assert await lag_age(js, first_after - 1, now=stored + timedelta(seconds=5)) == 5.0
    assert (await lag_age(js, 0) or 0) > 0

    replayed = await cli("replay", NAME, "--from-time", stored.isoformat(), "--json")
    assert replayed.code == 0, replayed.stderr
    assert replayed.json()["start_seq"] == first_after
    assert counts(engine, f"{NAME}__g1") == oracle(after)
    assert len(before) == 300

    # A time without an offset is UTC. --no-swap builds and leaves the generation for activate.
    naive = stored.astimezone(UTC).replace(tzinfo=None).isoformat()
    built = await cli("replay", NAME, "--from-time", naive, "--no-swap", "--json")
    assert built.code == 0, built.stderr
    report = built.json()
    assert (report["generation"], report["start_seq"]) == (2, first_after)
    assert (report["swapped"], report["finished"], report["checkpoint"]) == (False, True, head)
    assert generation_states(engine) == {1: "active", 2: "building"}
    swapped = await cli("activate", NAME, "2", "--json")
    assert swapped.code == 0, swapped.stderr
    assert swapped.json() == {"projection": NAME, "generation": 2, "previous": 1}
    assert generation_states(engine) == {1: "retired", 2: "active"}


# -- status exit codes, usage errors -------------------------------------------------------------


async def test_status_exits_1_when_a_partition_is_paused_and_flags_stale_workers(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    sqlite_url: str,
    engine_of: Any,
) -> None:
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    engine = engine_of(sqlite_url)
    await publish_events(nc, make_events(50, seed=51))
    assert (await cli("rebuild", NAME)).code == 0
    assert (await cli.status())["ok"] is True

    # The build's worker left a status row; make it what a paused worker leaves.
    with engine.begin() as conn:
        updated = conn.execute(
            status_table.update()
            .where(status_table.c.generation == 1)
            .values(state="paused", error="boom", updated_at=datetime.now(UTC))
        ).rowcount
    assert updated == 1
    document = await cli.status(code=1)
    assert document["paused"] == 1 and document["ok"] is False
    assert partitions(document, 1)[0]["error"] == "boom"
    human = await cli("status")
    assert human.code == 1
    assert f"{NAME} g1 p0 is paused: boom" in human.stderr
    assert "paused: boom" in human.stdout

    # ... and what a worker that vanished (killed) or froze (SIGSTOP) leaves: not ok either.
    # Failed before: `"stale": true` with `"ok": true` and exit 0.
    with engine.begin() as conn:
        conn.execute(
            status_table.update().values(
                state="running", error=None, updated_at=datetime.now(UTC) - timedelta(hours=1)
            )
        )
    document = await cli.status(code=1)
    [stale] = partitions(document, 1)
    assert (stale["worker_state"], stale["stale"]) == ("running", True)
    assert document["ok"] is False and document["stale"] == 1 and document["paused"] == 0
    human = await cli("status")
    assert human.code == 1
    assert f"{NAME} g1 p0: worker " in human.stderr and "has not written its status" in human.stderr
    assert "stale 1.0h" in human.stdout

    # A stale worker of a retired generation is history: ok again.
    assert (await cli("rebuild", NAME)).code == 0
    document = await cli.status()
    assert states(document) == {1: "retired", 2: "active"}
    assert partitions(document, 1)[0]["stale"] is True
    assert document["ok"] is True and document["stale"] == 0


async def test_status_fits_100_columns_and_lists_retired_generations_only_when_asked(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    sqlite_url: str,
    engine_of: Any,
) -> None:
    """Failed before: 157 columns, a line per partition, retired generations always listed."""
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    engine = engine_of(sqlite_url)
    head = (await publish_events(nc, make_events(3000, seed=61)))[-1][0]
    projections = get_projections()
    assert len(projections) >= 5
    for projection in projections:
        store = ProjectionStore(engine, projection)
        store.ensure(1, 4)
        store.activate(1, require_caught_up=False)
    rebuilt = ProjectionStore(engine, EventCounts())
    rebuilt.ensure(2, 4)
    rebuilt.activate(2, require_caught_up=False)  # g1 is retired
    # What workers leave behind, with the widest figures a busy store shows.
    now = datetime.now(UTC)
    state = {
        "engagement": "running",
        "moderation": "catching_up",
        "reputation": "running",
        "event_counts": "running",
    }
    with engine.begin() as conn:
        conn.execute(checkpoints.update().values(last_seq=head - 2345, dead_letters=12_345))
        for projection in projections:
            for generation in (1, 2):
                for partition in range(4):
                    worker = state.get(projection.name)
                    if worker is None or (generation == 2 and projection.name != NAME):
                        continue
                    paused = projection.name == "reputation" and partition == 2
                    conn.execute(
                        status_table.insert().values(
                            projection=projection.name,
                            generation=generation,
                            partition=partition,
                            state="paused" if paused else worker,
                            error="RuntimeError: cannot fold the event" if paused else None,
                            worker="a-rather-long-host-name.example.org:123456",
                            rate=12_345.6,
                            updated_at=now,
                        )
                    )

    def table(stdout: str) -> list[str]:
        return [
            line
            for line in stdout.splitlines()
            if line.split(" ")[0] in names and line.split()[2] in ("active", "retired")
        ]

    names = {p.name for p in projections}
    human = await cli("status")
    assert human.code == 1, human.stderr  # the paused partition
    assert max(len(line) for line in human.stdout.splitlines()) <= 100, human.stdout
    lines = table(human.stdout)
    # One line per generation whose partitions agree, one per partition otherwise.
    assert [line.split()[0] for line in lines].count("engagement") == 1
    assert [line.split()[0] for line in lines].count("reputation") == 4
    assert [line.split()[0] for line in lines].count(NAME) == 1  # g2; the retired g1 is hidden
    assert "1 retired generation not shown (--all)" in human.stdout
    assert not any(" retired " in line for line in lines)
    assert "paused: RuntimeError: cannot fold the event" in human.stdout

    everything = await cli("status", "--all")
    assert max(len(line) for line in everything.stdout.splitlines()) <= 100, everything.stdout
    assert sum(" retired " in line for line in table(everything.stdout)) == 1
    assert "not shown" not in everything.stdout

    wide = await cli("status", "--wide", "--all")
    assert "worker id" in wide.stdout and "a-rather-long-host-name" in wide.stdout
    assert len(table(wide.stdout)) == 0  # boxed rows start with a border
    assert wide.stdout.count("│ reputation ") == 4

    document = await cli.status(code=1)  # --json: every generation, retired ones included
    assert states(document) == {1: "retired", 2: "active"}
    assert len(document["partitions"]) == 4 * (len(projections) + 1)


async def test_usage_errors_exit_2_and_a_missing_stream_exits_1(
    tmp_path: Path, nats_server: EmbeddedNats, sqlite_url: str
) -> None:
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    unknown = await cli("worker", "nope")
    assert unknown.code == 2
    assert "unknown projection 'nope' (known: engagement, event_counts" in unknown.stderr
    assert (await cli("status", "nope")).code == 2
    assert (await cli("rebuild", "nope")).code == 2
    both = await cli("replay", NAME, "--from-seq", "1", "--from-time", "2026-01-01T00:00:00Z")
    assert both.code == 2
    assert (await cli("replay", NAME, "--from-time", "yesterday")).code == 2
    assert (await cli("worker", "--only-partitions", "a,b")).code == 2
    bad_url = dict(cli.env, AGORA_DATABASE_URL="mysql://u:secret@db/x")
    wrong = await Cli(bad_url, tmp_path)("status")
    assert wrong.code == 2 and "AGORA_DATABASE_URL" in wrong.stderr
    assert "secret" not in wrong.stderr

    # No stream yet: the worker and a build say so and exit 1.
    missing = await cli("worker")
    assert missing.code == 1
    assert "stream AGORA does not exist; run `agora stream init`" in missing.stderr
    assert (await cli("rebuild", NAME)).code == 1

    assert (await cli("stream", "init")).code == 0
    past = await cli("replay", NAME, "--from-seq", "5")
    assert past.code == 2
    assert "past the stream's last seq 0" in past.stderr
    nothing = await cli("dlq", "list", "--json")
    assert nothing.code == 0 and nothing.json()["dead_letters"] == []
    assert (await cli("dlq", "show", NAME, "1")).code == 1


class _Breakable(EventCounts):
    """EventCounts whose fold raises on events of the actor ``poison`` (the bug)."""

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        for delivered in batch:
            if delivered.event.actor == "poison":
                raise RuntimeError(f"cannot fold the event at seq {delivered.seq}")
        super().fold(batch, changes)


async def test_status_shows_parked_communities_and_dlq_retries_or_skips_them(
    tmp_path: Path,
    nats_server: EmbeddedNats,
    nc: Client,
    js: JetStreamContext,
    sqlite_url: str,
    engine_of: Any,
) -> None:
    """Failed before: status had no parked communities, dlq had no --community nor skip."""
    cli = cli_env(nats_server.url, tmp_path, sqlite_url)
    engine = engine_of(sqlite_url)
    events = make_events(60, communities=3, seed=52)
    poison = {
        c: next(i for i, e in enumerate(events) if e.community == c and i > 10)
        for c in ("c1", "c2")
    }
    for i in poison.values():
        events[i] = msgspec.structs.replace(events[i], actor="poison")
    pairs = await publish_events(nc, events)
    seq_of = {c: pairs[i][0] for c, i in poison.items()}
    store = ProjectionStore(engine, _Breakable())
    store.ensure(1)
    store.activate(1)
    await asyncio.wait_for(
        Worker(js, store, generation=1, settings=FAST).run(until_seq=pairs[-1][0]), 60
    )

    document = await cli.status(code=1)
    assert document["ok"] is False
    parked = {p["community"]: p for p in document["parked"]}
    assert {c: p["first_seq"] for c, p in parked.items()} == seq_of
    assert parked["c1"]["error"] == f"RuntimeError: cannot fold the event at seq {seq_of['c1']}"
    assert parked["c1"]["held"] == sum(
        1 for s, e in pairs if e.community == "c1" and s > seq_of["c1"]
    )
    human = await cli("status")
    assert human.code == 1
    assert f"{NAME} g1: community c1 is parked at seq {seq_of['c1']}: RuntimeError" in human.stderr
    assert f"community c2 parked at seq {seq_of['c2']}" in human.stdout

    skipped = await cli("dlq", "skip", NAME, "c2", "--reason", "known bad import", "--json")
    assert skipped.code == 0, skipped.stderr
    assert skipped.json()["skipped"] == seq_of["c2"] and skipped.json()["released"] is True
    # The worker in the CLI is the real EventCounts: the fix is deployed.
    retried = await cli("dlq", "retry", NAME, "--community", "c1", "--json")
    assert retried.code == 0, retried.stderr
    assert retried.json()["applied"][0] == seq_of["c1"] and retried.json()["released"] is True
    again = await cli("dlq", "retry", NAME, "--community", "c1")
    assert again.code == 2 and "c1 is not parked" in again.stderr

    document = await cli.status()
    assert document["ok"] is True and document["parked"] == []
    letters = (await cli("dlq", "list", NAME, "--json")).json()["dead_letters"]
    assert [(x["seq"], x["kind"]) for x in letters] == [(seq_of["c2"], "skipped")]
    assert "known bad import" in letters[0]["error_message"]
    assert counts(engine, "event_counts") == oracle(p for p in pairs if p[0] != seq_of["c2"])
