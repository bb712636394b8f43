"""`agora stream ...`: create and inspect the append-only stream."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING

import typer

from agora.cli.common import (
    EXIT_MISMATCH,
    JsonOption,
    _fail,
    _json,
    _report_mismatch,
    _run,
    _settings,
    app,
    out,
)
from agora.errors import AgoraError, StreamConfigMismatch
from events.errors import EventError
from events.subjects import STREAM

# nats-py (through agora.stack) loads when a command runs, not with the CLI.
if TYPE_CHECKING:
    from agora.stack import StreamStatus


stream_app = typer.Typer(
    help="Create and inspect the append-only AGORA stream.", no_args_is_help=True
)
app.add_typer(stream_app, name="stream")


# -- stream ------------------------------------------------------------------------------------


@stream_app.command("init")
def stream_init(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Create the AGORA stream if missing (idempotent); exit 3 if it exists otherwise."""
    from agora.stack import Stack

    settings = _settings(ctx)

    async def run() -> bool:
        async with Stack(settings) as stack:
            return (await stack.ensure_stream()).created

    try:
        created = asyncio.run(run())
    except StreamConfigMismatch as error:
        if as_json:
            differences = {k: {"have": h, "want": w} for k, (h, w) in error.differences.items()}
            _json({"stream": STREAM, "matches": False, "differences": differences})
        _report_mismatch(error)
        raise typer.Exit(EXIT_MISMATCH) from None
    except (AgoraError, EventError) as error:
        _fail(f"error: {error}")
    if as_json:
        _json({"stream": STREAM, "created": created, "matches": True})
    elif created:
        out.print(f"stream {STREAM} created")
    else:
        out.print(f"stream {STREAM} exists, configuration matches")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _limit(value: float, render: str) -> str:
    return "unlimited" if value <= 0 else render


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat().replace("+00:00", "Z")


@stream_app.command("info")
def stream_info(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the stream's configuration and state (messages, bytes, sequences, times)."""
    from rich.table import Table

    from agora.stack import Stack

    settings = _settings(ctx)

    async def run() -> StreamStatus:
        async with Stack(settings) as stack:
            return await stack.stream_status()

    status = _run(run())
    if as_json:
        _json(status)
        return
    c, s = status.config, status.state
    table = Table(title=f"stream {c.name}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("subjects", ", ".join(c.subjects)),
        ("storage", f"{c.storage}, {c.num_replicas} replica(s)"),
        ("retention", f"{c.retention}, discard {c.discard}"),
        ("append-only", "yes" if c.deny_delete and c.deny_purge else "NO"),
        ("duplicate window", f"{c.duplicate_window:g} s"),
        ("max age", _limit(c.max_age, f"{c.max_age:g} s")),
        ("max bytes", _limit(c.max_bytes, _size(c.max_bytes))),
        ("max messages", _limit(c.max_msgs, str(c.max_msgs))),
        ("max message size", _size(c.max_msg_size)),
        ("messages", f"{s.messages:,}"),
        ("bytes", _size(s.bytes)),
        ("first seq", f"{s.first_seq:,}"),
        ("last seq", f"{s.last_seq:,}"),
        ("first time", _when(s.first_time)),
        ("last time", _when(s.last_time)),
        ("consumers", str(s.consumers)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
