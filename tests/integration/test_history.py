"""A history sent again: the demo tells new events from copies of events the stream held."""

from __future__ import annotations

from collections import Counter

from nats.aio.client import Client
from support.engine import make_events, wait_until

from agora.history import import_lines, known_ids, stored_again, stored_ids
from agora.stream import StreamSettings, ensure_stream
from events.publisher import Publisher, PublishStatus
from services.stackexchange.importer import ImportSummary

WINDOW = 0.5


def summary_of(community: str, statuses: Counter[PublishStatus]) -> ImportSummary:
    return ImportSummary(
        community=community,
        stored=statuses[PublishStatus.STORED],
        duplicate=statuses[PublishStatus.DUPLICATE],
        failed=statuses[PublishStatus.FAILED],
        complete=True,
        seconds=1.0,
    )


async def test_a_history_sent_again_after_the_window_counts_as_already_stored(nc: Client) -> None:
    js = nc.jetstream()
    await ensure_stream(js, StreamSettings(duplicate_window=WINDOW))
    publisher = Publisher(nc)
    history = [e for e in make_events(400, seed=5) if e.community == "c1"]
    others = [e for e in make_events(100, seed=6, tag="o") if e.community != "c1"]
    assert history and others

    assert await known_ids(js, "c1") == (0, set())
    first = await publisher.publish_many(history + others)
    assert {r.status for r in first} == {PublishStatus.STORED}
    assert sorted(await stored_ids(js, "c1")) == sorted(str(e.id) for e in history)

    # Past the duplicate window (a probe sent after the history is stored again), the same
    # history and some new events are sent: the stream stores all of them.
    probe = make_events(1, seed=7, tag="probe")
    await publisher.publish_many(probe)

    async def window_passed() -> bool:
        return (await publisher.publish_many(probe))[0].status is PublishStatus.STORED

    await wait_until(window_passed, 30, "the duplicate window to pass", poll=0.1)
    before = await known_ids(js, "c1")
    assert before is not None and before[1] == {str(e.id) for e in history}
    new = [e for e in make_events(200, seed=8, tag="new") if e.community == "c1"]
    again = await publisher.publish_many(history + new)
    statuses = Counter(r.status for r in again)
    assert statuses == {PublishStatus.STORED: len(history) + len(new)}, "the server stored all"

    copies = await stored_again(js, "c1", before)
    assert copies == len(history)
    lines = import_lines(summary_of("c1", statuses), copies)
    assert lines[0] == (
        f"imported {len(history) + len(new):,} events of c1 in 1.0 s: new {len(new):,}, "
        f"already in the stream {len(history):,}, failed 0"
    )
    assert "stored again" in lines[1] and "skip them by event id" in lines[1]
