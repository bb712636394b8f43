"""Import a Stack Exchange dump into the stream: map it, publish it in chunks, report.

Events go out in time order, ``chunk_size`` at a time through :meth:`Publisher.publish_many`; the
next chunk is sent only once every event of the previous one has its outcome, so chunks are
stored in order. Mapping (spooling the dump, SQL sorts) runs in a worker thread, never on the
event loop, so the NATS connection keeps answering pings however long it takes; the next chunk
is mapped while the current one is being published.

Event ids are derived from the dump's ids, so importing the same dump again stores nothing new
within the stream's duplicate window, and projections skip the repeated ids after it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from events import AnyEvent
from events.publisher import Publisher, PublishResult, PublishStatus
from services.errors import InvalidSetting
from services.stackexchange.mapping import MappingReport, iter_events

#: Events per publish_many call.
DEFAULT_CHUNK: Final = 2_000

#: Failed events kept with their details in the summary (all are counted).
MAX_FAILURE_DETAILS: Final = 100


@dataclass(frozen=True)
class ImportProgress:
    """Where an import stands, passed to the progress callback after every chunk."""

    read: int
    published: int
    stored: int
    duplicate: int
    failed: int
    skipped_rows: int
    seconds: float


@dataclass(frozen=True)
class FailedEvent:
    """An event the stream did not confirm, and why."""

    event_id: str
    type: str
    reason: str


@dataclass
class ImportSummary:
    """The outcome of an import.

    ``events`` counts the events read from the dump per type; ``stored``/``duplicate``/``failed``
    are the publisher's outcomes. ``mapping`` says what happened to every row of the dump
    (skipped and folded rows with their reasons, adjustments). ``complete`` is False when the
    import stopped at a chunk with failures (``stop_on_failure``): re-running it is safe.
    """

    community: str
    events: Counter[str] = field(default_factory=Counter)
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    failure_reasons: Counter[str] = field(default_factory=Counter)
    failures: list[FailedEvent] = field(default_factory=list)
    mapping: MappingReport = field(default_factory=MappingReport)
    complete: bool = False
    seconds: float = 0.0

    @property
    def published(self) -> int:
        """Events with an outcome (stored, duplicate or failed)."""
        return self.stored + self.duplicate + self.failed

    @property
    def skipped(self) -> Counter[tuple[str, str]]:
        """Rows not imported, per (file, reason)."""
        return self.mapping.skipped


ProgressCallback = Callable[[ImportProgress], None]


def _take(
    events: Iterator[AnyEvent], size: int, report: MappingReport
) -> tuple[list[AnyEvent], int]:
    """The next chunk, and the rows skipped so far (read in the thread that updates them)."""
    chunk = list(itertools.islice(events, size))
    return chunk, report.skipped_rows


def _tally(summary: ImportSummary, chunk: list[AnyEvent], results: list[PublishResult]) -> None:
    for event, result in zip(chunk, results, strict=True):
        summary.events[event.TYPE] += 1
        if result.status == PublishStatus.STORED:
            summary.stored += 1
        elif result.status == PublishStatus.DUPLICATE:
            summary.duplicate += 1
        else:
            summary.failed += 1
            reason = result.error or "unknown"
            summary.failure_reasons[reason] += 1
            if len(summary.failures) < MAX_FAILURE_DETAILS:
                summary.failures.append(FailedEvent(str(event.id), event.TYPE, reason))


async def import_stackexchange(
    directory: str | Path,
    publisher: Publisher,
    community: str = "beer",
    *,
    chunk_size: int = DEFAULT_CHUNK,
    progress: ProgressCallback | None = None,
    include_comments: bool = True,
    stop_on_failure: bool = True,
    work_dir: str | Path | None = None,
) -> ImportSummary:
    """Publish the dump in ``directory`` as events of ``community``; return what happened.

    ``progress`` is called after every chunk. With ``stop_on_failure`` (the default) the import
    stops after the first chunk in which an event failed, so nothing later is stored before it;
    running the import again publishes the same ids and completes it. Raises
    :class:`services.errors.SourceError` when the directory is not a readable dump.
    """
    if chunk_size < 1:
        raise InvalidSetting(f"chunk_size must be >= 1, got {chunk_size!r}")
    started = time.monotonic()
    summary = ImportSummary(community=community)
    events = iter_events(
        directory,
        community,
        report=summary.mapping,
        include_comments=include_comments,
        work_dir=work_dir,
    )
    loop = asyncio.get_running_loop()
    # One worker thread runs the generator: calls on it execute in submission order, so the
    # final close() never overlaps a read still running (even when this task is cancelled).
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stackexchange-import")
    read = 0
    pending: asyncio.Future[tuple[list[AnyEvent], int]] | None = None
    try:
        pending = loop.run_in_executor(worker, _take, events, chunk_size, summary.mapping)
        while True:
            chunk, skipped_rows = await pending
            if not chunk:
                summary.complete = True
                break
            read += len(chunk)
            # Map the next chunk while this one is published (at most two chunks in memory).
            pending = loop.run_in_executor(worker, _take, events, chunk_size, summary.mapping)
            results = await publisher.publish_many(chunk)
            _tally(summary, chunk, results)
            if progress is not None:
                progress(
                    ImportProgress(
                        read=read,
                        published=summary.published,
                        stored=summary.stored,
                        duplicate=summary.duplicate,
                        failed=summary.failed,
                        skipped_rows=skipped_rows,
                        seconds=time.monotonic() - started,
                    )
                )
            if summary.failed and stop_on_failure:
                break
    finally:
        closing = loop.run_in_executor(worker, events.close)
        worker.shutdown(wait=False)
        if pending is not None:  # a chunk mapped ahead and not used: retrieve its outcome
            await asyncio.gather(pending, return_exceptions=True)
        await closing
        summary.seconds = time.monotonic() - started
    return summary
