"""The simulator's edge: ``agora serve simulator`` calls :func:`run_simulator`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from agora.config import Settings
from agora.stack import Stack
from events.publisher import Publisher
from services.simulator.model import Simulator, SimulatorConfig
from services.simulator.runner import Runner, RunStats

log = structlog.get_logger("agora.simulator")


async def run_simulator(
    settings: Settings,
    stop: asyncio.Event,
    rate: float,
    seed: int,
    communities: int,
    *,
    config: SimulatorConfig | None = None,
    duration: float | None = None,
) -> RunStats:
    """Publish simulated traffic at ``rate`` events/s (daily average) until ``stop``.

    The stream must exist (``agora stream init`` or ``agora demo``); the simulator never creates
    it. Entity and event ids carry a run tag (the start time), so runs never collide.
    """
    cfg = config or SimulatorConfig(communities=communities)
    run = f"{datetime.now(UTC):%y%m%d%H%M%S}"
    async with Stack(settings, name="agora-simulator") as stack:
        await stack.stream_status()  # AgoraError naming `agora stream init` if it is missing
        publisher = Publisher(
            stack.nc,
            ack_timeout=settings.publish_timeout,
            deadline=settings.publish_deadline,
            max_in_flight=settings.publish_max_in_flight,
        )
        runner = Runner(Simulator(seed, cfg, run=run), publisher, rate)
        log.info("simulator started", rate=rate, seed=seed, communities=cfg.communities, run=run)
        stats = await runner.run(stop, duration)
        log.info(
            "simulator stopped",
            events=stats.stored + stats.duplicates,
            failed=stats.failed,
            rate=round(stats.rate, 1),
        )
        return stats
