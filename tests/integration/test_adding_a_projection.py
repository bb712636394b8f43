"""Adding a projection the documented way (docs/projections.md, "Adding a projection").

A toy projection is written as a module in a temporary directory and registered by one line, an
entry point of ``agora.projections`` in a distribution's metadata beside it (what installing a
package with that line in its pyproject.toml writes). Nothing else changes: ``agora worker``,
run as a subprocess against a real nats-server and SQLite, runs it with every other registered
projection until it reaches the stream's head; its table holds what the events say; docgen
renders its table into docs/tables.md; and it passes the projection test kit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from support.engine import make_events, publish, stream_head, wait_until, wires

from agora.embedded import EmbeddedNats
from events import PostCreated
from projections.database import create_engine
from projections.status import active_checkpoints
from projections.testing import check_projection

TOY = '''
"""A toy projection: posts per member."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from events import PostCreated
from projections.api import Delivered, Projection, TableNamer
from projections.changes import Changes


class ToyPosts(Projection):
    """Posts per member, and the last one's stream sequence."""

    name = "toy_posts"
    version = 1

    def define_tables(self, metadata: sa.MetaData, table_name: TableNamer) -> dict[str, sa.Table]:
        """One table, ``toy_posts``: (community, member) -> posts, last_seq."""
        table = sa.Table(
            table_name("toy_posts"),
            metadata,
            sa.Column("community", sa.String(64), primary_key=True, comment="community id"),
            sa.Column("member", sa.String(64), primary_key=True, comment="author of the posts"),
            sa.Column("posts", sa.Integer, nullable=False, default=0, comment="posts (count)"),
            sa.Column("last_seq", sa.BigInteger, comment="stream sequence of the last post"),
        )
        return {"toy_posts": table}

    def fold(self, batch: Sequence[Delivered], changes: Changes) -> None:
        """One more post for the author of each post.created."""
        for delivered in batch:
            event = delivered.event
            if isinstance(event, PostCreated):
                key = (event.community, event.actor)
                changes.add("toy_posts", key, posts=1)
                changes.greatest("toy_posts", key, last_seq=delivered.seq)
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """A directory holding ``toy_projection.py`` and the metadata registering it."""
    directory = tmp_path / "plugin"
    directory.mkdir()
    (directory / "toy_projection.py").write_text(textwrap.dedent(TOY))
    info = directory / "toy-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy\nVersion: 0\n")
    (info / "entry_points.txt").write_text(
        "[agora.projections]\ntoy_posts = toy_projection:ToyPosts\n"
    )
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("toy_projection", None)


def environment(plugin: Path, tmp_path: Path, **agora: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGORA_")}
    path = [str(plugin), *filter(None, [env.get("PYTHONPATH")])]
    env.update(PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(path), AGORA_LOG_FORMAT="json")
    env.update(AGORA_DATA_DIR=str(tmp_path / "data"), **agora)
    return env


async def test_a_toy_projection_registered_by_one_line_runs_documents_and_passes_the_kit(
    plugin: Path, tmp_path: Path, nats_server: EmbeddedNats, js: JetStreamContext
) -> None:
    events = make_events(120, communities=4, seed=16, tag="toy")
    await publish(js, wires(events))
    head = await stream_head(js)
    url = f"sqlite:///{tmp_path / 'agora.db'}"
    env = environment(plugin, tmp_path, AGORA_NATS_URL=nats_server.url, AGORA_DATABASE_URL=url)

    out_path, err_path = tmp_path / "worker.out", tmp_path / "worker.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        worker = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "agora.cli", "worker"],  # no names: every projection
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=err,
        )
    engine = create_engine(url)
    try:

        def caught_up() -> bool:
            points = active_checkpoints(engine, "toy_posts")
            return bool(points) and min(points) >= head

        await wait_until(
            caught_up,
            90,
            "toy_posts to reach the stream head",
            poll=0.1,
            detail=lambda: err_path.read_text()[-3000:],
        )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT community, member, posts FROM toy_posts")).all()
        posts = Counter((e.community, e.actor) for e in events if isinstance(e, PostCreated))
        assert posts and {(c, m): n for c, m, n in rows} == dict(posts)

        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 60) == 0, err_path.read_text()[-3000:]
        assert "toy_posts" in out_path.read_text().splitlines()[0]  # "worker: engagement, ..."
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        engine.dispose()

    docgen = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "agora.docgen", "tables"],
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    rendered, _ = await asyncio.wait_for(docgen.communicate(), 60)
    assert docgen.returncode == 0
    section = rendered.decode().split("## `toy_posts` (version 1)\n", 1)[1]
    assert "Posts per member, and the last one's stream sequence." in section
    assert "| `posts` | `INTEGER` |  | no | `0` | posts (count) |" in section

    from toy_projection import ToyPosts  # type: ignore[import-not-found]

    check_projection(ToyPosts, events, f"sqlite:///{tmp_path / 'kit.db'}", sizes=[7, 30])
