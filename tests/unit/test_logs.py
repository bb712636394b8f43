"""structlog configuration: JSON lines off a terminal, console rendering on one."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from agora.logs import configure_logging, resolve_format


class Terminal(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put structlog and the root logger back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_format_writes_one_object_per_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    log = structlog.get_logger("test")
    log.info("event.published", community="c42", seq=7)
    log.warning("publish.retry", attempt=2)
    records = [json.loads(line) for line in lines(out)]
    assert len(records) == 2
    first, second = records
    assert first["event"] == "event.published"
    assert first["level"] == "info"
    assert (first["community"], first["seq"]) == ("c42", 7)
    assert first["timestamp"].endswith("Z")  # ISO 8601, UTC
    assert (second["event"], second["level"], second["attempt"]) == ("publish.retry", "warning", 2)


def test_level_filters_lower_levels() -> None:
    out = io.StringIO()
    configure_logging("json", "warning", stream=out)
    log = structlog.get_logger()
    log.info("dropped")
    log.debug("dropped too")
    log.error("kept")
    assert [json.loads(line)["event"] for line in lines(out)] == ["kept"]


def test_context_variables_are_merged() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    structlog.contextvars.bind_contextvars(projection="counts")
    structlog.get_logger().info("applied")
    assert json.loads(lines(out)[0])["projection"] == "counts"


def test_exceptions_are_rendered_into_the_json_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger().exception("failed")
    (record,) = [json.loads(line) for line in lines(out)]
    assert record["level"] == "error"
    assert "RuntimeError: boom" in record["exception"]


def test_console_format_is_not_json() -> None:
    out = io.StringIO()
    configure_logging("console", "info", stream=out)
    structlog.get_logger().info("hello", community="c42")
    (line,) = lines(out)
    assert "hello" in line
    assert "community=c42" in line
    assert "\x1b[" not in line  # no colours off a terminal
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_auto_picks_json_off_a_terminal() -> None:
    out = io.StringIO()
    assert resolve_format("auto", out) == "json"
    configure_logging("auto", "info", stream=out)
    structlog.get_logger().info("hello")
    assert json.loads(lines(out)[0])["event"] == "hello"


def test_auto_picks_console_on_a_terminal() -> None:
    assert resolve_format("auto", Terminal()) == "console"
    assert resolve_format("json", Terminal()) == "json"
    assert resolve_format("console", io.StringIO()) == "console"


def test_stdlib_logging_goes_to_the_same_stream_from_warning_up() -> None:
    out = io.StringIO()
    configure_logging("json", "debug", stream=out)
    logging.getLogger("nats").info("chatty")
    logging.getLogger("nats").warning("reconnecting")
    text = out.getvalue()
    assert "reconnecting" in text
    assert "chatty" not in text


def test_a_stdlib_traceback_is_one_json_line() -> None:
    out = io.StringIO()
    configure_logging("json", "info", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    (line,) = lines(out)
    record = json.loads(line)
    assert record["event"] == "Exception in ASGI application"
    assert (record["level"], record["logger"]) == ("error", "uvicorn.error")
    assert "RuntimeError: boom" in record["exception"]


def test_reconfiguring_takes_effect_for_new_loggers() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "info", stream=first)
    structlog.get_logger().info("one")
    configure_logging("console", "info", stream=second)
    structlog.get_logger().info("two")
    assert [json.loads(line)["event"] for line in lines(first)] == ["one"]
    assert "two" in second.getvalue()
