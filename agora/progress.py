"""The progress of ``agora demo``/``agora up``: readings of the stream head and the active
checkpoints (:class:`Monitor`), and their display (:class:`Display`): a live display on a
terminal, plain lines now and then otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import sqlalchemy as sa
import structlog
from rich.console import Console
from rich.live import Live
from rich.text import Text

from agora.errors import AgoraError
from agora.registry import known_names
from agora.stack import Stack
from agora.workers import one_line
from projections.errors import ProjectionError
from projections.lifecycle import serving_positions
from projections.status import read_status

log = structlog.get_logger("agora.demo")

#: Seconds of readings behind the live events/s figure.
RATE_WINDOW: Final = 5.0
#: Seconds between two plain progress lines when the display is not live.
PRINT_EVERY: Final = 10.0


@dataclass(frozen=True)
class Reading:
    """The stream head and each projection's active checkpoint at one moment."""

    at: float
    head: int
    checkpoints: dict[str, int | None]
    """Per projection, the lowest checkpoint of its active generation (None: not started)."""
    paused: frozenset[str]

    def lag(self, name: str) -> int | None:
        """Events of the stream ``name`` has not applied yet (None: not started)."""
        point = self.checkpoints.get(name)
        return None if point is None else max(self.head - point, 0)

    def caught_up(self, target: int) -> bool:
        """Every projection applied ``target`` (or is paused: it will not get there alone)."""
        return all(
            name in self.paused or (point is not None and point >= target)
            for name, point in self.checkpoints.items()
        )


class Monitor:
    """Reads the stream head and the checkpoints; keeps recent readings for events/s."""

    def __init__(self, stack: Stack, engine: sa.Engine) -> None:
        self.stack = stack
        self.engine = engine
        self.names = known_names()
        self.recent: deque[Reading] = deque()
        self.last: Reading | None = None

    async def read(self) -> Reading:
        """A new reading; the previous values stand in for a part that cannot be read now."""
        previous = self.last
        head = previous.head if previous else 0
        with contextlib.suppress(AgoraError):
            head = (await self.stack.stream_status()).state.last_seq
        try:
            rows = await asyncio.to_thread(read_status, self.engine)
            points, paused = serving_positions(rows, self.names)
        except (ProjectionError, sa.exc.SQLAlchemyError) as error:
            log.debug("cannot read the checkpoints", error=one_line(error))
            points = dict(previous.checkpoints) if previous else dict.fromkeys(self.names)
            paused = set(previous.paused) if previous else set()
        reading = Reading(time.monotonic(), head, points, frozenset(paused))
        self.last = reading
        self.recent.append(reading)
        while len(self.recent) > 2 and self.recent[1].at < reading.at - RATE_WINDOW:
            self.recent.popleft()
        return reading

    def rate(self) -> float:
        """Events/s appended to the stream over the last few seconds."""
        if len(self.recent) < 2:
            return 0.0
        first, last = self.recent[0], self.recent[-1]
        return (last.head - first.head) / max(last.at - first.at, 1e-6)


class Display:
    """A live display on a terminal, else a plain line now and then; notes are kept above."""

    def __init__(self, console: Console, live: bool) -> None:
        self.console = console
        self.live: Live | None = None
        self.enabled = live
        self.next_print = 0.0

    @contextlib.contextmanager
    def running(self) -> Iterator[Display]:
        """Show the live display (if enabled) while inside."""
        if not self.enabled:
            yield self
            return
        with Live(
            Text(""),
            console=self.console,
            refresh_per_second=4,
            transient=False,
            redirect_stderr=sys.stderr.isatty(),  # log lines above the display, if on a terminal
        ) as live:
            self.live = live
            try:
                yield self
            finally:
                self.live = None

    def note(self, message: str) -> None:
        """A line that stays."""
        self.console.print(message, soft_wrap=True)

    def show(self, lines: list[str], *, now: bool = False) -> None:
        """Replace the live lines; without a terminal, print them every PRINT_EVERY seconds."""
        if self.live is not None:
            self.live.update(Text("\n".join(lines)))
            return
        if now or time.monotonic() >= self.next_print:
            self.next_print = time.monotonic() + PRINT_EVERY
            for line in lines:
                self.console.print(line, soft_wrap=True)


def catch_up_lines(reading: Reading, target: int) -> list[str]:
    """Catch-up progress: each projection's active checkpoint against ``target``."""
    lines = [f"catching up with stream seq {target:,}:"]
    for name, point in reading.checkpoints.items():
        state = "paused (see `agora status`)" if name in reading.paused else ""
        if not state:
            state = "caught up" if point is not None and point >= target else "catching up"
        have = "-" if point is None else f"{point:,}"
        lines.append(f"  {name:<26} {have:>10} / {target:,}  {state}")
    return lines


def live_lines(reading: Reading, rate: float, left: float | None, detail: bool) -> list[str]:
    """The live phase: events/s, the stream head, the lag of each projection (or the worst)."""
    lags = {name: reading.lag(name) for name in reading.checkpoints}
    known = [(lag, name) for name, lag in lags.items() if lag is not None]
    worst = max(known) if known else None
    tail = f" · {left:.0f} s left" if left is not None else ""
    lag = f"max lag {worst[0]:,} events ({worst[1]})" if worst else "lag unknown"
    head = f"live: {rate:7.1f} events/s · stream seq {reading.head:,} · {lag}{tail} · Ctrl-C stops"
    if not detail:
        return [head]
    rows = [head]
    for name, value in lags.items():
        paused = " (paused)" if name in reading.paused else ""
        rows.append(f"  {name:<26} lag {'-' if value is None else f'{value:,}':>8}{paused}")
    return rows
