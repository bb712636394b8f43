"""The simulator's model: deterministic for a seed, valid events, and the traffic it promises."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from events import CODEC, Event
from events.publisher import PublishResult, PublishStatus
from events.subjects import subject_of
from services.errors import InvalidSetting
from services.simulator.model import Simulator, SimulatorConfig, daily_factor
from services.simulator.runner import Runner

START = datetime(2026, 3, 2, tzinfo=UTC)
N = 60_000


@pytest.fixture(scope="module")
def history() -> list[Event]:
    return list(Simulator(11).history(N, START, rate=20.0))


def test_the_same_seed_gives_the_same_events_and_another_seed_others(
    history: list[Event],
) -> None:
    again = list(Simulator(11).history(2_000, START, rate=20.0))
    assert [CODEC.encode(e) for e in again] == [CODEC.encode(e) for e in history[:2_000]]
    other = list(Simulator(12).history(2_000, START, rate=20.0))
    assert [CODEC.encode(e) for e in other] != [CODEC.encode(e) for e in again]


def test_live_events_at_given_times_are_deterministic_too() -> None:
    times = [START + timedelta(milliseconds=7 * i) for i in range(1_000)]
    one, two = Simulator(3, run="x1"), Simulator(3, run="x1")
    assert [CODEC.encode(one.next_event(t)) for t in times] == [
        CODEC.encode(two.next_event(t)) for t in times
    ]


def test_every_event_is_valid_and_ids_are_unique(history: list[Event]) -> None:
    for event in history:
        assert CODEC.decode(CODEC.encode(event)) == event  # encode validates the contract
    assert len({e.id for e in history}) == N
    times = [e.occurred_at for e in history]
    assert all(a < b for a, b in itertools.pairwise(times))


def test_run_tags_keep_two_runs_apart() -> None:
    a = [Simulator(5, run="a").next_event(START) for _ in range(1)]
    b = [Simulator(5, run="b").next_event(START) for _ in range(1)]
    assert a[0].id != b[0].id
    assert a[0].actor.startswith("ma") and b[0].actor.startswith("mb")
    with pytest.raises(InvalidSetting):
        Simulator(5, run="no spaces")


def test_the_mix_is_a_q_and_a_community_with_about_one_percent_reports(
    history: list[Event],
) -> None:
    share = {t: n / N for t, n in collections.Counter(e.TYPE for e in history).items()}
    assert 0.40 < share["reaction.added"] < 0.55
    assert 0.18 < share["reply.created"] < 0.28
    assert 0.07 < share["post.created"] < 0.12
    assert 0.005 < share["content.reported"] < 0.02
    assert 0.002 < share["moderation.decided"] < share["content.reported"]
    assert share["answer.accepted"] > 0.01
    downvotes = sum(1 for e in history if e.TYPE == "reaction.added" and e.kind == "downvote")  # type: ignore[attr-defined]
    assert 0.04 < downvotes / (share["reaction.added"] * N) < 0.2


def test_members_act_with_a_power_law_skew(history: list[Event]) -> None:
    actors = collections.Counter(e.actor for e in history if e.community == "c1")
    total = sum(actors.values())
    ranked = [n for _, n in actors.most_common()]
    top_1_percent = sum(ranked[: max(1, len(ranked) // 100)])
    assert top_1_percent / total > 0.25, "the most active 1% do a large share of the work"
    assert ranked[0] > 5 * ranked[len(ranked) // 2] > 0
    assert len(ranked) > 200, "and there is a long tail of occasional members"


def test_communities_differ_in_size(history: list[Event]) -> None:
    sizes = collections.Counter(e.community for e in history)
    assert len(sizes) == 20
    assert sizes.most_common(1)[0][1] > 5 * min(sizes.values())


def test_references_point_at_things_that_exist(history: list[Event]) -> None:
    joined: set[tuple[str, str]] = set()
    posts: dict[tuple[str, str], str] = {}
    replies: dict[tuple[str, str], str] = {}
    for e in history:
        c = e.community
        if e.TYPE == "member.joined":
            joined.add((c, e.member))  # type: ignore[attr-defined]
        elif e.TYPE == "post.created":
            posts[(c, e.post)] = e.actor  # type: ignore[attr-defined]
        elif e.TYPE == "reply.created":
            assert posts[(c, e.post)] == e.post_author  # type: ignore[attr-defined]
            replies[(c, e.reply)] = e.actor  # type: ignore[attr-defined]
        elif e.TYPE in ("reaction.added", "content.reported"):
            pool = posts if e.target_kind == "post" else replies  # type: ignore[attr-defined]
            assert pool[(c, e.target)] == e.target_author  # type: ignore[attr-defined]
        elif e.TYPE == "answer.accepted":
            assert replies[(c, e.reply)] == e.reply_author  # type: ignore[attr-defined]
        if e.TYPE in ("post.created", "reply.created", "content.reported"):
            assert (c, e.actor) in joined, "members join before they act"


def test_the_rate_follows_a_daily_cycle() -> None:
    sim = Simulator(4, SimulatorConfig(daily_amplitude=0.5))
    events = list(sim.history(40_000, START, rate=0.5))  # about a day per 43,200 events
    per_hour = collections.Counter(e.occurred_at.hour for e in events if e.occurred_at.day == 2)
    assert per_hour[20] > 2 * per_hour[8], per_hour  # evening peak, morning trough
    assert daily_factor(START.replace(hour=20), 0.5) == pytest.approx(1.5)
    assert daily_factor(START.replace(hour=8), 0.5) == pytest.approx(0.5)
    assert daily_factor(START.replace(hour=8), 0.5, utc_offset_hours=12) == pytest.approx(1.5)


def test_a_crisis_is_a_spike_of_reports_in_one_community() -> None:
    sim = Simulator(9, SimulatorConfig(crisis_chance=1e-4, crisis_events=300))
    events = list(sim.history(40_000, START, rate=20.0))
    assert sim.crises >= 1
    reports = [e for e in events if e.TYPE == "content.reported"]
    window = 1_000
    per_window = collections.Counter(
        (i // window, e.community) for i, e in enumerate(events) if e.TYPE == "content.reported"
    )
    peak = max(per_window.values())
    assert peak > 10 * len(reports) / (len(events) / window) / 20, "a spike well above the mean"
    spiked = max(per_window, key=per_window.__getitem__)
    targets = collections.Counter(
        e.target  # type: ignore[attr-defined]
        for i, e in enumerate(events)
        if e.TYPE == "content.reported" and (i // window, e.community) == spiked
    )
    assert targets.most_common(1)[0][1] >= 5, "many members report the same raid posts"


def test_settings_are_validated() -> None:
    for bad in (
        {"communities": 0},
        {"members": 3},
        {"report_share": 0.9},
        {"daily_amplitude": 1.0},
        {"zipf_s": 0.0},
    ):
        with pytest.raises(InvalidSetting):
            SimulatorConfig(**bad)  # type: ignore[arg-type]


class Recorder:
    """A publisher that acknowledges everything and records what it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish_many(self, events: Iterable[Event]) -> list[PublishResult]:
        batch = list(events)
        self.events += batch
        return [
            PublishResult(e.id, PublishStatus.STORED, subject_of(e), seq=len(self.events))
            for e in batch
        ]


async def test_the_runner_keeps_the_configured_rate_with_events_at_now() -> None:
    recorder = Recorder()
    sim = Simulator(2, SimulatorConfig(daily_amplitude=0.0))
    runner = Runner(sim, recorder, rate=2_000, batch=100)
    before = datetime.now(UTC)
    stats = await runner.run(asyncio.Event(), duration=1.0)
    after = datetime.now(UTC)
    assert stats.generated == len(recorder.events) == stats.stored
    assert 0.8 * 2_000 < stats.rate < 1.1 * 2_000, stats.rate
    assert all(before <= e.occurred_at <= after for e in recorder.events)
    assert stats.latencies and stats.failed == 0
