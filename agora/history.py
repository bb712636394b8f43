"""What the stream already holds of a community's history, to tell an import's new events apart.

The stream dedupes a re-sent event (same id, ``Nats-Msg-Id``) only within its duplicate window
(120 s by default): a history sent again later -- a restarted ``agora demo`` importing its dump
again -- is stored a second time, and the publisher's results call it ``stored``. The projections
skip such copies by event id; the stream's ids tell how many of the stored events were copies.
"""

from __future__ import annotations

import contextlib
from typing import Final

import nats.errors
import structlog
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from agora.workers import one_line
from events.subjects import STREAM, community_filter
from services.stackexchange.importer import ImportSummary

log = structlog.get_logger("agora.demo")

#: Event ids read from the stream per request.
IDS_PER_FETCH: Final = 1000


async def stored_ids(js: JetStreamContext, community: str, after_seq: int = 0) -> list[str]:
    """The event ids (``Nats-Msg-Id``) of ``community``'s messages stored after ``after_seq``.

    An ephemeral consumer reads the headers only, up to the stream's head when it was created.
    """
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after_seq + 1,
        ack_policy=AckPolicy.NONE,
        headers_only=True,
        inactive_threshold=30.0,
        mem_storage=True,
    )
    reader = await js.pull_subscribe(community_filter(community), stream=STREAM, config=config)
    ids: list[str] = []
    try:
        if not (await reader.consumer_info()).num_pending:
            return ids
        while True:
            try:
                messages = await reader.fetch(IDS_PER_FETCH, timeout=2.0)
            except (nats.errors.TimeoutError, TimeoutError):
                break  # nothing stored after after_seq
            ids += [(m.headers or {}).get("Nats-Msg-Id", "") for m in messages]
            if not messages or messages[-1].metadata.num_pending == 0:
                break
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError):
            await reader.unsubscribe()
    return ids


async def known_ids(js: JetStreamContext, community: str) -> tuple[int, set[str]] | None:
    """The stream's last seq and the ids of ``community``'s events in it; None if unreadable."""
    try:
        head = int((await js.stream_info(STREAM)).state.last_seq)
        return head, set(await stored_ids(js, community)) if head else set()
    except (nats.errors.Error, TimeoutError) as error:
        log.debug("cannot read the event ids already stored", error=one_line(error))
        return None


async def stored_again(
    js: JetStreamContext, community: str, before: tuple[int, set[str]]
) -> int | None:
    """How many events stored since ``before`` were copies of events the stream held then."""
    head, known = before
    if not known:
        return 0
    try:
        return sum(1 for i in await stored_ids(js, community, head) if i in known)
    except (nats.errors.Error, TimeoutError) as error:
        log.debug("cannot read the event ids just stored", error=one_line(error))
        return None


def import_lines(summary: ImportSummary, copies: int | None) -> list[str]:
    """What an import did: new events apart from those the stream already held.

    ``copies``: events stored although the stream held them already (sent again after its
    duplicate window; the projections skip them by id), or None when that is unknown.
    """
    again = copies or 0
    new, already = summary.stored - again, summary.duplicate + again
    lines = [
        f"imported {summary.published:,} events of {summary.community} in {summary.seconds:.1f} s:"
        + (
            f" new {new:,}, already in the stream {already:,}, failed {summary.failed:,}"
            if copies is not None
            else f" stored {summary.stored:,}, duplicate {summary.duplicate:,},"
            f" failed {summary.failed:,}"
        )
    ]
    if again:
        lines.append(
            f"  {again:,} of those already in the stream were stored again (the stream's duplicate"
            " window had passed); the projections skip them by event id"
        )
    lines += [f"  import failed x{n}: {reason}" for reason, n in summary.failure_reasons.items()]
    return lines
