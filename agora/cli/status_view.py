"""How `agora status` shows projection status: a compact table by default, every detail when wide.

The compact table fits 100 columns: one line per generation when its partitions agree (same
worker state, none paused or stale), otherwise one line per partition; retired generations only
when asked. The wide table is one line per partition with every column. The rows themselves come
from :mod:`projections.status`; nothing here decides what is healthy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby

from rich import box
from rich.table import Table

from events.subjects import STREAM
from projections.lifecycle import GenerationState
from projections.status import WORKING_STATES, StatusRow, parse_time


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the compact table: a whole generation, or one of its partitions."""

    projection: str
    generation: int
    state: str
    partitions: str
    checkpoint: int
    lag: int | None
    age: float | None
    rate: float | None
    worker: str
    dead_letters: int


def visible(rows: Iterable[StatusRow], show_all: bool) -> list[StatusRow]:
    """The rows to show: without retired generations unless ``show_all``."""
    return [r for r in rows if show_all or r.generation_state != GenerationState.RETIRED]


def hidden_generations(rows: Iterable[StatusRow], show_all: bool) -> int:
    """How many generations ``visible`` leaves out."""
    if show_all:
        return 0
    return len(
        {
            (r.projection, r.generation)
            for r in rows
            if r.generation_state == GenerationState.RETIRED
        }
    )


def short_seconds(value: float | None) -> str:
    """A duration in a few characters: ``0s``, ``42s``, ``12m``, ``3.5h``, ``2.0d``."""
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{value / 60:.0f}m"
    if value < 172_800:
        return f"{value / 3600:.1f}h"
    return f"{value / 86_400:.1f}d"


def worker_cell(row: StatusRow, now: datetime) -> str:
    """The compact worker column: its state, or how long a stale worker has been silent."""
    if row.worker_state is None:
        return "-"
    if row.stale:
        updated = parse_time(row.updated_at)
        silent = (now - updated).total_seconds() if updated is not None else None
        return f"stale {short_seconds(silent)}"
    return row.worker_state.replace("_", " ")


def _rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def _working_rate(row: StatusRow) -> float | None:
    """The row's events/s while its worker works; a stopped or stale worker applies nothing."""
    if row.worker_state in WORKING_STATES and not row.stale:
        return row.rate
    return None


def _max(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _max_int(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _generation(row: StatusRow) -> tuple[str, int]:
    return row.projection, row.generation


def lines(rows: Sequence[StatusRow], now: datetime) -> list[Line]:
    """Compact lines: one per generation whose partitions agree, else one per partition."""
    result: list[Line] = []
    for (projection, generation), group in groupby(rows, key=_generation):
        parts = list(group)
        cells = {worker_cell(r, now) for r in parts}
        agree = len(cells) == 1 and not any(r.paused or r.stale for r in parts)
        if agree and len(parts) > 1:
            numbers = sorted(r.partition for r in parts)
            span = f"{numbers[0]}-{numbers[-1]}"
            rates = [rate for r in parts if (rate := _working_rate(r)) is not None]
            result.append(
                Line(
                    projection=projection,
                    generation=generation,
                    state=parts[0].generation_state,
                    partitions=span,
                    checkpoint=min(r.checkpoint for r in parts),
                    lag=_max_int(r.lag_events for r in parts),
                    age=_max(r.lag_seconds for r in parts),
                    rate=sum(rates) if rates else None,
                    worker=cells.pop(),
                    dead_letters=sum(r.dead_letters for r in parts),
                )
            )
            continue
        result += [
            Line(
                projection=projection,
                generation=generation,
                state=r.generation_state,
                partitions=str(r.partition),
                checkpoint=r.checkpoint,
                lag=r.lag_events,
                age=r.lag_seconds,
                rate=_working_rate(r),
                worker=worker_cell(r, now),
                dead_letters=r.dead_letters,
            )
            for r in parts
        ]
    return result


def _title(head: int | None) -> str:
    where = f"last seq {head:,}" if head is not None else "unreachable"
    return f"projections (stream {STREAM}: {where})"


def compact_table(head: int | None, rows: Sequence[StatusRow], now: datetime) -> Table:
    """The default table (at most 100 columns for names up to 24 characters)."""
    table = Table(
        title=_title(head),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column, justify in (
        ("projection", "left"),
        ("gen", "left"),
        ("state", "left"),
        ("part", "right"),
        ("checkpoint", "right"),
        ("lag", "right"),
        ("age", "right"),
        ("ev/s", "right"),
        ("worker", "left"),
        ("dlq", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for line in lines(rows, now):
        table.add_row(
            line.projection,
            f"g{line.generation}",
            line.state,
            line.partitions,
            f"{line.checkpoint:,}",
            f"{line.lag:,}" if line.lag is not None else "-",
            short_seconds(line.age),
            _rate(line.rate),
            line.worker,
            f"{line.dead_letters:,}",
        )
    return table


def _wide_worker(row: StatusRow) -> str:
    if row.worker_state is None:
        return "-"
    text = row.worker_state
    if row.stale:
        text += " (stale)"
    if row.worker_state == "paused" and row.error:
        text += f": {row.error}"
    return text


def wide_table(head: int | None, rows: Sequence[StatusRow]) -> Table:
    """Every partition with every column (``agora status --wide``)."""
    table = Table(title=_title(head), title_justify="left")
    for column, justify in (
        ("projection", "left"),
        ("gen", "right"),
        ("version", "right"),
        ("state", "left"),
        ("part", "right"),
        ("checkpoint", "right"),
        ("lag", "right"),
        ("lag age", "right"),
        ("events/s", "right"),
        ("worker", "left"),
        ("worker id", "left"),
        ("events", "right"),
        ("duplicates", "right"),
        ("dead letters", "right"),
        ("updated", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            r.projection,
            str(r.generation),
            str(r.version),
            r.generation_state,
            str(r.partition),
            f"{r.checkpoint:,}",
            f"{r.lag_events:,}" if r.lag_events is not None else "-",
            f"{r.lag_seconds:.1f} s" if r.lag_seconds is not None else "-",
            _rate(r.rate),
            _wide_worker(r),
            r.worker or "-",
            f"{r.events:,}",
            f"{r.duplicates:,}",
            f"{r.dead_letters:,}",
            r.updated_at or "-",
        )
    return table
