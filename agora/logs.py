"""structlog configuration, done once per entry point: JSON off a terminal, console on one.

Records of the standard library's ``logging`` (uvicorn, nats-py, SQLAlchemy) are rendered by the
same renderer: in JSON mode every record, with its traceback if any, is one JSON line.

Logs go to ``sys.stderr`` as it is at each write, not as it was at configuration: while a live
display (a progress bar of rich) runs on a terminal, rich stands in for ``sys.stderr`` and prints
each log line above the display instead of through it.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO, cast

import structlog

LogFormat = Literal["auto", "json", "console"]

_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of each write."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "console"]:
    """Return the concrete format: ``auto`` is console on a terminal and JSON otherwise."""
    if fmt != "auto":
        return fmt
    return "console" if stream.isatty() else "json"


def configure_logging(
    fmt: LogFormat = "auto", level: str = "info", stream: TextIO | None = None
) -> None:
    """Configure structlog (and the stdlib root logger) for this process."""
    out = stream or cast(TextIO, _CurrentStderr())
    concrete = resolve_format(fmt, out)
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if concrete == "json"
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    numeric = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
    for name in _SERVER_LOGGERS:  # undo uvicorn's own logging setup, should anything apply it
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
