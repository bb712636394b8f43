"""Shared plumbing of the ``agora`` commands: the root app, exit codes, JSON output,
settings from the context, error translation, running coroutines and signals.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import msgspec
import structlog
import typer
from rich.console import Console

from agora.config import Settings, env_name, get_settings
from agora.errors import AgoraError, ConfigError, StreamConfigMismatch
from agora.logs import configure_logging
from agora.registry import UnknownProjection, get_projection
from events.errors import EventError
from events.subjects import STREAM

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_MISMATCH = 3

T = TypeVar("T")

log = structlog.get_logger("agora.cli")
out = Console(highlight=False, markup=False)

app = typer.Typer(
    name="agora",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

_HELP = frozenset({"--help", "-h"})

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]

#: Settings that shape the stream, by StreamConfig field (for mismatch hints).
_STREAM_SETTING = {
    "num_replicas": "stream_replicas",
    "duplicate_window": "stream_duplicate_window",
    "max_age": "stream_max_age",
    "max_bytes": "stream_max_bytes",
}


#: Width of tables printed when stdout is not a terminal (wide enough not to truncate).
PLAIN_WIDTH = 240

ProjectionArg = Annotated[
    str, typer.Argument(metavar="PROJECTION", help="A projection name, e.g. event_counts.")
]
GenerationArg = Annotated[
    int, typer.Argument(metavar="GENERATION", min=1, help="A generation number (see status).")
]


# -- plumbing ----------------------------------------------------------------------------------


def _fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def _json(document: Any) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(document), indent=2).decode() + "\n")
    sys.stdout.flush()


def _settings(ctx: typer.Context) -> Settings:
    settings = ctx.obj
    if not isinstance(settings, Settings):  # pragma: no cover - the callback always sets it
        settings = get_settings()
    return settings


def _mismatch_lines(error: StreamConfigMismatch) -> list[str]:
    lines = []
    for name, (have, want) in error.differences.items():
        setting = _STREAM_SETTING.get(name)
        hint = f" (set by {env_name(setting)})" if setting else " (fixed by Agora)"
        lines.append(f"  {name}: stream has {have!r}, Agora wants {want!r}{hint}")
    return lines


def _report_mismatch(error: StreamConfigMismatch) -> None:
    typer.echo(
        f"stream {STREAM} exists with a different configuration; nothing was changed:", err=True
    )
    for line in _mismatch_lines(error):
        typer.echo(line, err=True)


class UsageError(AgoraError):
    """A command's arguments do not fit the state found (exit 2), e.g. a sequence past the head."""


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn errors into messages on stderr and exit codes (see the module docstring)."""
    try:
        yield
    except StreamConfigMismatch as error:
        _report_mismatch(error)
        raise typer.Exit(EXIT_MISMATCH) from None
    except ConfigError as error:
        _fail(f"configuration error: {error}", EXIT_USAGE)
    except (UnknownProjection, UsageError) as error:
        _fail(f"error: {error}", EXIT_USAGE)
    except (AgoraError, EventError) as error:
        _fail(f"error: {error}")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine and turn errors into messages and exit codes."""
    with _errors():
        return asyncio.run(coro)
    raise AssertionError("unreachable")  # pragma: no cover - _errors exits or re-raises


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Agora: an event-sourced community backend on NATS JetStream.

    Settings come from AGORA_* environment variables (see `agora config`). With no
    AGORA_NATS_URL, commands start an embedded nats-server with its data under AGORA_DATA_DIR.

    Exit codes: 0 ok, 1 operational failure, 2 usage or configuration error, 3 the stream
    exists with another configuration.
    """
    try:
        settings = get_settings()
    except ConfigError as error:
        if _HELP.intersection(sys.argv[1:]):  # help needs no settings
            return
        _fail(f"configuration error: {error}", EXIT_USAGE)
    configure_logging(settings.log_format, settings.log_level)
    ctx.obj = settings


def _wide() -> Console:
    """The console for tables: stdout's, or a wide one when stdout is not a terminal."""
    if out.is_terminal:
        return out
    return Console(highlight=False, markup=False, width=PLAIN_WIDTH)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``; a second one cancels the command at once."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _run_stoppable(coro: Coroutine[Any, Any, T]) -> T:
    """:func:`_run` for commands stopped by a signal; a second signal exits 1 at once."""
    try:
        return _run(coro)
    except asyncio.CancelledError:
        _fail("stopped at once (second signal)")


def _check_names(names: Sequence[str]) -> None:
    for name in names:
        with _errors():
            get_projection(name)


def _open_engine(settings: Settings) -> Engine:
    from agora.workers import open_engine  # the engine modules: only for commands that use them

    with _errors():
        return open_engine(settings)
    raise AssertionError("unreachable")  # pragma: no cover
