"""A worker's events/s: counted over the last minute of its own monotonic clock."""

from __future__ import annotations

from projections.runner import RATE_WINDOW, Progress


class Clock:
    """A monotonic clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_counts_since_the_start_until_a_window_has_passed() -> None:
    clock = Clock()
    progress = Progress(clock=clock)
    assert progress.rate() == 0.0
    clock.now += 10
    progress.count(100)
    assert progress.rate() == 10.0


def test_a_burst_leaves_the_rate_once_the_window_has_passed_and_idle_is_zero() -> None:
    clock = Clock()
    progress = Progress(clock=clock)
    progress.count(50_000)  # an import at the start
    for _ in range(int(RATE_WINDOW) + 30):
        clock.now += 1.0
        progress.count(16)
    assert progress.rate() == 16.0
    assert progress.events == 50_000 + 16 * (int(RATE_WINDOW) + 30)
    clock.now += RATE_WINDOW + 1
    assert progress.rate() == 0.0


def test_batches_within_a_second_share_one_mark() -> None:
    clock = Clock()
    progress = Progress(clock=clock)
    for _ in range(1000):
        clock.now += 0.01
        progress.count(1)
    assert len(progress._marks) <= 12
    assert round(progress.rate()) == 100
